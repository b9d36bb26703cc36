-- Staged Crossing records (stage_crossings) -> crossings. Parameters: batch (insert token), skip (_msg of
-- rejected rows), lo/hi (_msg range: all of it, or a part while isolating a bad row), bases (first offset in the
-- batch by partition + 1: source_offset = bases[_partition + 1] + _delta).
-- Events already stored by an earlier batch are left out (same event id on the same Almaty day): producers
-- may send an event twice, and a re-read batch may have other boundaries. Rows of this same batch are not
-- "earlier", so a retry rebuilds the identical block and the insert token drops it.
INSERT INTO crossings
(
    event_id, event_time, received_time, event_date, checkpoint_id, checkpoint_kind, border_country, direction,
    traveller_key, document_type, issuing_country, nationality, birth_year, sex, purpose, entry_basis, visa_expiry,
    declared_destination, planned_exit_checkpoint, has_migration_card, conveyance_kind, carrier, source_system,
    source_partition, source_offset, _batch
)
WITH
    -- The HMAC pads from the writer session's temporary table (sinks.writer): never in the query text.
    (SELECT ipad FROM _pseudonym_pads) AS ipad,
    (SELECT opad FROM _pseudonym_pads) AS opad,
    staged AS (
        SELECT *, toDate(event_time, 'Asia/Almaty') AS day
        FROM stage_crossings
        WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
    )
SELECT
    event_id,
    event_time,
    received_time,
    day,
    checkpoint.id,
    checkpoint.kind,
    ifNull(checkpoint.border_country, ''),
    direction,
    -- The keyed traveller key: HMAC of the message key, which crossings.rejects.sql checked is the public
    -- partition key of issuing country and normalised number (shekara.pseudonym.traveller_key).
    shekara_hmac32(ipad, opad, _key),
    traveller.document.type,
    traveller.document.issuing_country,
    traveller.nationality,
    toYear(traveller.birth_date),
    traveller.sex,
    purpose,
    entry_basis.kind,
    entry_basis.visa_expiry,
    ifNull(declared_destination, ''),
    ifNull(planned_exit_checkpoint, ''),
    migration_card_number IS NOT NULL AND migration_card_number != '',
    ifNull(conveyance.kind, ''),
    if(conveyance.kind IN ('FLIGHT', 'TRAIN', 'SHIP'), ifNull(conveyance.identifier, ''), ''),
    source_system,
    _partition,
    {bases:Array(UInt64)}[_partition + 1] + _delta,
    {batch:String}
FROM staged
WHERE event_id NOT IN (
    SELECT event_id FROM crossings
    WHERE event_date IN (SELECT day FROM staged)
      AND event_id IN (SELECT event_id FROM staged)
      AND _batch != {batch:String}
)
ORDER BY _msg
LIMIT 1 BY event_id
