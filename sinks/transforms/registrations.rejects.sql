-- Staged Registration records that can never be stored: (_msg, field, reason), ordered by _msg.
--
-- A source event is stored only if the stream processors admit it (streams.intake.Intake.admit), so this is
-- schemas.validation in SQL, check for check and in its order (one row per record: its first problem, with the
-- same field path and message), then the message key against the partition key. Enums need no check: decoding
-- the Avro enforces them. Besides the body, the checks read the trailer (sinks.stage): _ts, the message's
-- Kafka timestamp in ms, is validation's `now` (null when not known: the event is then judged as of its own
-- time and not checked for lying in the future), and _key is the message key.
-- Parameters: skew (settings.max_future_skew_seconds), max_key, max_id, max_text, earliest, latest
-- (settings.limits), partitions (the topic's partition count, Warehouse.source_partitions; 0: not checked).
-- The key check needs no secret (the partition key).
-- The envelope, traveller and key checks are functions shared with the other source events (migration
-- 007_validation_functions); tests/test_sink_parity.py holds all three tables to the processors' verdicts.
SELECT _msg, problem.1 AS field, if(field IN ('key', 'partition'), problem.2, concat(field, ': ', problem.2)) AS reason
FROM
(
    WITH
        -- Aliases, not columns: multiIf evaluates each only for the records without an earlier problem.
        shekara_utf8_problem(texts, suspect) AS utf8_problem,
        shekara_envelope_problem(
            event_id, event_time, received_time, source_system, source_record_id, _ts, {skew:Int64}, {max_id:UInt32},
            {max_text:UInt32}, {earliest:Date32}, {latest:Date32}, suspect
        ) AS envelope,
        shekara_traveller_problem(
            traveller.document.number, number, traveller.document.issuing_country, traveller.nationality,
            traveller.birth_date, on_day, {max_id:UInt32}, {earliest:Date32}, {latest:Date32}, suspect
        ) AS traveller_problem,
        shekara_validity_problem(
            valid_from, valid_until, {earliest:Date32}, {latest:Date32}, suspect
        ) AS validity_problem,
        shekara_key_problem(_key, traveller.document.issuing_country, number) AS key_problem
    SELECT
        _msg,
        multiIf(
            suspect AND length(_key) > {max_key:UInt32}, shekara_size_problem(_key, {max_key:UInt32}, suspect),
            suspect AND NOT isValidUTF8(texts), utf8_problem,
            envelope.1 != '', envelope,
            -- _registration, up to the traveller
            shekara_required_text_bad(registration_id, {max_id:UInt32}, suspect),
                shekara_required_text_problem('registration_id', registration_id, {max_id:UInt32}, suspect),
            traveller_problem.1 != '', traveller_problem,
            -- _registration, the rest
            shekara_required_text_bad(host_id, {max_id:UInt32}, suspect),
                shekara_required_text_problem('host_id', host_id, {max_id:UInt32}, suspect),
            NOT match(region, '^KZ-[A-Z0-9]{2,3}$'),
                ('region', concat('must be an ISO 3166-2:KZ region code such as KZ-75; got \'', region, '\'')),
            shekara_required_text_bad(address, {max_text:UInt32}, suspect),
                shekara_required_text_problem('address', address, {max_text:UInt32}, suspect),
            shekara_validity_bad(valid_from, valid_until, {earliest:Date32}, {latest:Date32}, suspect),
                validity_problem,
            valid_until < valid_from, ('valid_until', 'is before valid_from'),
            -- shekara.partitioning.misplaced: co-partitioning rests on CRC-32 of the key modulo the count (0: no
            -- check; greatest() as ClickHouse computes the modulo for every row even then)
            {partitions:UInt32} > 0 AND _key != '' AND CRC32(_key) % greatest({partitions:UInt32}, 1) != _partition,
                ('partition', concat(
                    'on partition ', toString(_partition), '; its key belongs on partition ',
                    toString(CRC32(_key) % greatest({partitions:UInt32}, 1)), ' of ', toString({partitions:UInt32}),
                    ' (CRC-32 of the key modulo the partition count)'
                )),
            key_problem.1 != '', key_problem,
            ('', '')
        ) AS problem
    FROM
    (
        -- Used by several checks: computed once here, not once for each lazily evaluated one.
        SELECT
            *,
            shekara_normalise_document(traveller.document.number) AS number,
            shekara_judging_day(event_time, _ts) AS on_day,
            -- Every string of the record (enums need none: decoding the Avro gives one of their symbols), for the
            -- UTF-8 check and one search for hidden characters per record; `suspect`: see shekara_clean_source.
            concat(
                event_id, ' ',
                registration_id, ' ',
                traveller.document.number, ' ',
                traveller.document.issuing_country, ' ',
                traveller.nationality, ' ',
                host_id, ' ',
                region, ' ',
                address, ' ',
                source_system, ' ',
                ifNull(source_record_id, '')
            ) AS texts,
            NOT (
                shekara_clean_source(
                    _key, texts, event_time, received_time, traveller.birth_date, traveller.document.number,
                    {max_key:UInt32}, {earliest:Date32}, {latest:Date32}
                )
                AND greatest(
                    length(event_id),
                    length(ifNull(source_record_id, '')),
                    length(registration_id),
                    length(traveller.document.number),
                    length(host_id)
                ) <= {max_id:UInt32}
                AND greatest(length(source_system), length(address)) <= {max_text:UInt32}
                AND valid_from BETWEEN {earliest:Date32} AND {latest:Date32}
                AND valid_until BETWEEN {earliest:Date32} AND {latest:Date32}
            ) AS suspect
        FROM stage_registrations
    )
)
WHERE field != ''
ORDER BY _msg
