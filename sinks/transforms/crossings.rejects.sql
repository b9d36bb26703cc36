-- Staged Crossing records that can never be stored: (_msg, field, reason), ordered by _msg.
--
-- A source event is stored only if the stream processors admit it (streams.intake.Intake.admit), so this is
-- schemas.validation in SQL, check for check and in its order (one row per record: its first problem, with the
-- same field path and message), then the message key against the partition key. Enums need no check: decoding
-- the Avro enforces them. Besides the body, the checks read the trailer (sinks.stage): _ts, the message's
-- Kafka timestamp in ms, is validation's `now` (null when not known: the event is then judged as of its own
-- time and not checked for lying in the future), and _key is the message key.
-- Parameters: skew (settings.max_future_skew_seconds), max_key, max_id, max_text, earliest, latest
-- (settings.limits), partitions (the topic's partition count, Warehouse.source_partitions; 0: not checked),
-- undecided (_msg of the records to judge: those crossings.screen.sql could not clear; every other one passes).
-- The key check needs no secret (the partition key).
-- The envelope, traveller and key checks are functions shared with the other source events (migration
-- 007_validation_functions); tests/test_sink_parity.py holds all three tables to the processors' verdicts.
-- The checkpoint catalogue (shekara.reference.Catalogue) is the table `checkpoints` (migration 012, filled by the
-- sink from rules/checkpoints.csv), read once per query into two arrays aligned by position.
SELECT _msg, problem.1 AS field, if(field IN ('key', 'partition'), problem.2, concat(field, ': ', problem.2)) AS reason
FROM
(
    WITH
        (SELECT groupArray(id) FROM (SELECT id FROM checkpoints ORDER BY id)) AS cp_ids,
        (
            SELECT groupArray((id, opened, closed, open_from, open_until))
            FROM (SELECT * FROM checkpoints ORDER BY id)
        ) AS cp_spans,
        -- Each post's open instants in microseconds (no limit: the extremes), looked up per record by `transform`
        -- (a hash lookup): indexing the constant arrays per record would copy them into every row.
        (
            SELECT groupArray(ifNull(toUnixTimestamp64Micro(open_from), -9223372036854775808))
            FROM (SELECT * FROM checkpoints ORDER BY id)
        ) AS cp_from_us,
        (
            SELECT groupArray(ifNull(toUnixTimestamp64Micro(open_until), 9223372036854775807))
            FROM (SELECT * FROM checkpoints ORDER BY id)
        ) AS cp_until_us,
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
        shekara_date_problem(
            'entry_basis.visa_expiry', entry_basis.visa_expiry, {earliest:Date32}, {latest:Date32}, suspect
        ) AS visa_expiry_problem,
        shekara_date_bad(entry_basis.visa_expiry, {earliest:Date32}, {latest:Date32}, suspect) AS visa_expiry_bad,
        shekara_optional_text_problem(
            'entry_basis.permit_number', entry_basis.permit_number, {max_id:UInt32}, suspect
        ) AS permit_problem,
        shekara_optional_text_bad(entry_basis.permit_number, {max_id:UInt32}, suspect) AS permit_bad,
        shekara_optional_text_problem(
            'planned_exit_checkpoint', planned_exit_checkpoint, {max_id:UInt32}, suspect
        ) AS exit_checkpoint_problem,
        shekara_optional_text_bad(planned_exit_checkpoint, {max_id:UInt32}, suspect) AS exit_checkpoint_bad,
        shekara_optional_text_problem(
            'migration_card_number', migration_card_number, {max_id:UInt32}, suspect
        ) AS card_problem,
        shekara_optional_text_bad(migration_card_number, {max_id:UInt32}, suspect) AS card_bad,
        shekara_optional_text_problem(
            'conveyance.identifier', tupleElement(assumeNotNull(conveyance), 'identifier'), {max_id:UInt32}, suspect
        ) AS conveyance_problem,
        shekara_optional_text_bad(
            tupleElement(assumeNotNull(conveyance), 'identifier'), {max_id:UInt32}, suspect
        ) AS conveyance_bad,
        shekara_key_problem(_key, traveller.document.issuing_country, number) AS key_problem,
        transform(checkpoint.id, cp_ids, arrayEnumerate(cp_ids), 0) AS cp_at,
        toUnixTimestamp64Micro(event_time) AS event_us,
        -- read only for a refused record (multiIf evaluates a branch's value only where its condition holds)
        arrayElement(cp_spans, greatest(cp_at, 1)) AS cp_span
    SELECT
        _msg,
        multiIf(
            suspect AND length(_key) > {max_key:UInt32}, shekara_size_problem(_key, {max_key:UInt32}, suspect),
            suspect AND NOT isValidUTF8(texts), utf8_problem,
            envelope.1 != '', envelope,
            -- _crossing, up to the traveller
            shekara_required_text_bad(checkpoint.id, {max_id:UInt32}, suspect),
                shekara_required_text_problem('checkpoint.id', checkpoint.id, {max_id:UInt32}, suspect),
            -- Catalogue.refusal: an unknown id, or a post not open at the crossing's instant
            cp_at = 0, ('checkpoint.id', shekara_not_checkpoint(checkpoint.id)),
            event_us < transform(checkpoint.id, cp_ids, cp_from_us, toInt64(-9223372036854775808)),
                ('checkpoint.id', concat(
                    'is checkpoint ', cp_span.1, ', which opened on ', toString(cp_span.2), ', after this crossing'
                )),
            event_us >= transform(checkpoint.id, cp_ids, cp_until_us, toInt64(9223372036854775807)),
                ('checkpoint.id', concat(
                    'is checkpoint ', cp_span.1, ', which closed after ', toString(cp_span.3), ', before this crossing'
                )),
            checkpoint.border_country IS NOT NULL AND NOT shekara_is_country(assumeNotNull(checkpoint.border_country)),
                ('checkpoint.border_country', shekara_not_country(assumeNotNull(checkpoint.border_country))),
            traveller_problem.1 != '', traveller_problem,
            -- _crossing, the rest
            visa_expiry_bad, visa_expiry_problem,
            entry_basis.kind = 'VISA' AND entry_basis.visa_expiry IS NULL,
                ('entry_basis.visa_expiry', 'is required when entry_basis.kind is VISA'),
            permit_bad, permit_problem,
            declared_destination IS NOT NULL AND NOT shekara_is_country(assumeNotNull(declared_destination)),
                ('declared_destination', shekara_not_country(assumeNotNull(declared_destination))),
            purpose = 'TRANSIT' AND declared_destination IS NULL,
                ('declared_destination', 'is required when purpose is TRANSIT'),
            exit_checkpoint_bad, exit_checkpoint_problem,
            planned_exit_checkpoint IS NOT NULL
                AND transform(assumeNotNull(planned_exit_checkpoint), cp_ids, arrayEnumerate(cp_ids), 0) = 0,
                ('planned_exit_checkpoint', shekara_not_checkpoint(assumeNotNull(planned_exit_checkpoint))),
            card_bad, card_problem,
            conveyance_bad, conveyance_problem,
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
        -- include: crossings.checked
    )
    -- Only the records crossings.screen.sql could not clear (nearly always none: the query is then not run).
    WHERE _msg IN {undecided:Array(UInt64)}
)
WHERE field != ''
ORDER BY _msg
