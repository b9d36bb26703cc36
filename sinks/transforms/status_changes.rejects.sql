-- Staged StatusChange records that can never be stored: (_msg, field, reason), ordered by _msg.
--
-- A source event is stored only if the stream processors admit it (streams.intake.Intake.admit), so this is
-- schemas.validation in SQL, check for check and in its order (one row per record: its first problem, with the
-- same field path and message), then the message key against the partition key. Enums need no check: decoding
-- the Avro enforces them. Besides the body, the checks read the trailer (sinks.stage): _ts, the message's
-- Kafka timestamp in ms, is validation's `now` (null when not known: the event is then judged as of its own
-- time and not checked for lying in the future), and _key is the message key.
-- Parameters: skew (settings.max_future_skew_seconds), max_key, max_id, max_text, earliest, latest (settings.limits). The key check needs no secret (the partition key).
-- The envelope, traveller and key checks are functions shared with the other source events (migration
-- 007_validation_functions); tests/test_sink_parity.py holds all three tables to the processors' verdicts.
SELECT _msg, problem.1 AS field, if(field = 'key', problem.2, concat(field, ': ', problem.2)) AS reason
FROM
(
    WITH
        -- Aliases, not columns: multiIf evaluates each only for the records without an earlier problem.
        -- Every string of the record (enums need none: decoding the Avro gives one of their symbols).
        shekara_utf8_problem(concat(
            event_id, '\n',
            traveller.document.number, '\n',
            traveller.document.issuing_country, '\n',
            traveller.nationality, '\n',
            authority, '\n',
            source_system, '\n',
            ifNull(reference, ''), '\n',
            ifNull(source_record_id, '')
        )) AS utf8_problem,
        shekara_envelope_problem(
            event_id, event_time, received_time, source_system, source_record_id, _ts, {skew:Int64}, {max_id:UInt32},
            {max_text:UInt32}, {earliest:Date32}, {latest:Date32}
        ) AS envelope,
        shekara_traveller_problem(
            traveller.document.number, number, traveller.document.issuing_country, traveller.nationality,
            traveller.birth_date, on_day, {max_id:UInt32}, {earliest:Date32}, {latest:Date32}
        ) AS traveller_problem,
        shekara_validity_problem(valid_from, valid_until, {earliest:Date32}, {latest:Date32}) AS validity_problem,
        shekara_key_problem(_key, traveller.document.issuing_country, number) AS key_problem
    SELECT
        _msg,
        multiIf(
            shekara_size_problem(_key, {max_key:UInt32}).1 != '', shekara_size_problem(_key, {max_key:UInt32}),
            utf8_problem.1 != '', utf8_problem,
            envelope.1 != '', envelope,
            traveller_problem.1 != '', traveller_problem,
            -- _status_change, after the traveller
            shekara_required_text_problem('authority', authority, {max_text:UInt32}).1 != '',
                shekara_required_text_problem('authority', authority, {max_text:UInt32}),
            validity_problem.1 != '', validity_problem,
            kind = 'EXPELLED' AND valid_until IS NULL,
                ('valid_until', 'is required for EXPELLED (the last day of the entry ban)'),
            valid_from IS NOT NULL AND valid_until IS NOT NULL
                AND assumeNotNull(valid_until) < assumeNotNull(valid_from), ('valid_until', 'is before valid_from'),
            shekara_optional_text_problem('reference', reference, {max_id:UInt32}).1 != '',
                shekara_optional_text_problem('reference', reference, {max_id:UInt32}),
            key_problem.1 != '', key_problem,
            ('', '')
        ) AS problem
    FROM
    (
        -- Used by several checks: computed once here, not once for each lazily evaluated one.
        SELECT
            *,
            shekara_normalise_document(traveller.document.number) AS number,
            shekara_judging_day(event_time, _ts) AS on_day
        FROM stage_status_changes
    )
)
WHERE field != ''
ORDER BY _msg
