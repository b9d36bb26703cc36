-- Staged StatusChange records that can never be stored: (_msg, field, reason), ordered by _msg.
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
        shekara_replacement_problem(
            kind, new_document_number, new_number, new_document_issuing_country, traveller.document.issuing_country,
            number, {max_id:UInt32}, suspect
        ) AS replacement_problem,
        shekara_key_problem(_key, traveller.document.issuing_country, number) AS key_problem
    SELECT
        _msg,
        multiIf(
            suspect AND length(_key) > {max_key:UInt32}, shekara_size_problem(_key, {max_key:UInt32}, suspect),
            suspect AND NOT isValidUTF8(texts), utf8_problem,
            envelope.1 != '', envelope,
            traveller_problem.1 != '', traveller_problem,
            -- _status_change, after the traveller
            shekara_required_text_bad(authority, {max_text:UInt32}, suspect),
                shekara_required_text_problem('authority', authority, {max_text:UInt32}, suspect),
            shekara_validity_bad(valid_from, valid_until, {earliest:Date32}, {latest:Date32}, suspect),
                validity_problem,
            valid_from IS NOT NULL AND valid_until IS NOT NULL
                AND assumeNotNull(valid_until) < assumeNotNull(valid_from), ('valid_until', 'is before valid_from'),
            shekara_optional_text_bad(reference, {max_id:UInt32}, suspect),
                shekara_optional_text_problem('reference', reference, {max_id:UInt32}, suspect),
            replacement_problem.1 != '', replacement_problem,  -- migration 013
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
            shekara_normalise_document(ifNull(new_document_number, '')) AS new_number,
            shekara_judging_day(event_time, _ts) AS on_day,
            -- Every string of the record (enums need none: decoding the Avro gives one of their symbols), for the
            -- UTF-8 check and one search for hidden characters per record; `suspect`: see shekara_clean_source.
            concat(
                event_id, ' ',
                traveller.document.number, ' ',
                traveller.document.issuing_country, ' ',
                traveller.nationality, ' ',
                authority, ' ',
                source_system, ' ',
                ifNull(reference, ''), ' ',
                ifNull(source_record_id, ''), ' ',
                ifNull(new_document_number, ''), ' ',
                ifNull(new_document_issuing_country, '')
            ) AS texts,
            NOT (
                shekara_clean_source(
                    _key, texts, event_time, received_time, traveller.birth_date, traveller.document.number,
                    {max_key:UInt32}, {earliest:Date32}, {latest:Date32}
                )
                AND greatest(
                    length(event_id),
                    length(ifNull(source_record_id, '')),
                    length(traveller.document.number),
                    length(ifNull(reference, '')),
                    length(ifNull(new_document_number, ''))
                ) <= {max_id:UInt32}
                AND length(ifNull(new_document_number, '')) = lengthUTF8(ifNull(new_document_number, ''))
                AND greatest(length(source_system), length(authority)) <= {max_text:UInt32}
                AND ifNull(valid_from, {earliest:Date32}) BETWEEN {earliest:Date32} AND {latest:Date32}
                AND ifNull(valid_until, {earliest:Date32}) BETWEEN {earliest:Date32} AND {latest:Date32}
            ) AS suspect
        FROM stage_status_changes
    )
)
WHERE field != ''
ORDER BY _msg
