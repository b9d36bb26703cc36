-- Staged StatusChange records (stage_status_changes) -> status_changes. Parameters as in crossings.sql.
-- The decision/permit reference number is not kept: it identifies a person and analysts do not need it.
INSERT INTO status_changes
(
    event_id, event_time, received_time, event_date, kind, traveller_key, nationality, birth_year, sex, authority,
    valid_from, valid_until, source_system, source_partition, source_offset, _batch
)
WITH
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
    -- The message key: status_changes.rejects.sql skips every row whose key is not this traveller's key (the HMAC
    -- of issuing country and normalised number), so the hash is not computed a second time here.
    _key,
    traveller.nationality,
    toYear(traveller.birth_date),
    traveller.sex,
    authority,
    valid_from,
    valid_until,
    source_system,
    _partition,
    {bases:Array(UInt64)}[_partition + 1] + _delta,
    {batch:String}
FROM staged
WHERE event_id NOT IN (
    SELECT event_id FROM status_changes
    WHERE event_date IN (SELECT day FROM staged)
      AND event_id IN (SELECT event_id FROM staged)
      AND _batch != {batch:String}
)
ORDER BY _msg
LIMIT 1 BY event_id
