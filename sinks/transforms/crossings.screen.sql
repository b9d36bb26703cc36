-- _msg of the staged Crossing records that crossings.rejects.sql must judge, ordered: those the all-clear of a
-- plain record (below) does not clear. Every other record passes every check of crossings.rejects.sql, so the
-- sink stores it without running that query; it runs it only over these (sinks.writer.Warehouse._rejects).
-- A separate query because the multiIf's mere presence cost every record about 0.4 us of CPU even though the
-- all-clear had left none for it (100,000 staged crossings, chDB, measured).
-- Parameters as crossings.rejects.sql's; the values both read are crossings.checked.sql's.
WITH
    -- The catalogue in one read: its ids and each post's open instants in microseconds (no limit: the extremes),
    -- looked up per record by `transform` (a hash lookup): indexing the constant arrays per record would copy them
    -- into every row.
    (
        SELECT (
            groupArray(id),
            groupArray(ifNull(toUnixTimestamp64Micro(open_from), -9223372036854775808)),
            groupArray(ifNull(toUnixTimestamp64Micro(open_until), 9223372036854775807))
        )
        FROM (SELECT * FROM checkpoints ORDER BY id)
    ) AS catalogue,
    catalogue.1 AS cp_ids,
    catalogue.2 AS cp_from_us,
    catalogue.3 AS cp_until_us,
    toUnixTimestamp64Micro(event_time) AS event_us
SELECT _msg
FROM
(
    -- include: crossings.checked
)
-- The all-clear of a plain record, as schemas.validation._plain_crossing: a record that none of the checks of
-- crossings.rejects.sql can refuse (not suspect, and the checks that do not depend on `suspect`, as plain booleans)
-- is left out: nearly every record is plain. A sufficient condition only: any record it keeps goes through every
-- check, in order.
WHERE NOT (
    NOT suspect
    -- Not blank: a first byte that is printable ASCII and not a space answers it without the regex.
    AND (event_id >= '!' AND event_id < '\x7F' OR NOT shekara_is_blank(event_id))
    AND (source_system >= '!' AND source_system < '\x7F' OR NOT shekara_is_blank(source_system))
    AND (checkpoint.id >= '!' AND checkpoint.id < '\x7F' OR NOT shekara_is_blank(checkpoint.id))
    AND (_ts IS NULL OR event_us <= toInt64(ifNull(_ts, 0)) * 1000 + {skew:Int64} * 1000000)
    AND toUnixTimestamp64Micro(received_time) >= event_us - {skew:Int64} * 1000000
    -- A post the catalogue lists and open at the event's instant; an id it does not list looks up the largest
    -- instant, so the first comparison also answers whether the id is listed (one lookup fewer).
    AND event_us >= transform(checkpoint.id, cp_ids, cp_from_us, toInt64(9223372036854775807))
    AND event_us < transform(checkpoint.id, cp_ids, cp_until_us, toInt64(9223372036854775807))
    AND (checkpoint.border_country IS NULL OR shekara_is_country(assumeNotNull(checkpoint.border_country)))
    AND match(number, '^[A-Z0-9]{5,20}$')
    AND shekara_is_country(traveller.document.issuing_country)
    AND shekara_is_country(traveller.nationality)
    AND traveller.birth_date <= on_day
    AND shekara_age(traveller.birth_date, on_day) <= 125
    AND NOT (entry_basis.kind = 'VISA' AND entry_basis.visa_expiry IS NULL)
    AND (declared_destination IS NULL OR shekara_is_country(assumeNotNull(declared_destination)))
    AND NOT (purpose = 'TRANSIT' AND declared_destination IS NULL)
    AND (
        planned_exit_checkpoint IS NULL
        OR transform(assumeNotNull(planned_exit_checkpoint), cp_ids, arrayEnumerate(cp_ids), 0) != 0
    )
    AND ({partitions:UInt32} = 0 OR _key = '' OR CRC32(_key) % greatest({partitions:UInt32}, 1) = _partition)
    -- shekara_key_problem's comparison, for a country already known to be 3 capital letters (upperUTF8 of it is
    -- itself) and on the first 16 bytes of the digest (the 32 hex digits it compares)
    AND _key = lower(hex(substring(SHA256(concat(traveller.document.issuing_country, '|', number)), 1, 16)))
)
ORDER BY _msg
