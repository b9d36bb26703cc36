-- Staged Crossing records that can never be stored: (_msg, field, reason), ordered by _msg.
--
-- A source event is stored only if the stream processors admit it (streams.intake.Intake.admit), so this is
-- schemas.validation in SQL, check for check and in its order (one row per record: its first problem, with the
-- same field path and message), then the message key against the traveller key. Enums need no check: decoding
-- the Avro enforces them. Besides the body, the checks read the trailer (sinks.stage): _ts, the message's
-- Kafka timestamp in ms, is validation's `now` (null when not known: the event is then judged as of its own
-- time and not checked for lying in the future), and _key is the message key.
-- Parameters: ipad/opad (HMAC pads, hex, as for the transform), skew (settings.max_future_skew_seconds).
-- registrations.rejects.sql and status_changes.rejects.sql repeat the envelope, traveller and key checks (keep
-- them in step); tests/test_sink_parity.py holds all three to the processors' verdicts.
SELECT _msg, problem.1 AS field, if(field = 'key', problem.2, concat(field, ': ', problem.2)) AS reason
FROM
(
    WITH
        unhex({ipad:String}) AS ipad,
        unhex({opad:String}) AS opad,
        toInt64({skew:Int64}) * 1000000 AS skew_us,
        -- blank as Python's str.strip() sees it: only str.isspace() characters (as in shekara_normalise_document)
        concat(
            '^[\\s\\x{0B}\\x{1C}-\\x{1F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}',
            '\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]*$'
        ) AS blank,
        -- schemas.validation.COUNTRY; a Python `$` also matches before a final newline, an RE2 `$` does not
        '^[A-Z]{3}\\n?$' AS country,
        'must be an ISO 3166-1 alpha-3 country code (3 capital letters); got ' AS not_country
    SELECT
        _msg,
        multiIf(
            -- _envelope
            match(event_id, blank), ('event_id', 'must be a non-empty string'),
            has_now AND event_us > now_us + skew_us, ('event_time', concat(
                'is ', toString(toInt64(roundBankers((event_us - now_us) / 1000000))),
                ' s in the future (more than the allowed clock skew of ', toString({skew:Int64}), ' s)'
            )),
            received_us < event_us - skew_us,
                ('received_time', 'is earlier than event_time (beyond the allowed clock skew)'),
            match(source_system, blank), ('source_system', 'must be a non-empty string'),
            -- _crossing, up to the traveller
            match(checkpoint.id, blank), ('checkpoint.id', 'must be a non-empty string'),
            checkpoint.border_country IS NOT NULL AND NOT match(assumeNotNull(checkpoint.border_country), country), (
                'checkpoint.border_country',
                concat(not_country, '\'', assumeNotNull(checkpoint.border_country), '\'')
            ),
            -- _traveller
            NOT match(number, '^[A-Z0-9]{5,20}$'), ('traveller.document.number', concat(
                'must be 5-20 letters or digits after removing separators; got ', toString(lengthUTF8(number)),
                ' characters', if(number = '' OR match(number, '^[\\p{L}\\p{N}]+$'), '', ' including other symbols')
            )),
            NOT match(traveller.document.issuing_country, country), (
                'traveller.document.issuing_country',
                concat(not_country, '\'', traveller.document.issuing_country, '\'')
            ),
            NOT match(traveller.nationality, country),
                ('traveller.nationality', concat(not_country, '\'', traveller.nationality, '\'')),
            born > today, ('traveller.birth_date', 'is in the future (after the day of the event)'),
            age > 125, ('traveller.birth_date', 'gives an age over 125 years'),
            -- _crossing, the rest
            entry_basis.kind = 'VISA' AND entry_basis.visa_expiry IS NULL,
                ('entry_basis.visa_expiry', 'is required when entry_basis.kind is VISA'),
            declared_destination IS NOT NULL AND NOT match(assumeNotNull(declared_destination), country),
                ('declared_destination', concat(not_country, '\'', assumeNotNull(declared_destination), '\'')),
            purpose = 'TRANSIT' AND declared_destination IS NULL,
                ('declared_destination', 'is required when purpose is TRANSIT'),
            -- streams.intake: the key that puts all of a traveller's events on one partition
            _key != shekara_hmac32(ipad, opad, concat(upperUTF8(traveller.document.issuing_country), '|', number)), (
                'key',
                'message key is not the traveller key of traveller.document (key with shekara.pseudonym.traveller_key)'
            ),
            ('', '')
        ) AS problem
    FROM
    (
        SELECT
            *,
            toUnixTimestamp64Micro(event_time) AS event_us,
            toUnixTimestamp64Micro(received_time) AS received_us,
            _ts IS NOT NULL AS has_now,
            toInt64(ifNull(_ts, 0)) * 1000 AS now_us,
            -- The traveller's facts are judged at the event's time, or at `now` if the event claims a later one;
            -- `today` is that moment's date in UTC (decoded event times are UTC).
            toDate32(fromUnixTimestamp64Micro(if(has_now AND now_us < event_us, now_us, event_us), 'UTC')) AS today,
            traveller.birth_date AS born,
            toInt32(toYear(today)) - toYear(born)
                - ((toMonth(today), toDayOfMonth(today)) < (toMonth(born), toDayOfMonth(born))) AS age,
            shekara_normalise_document(traveller.document.number) AS number
        FROM stage_crossings
    )
)
WHERE field != ''
ORDER BY _msg
