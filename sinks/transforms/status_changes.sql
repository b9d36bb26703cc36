-- Staged StatusChange records (stage_status_changes) -> status_changes. Parameters as in crossings.sql.
-- The decision/permit reference number is not kept: it identifies a person and analysts do not need it.
INSERT INTO status_changes
(
    event_id, event_time, received_time, event_date, kind, traveller_key, nationality, birth_year, sex, authority,
    valid_from, valid_until, source_system, source_partition, source_offset, _batch, new_traveller_key
)
WITH
    -- The HMAC pads from the writer session's temporary table (sinks.writer): never in the query text.
    (SELECT ipad FROM _pseudonym_pads) AS ipad,
    (SELECT opad FROM _pseudonym_pads) AS opad,
    staged AS (
        SELECT *, toDate(event_time, 'Asia/Almaty') AS day
        FROM stage_status_changes
        WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
    )
SELECT
    event_id,
    event_time,
    received_time,
    day,
    kind,
    -- The keyed traveller key: HMAC of the message key, which status_changes.rejects.sql checked is the public
    -- partition key of issuing country and normalised number (shekara.pseudonym.traveller_key).
    shekara_hmac32(ipad, opad, _key),
    traveller.nationality,
    toYear(traveller.birth_date),
    traveller.sex,
    authority,
    valid_from,
    valid_until,
    source_system,
    _partition,
    {bases:Array(UInt64)}[_partition + 1] + _delta,
    {batch:String},
    -- DOCUMENT_REPLACED: the new document's keyed traveller key (migration 013), as traveller_key is the old one's.
    if(
        kind = 'DOCUMENT_REPLACED',
        shekara_hmac32(
            ipad, opad,
            shekara_partition_key(
                ifNull(new_document_issuing_country, ''), shekara_normalise_document(ifNull(new_document_number, ''))
            )
        ),
        ''
    )
FROM staged
WHERE event_id NOT IN (
    SELECT event_id FROM status_changes
    WHERE event_date IN (SELECT day FROM staged)
      AND event_id IN (SELECT event_id FROM staged)
      AND _batch != {batch:String}
)
ORDER BY _msg
LIMIT 1 BY event_id
