-- schemas.validation's checks shared by the rejects of all source events (sinks/transforms/*.rejects.sql), so
-- the three tables cannot drift apart. A `*_problem` function returns its group's first problem, in
-- validation's order, as (field, reason); ('', '') when there is none. Lambda UDFs are inlined, so a caller's
-- multiIf still skips a group for a record with an earlier problem. now_ms is the message's Kafka timestamp
-- (the staged _ts; null when not known), skew_s settings.max_future_skew_seconds.

-- Blank as Python's str.strip() sees it: only str.isspace() characters (as in shekara_normalise_document).
CREATE OR REPLACE FUNCTION shekara_is_blank AS (s) ->
    match(s, '^[\\s\\x{0B}\\x{1C}-\\x{1F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]*$');

-- schemas.validation.COUNTRY; a Python `$` also matches before a final newline, an RE2 `$` does not.
CREATE OR REPLACE FUNCTION shekara_is_country AS (s) -> match(s, '^[A-Z]{3}\\n?$');

CREATE OR REPLACE FUNCTION shekara_not_country AS (s) ->
    concat('must be an ISO 3166-1 alpha-3 country code (3 capital letters); got \'', s, '\'');

-- The day a traveller's facts are judged on: the event's, or now's if the event claims a later time (UTC, as
-- decoded event times are).
CREATE OR REPLACE FUNCTION shekara_judging_day AS (event_time, now_ms) -> toDate32(fromUnixTimestamp64Micro(
    if(
        now_ms IS NOT NULL AND toInt64(ifNull(now_ms, 0)) * 1000 < toUnixTimestamp64Micro(event_time),
        toInt64(ifNull(now_ms, 0)) * 1000,
        toUnixTimestamp64Micro(event_time)
    ),
    'UTC'
));

CREATE OR REPLACE FUNCTION shekara_age AS (born, on_day) ->
    toInt32(toYear(on_day)) - toYear(born)
        - ((toMonth(on_day), toDayOfMonth(on_day)) < (toMonth(born), toDayOfMonth(born)));

-- schemas.validation._envelope.
CREATE OR REPLACE FUNCTION shekara_envelope_problem AS
    (event_id, event_time, received_time, source_system, now_ms, skew_s) -> multiIf(
    shekara_is_blank(event_id), ('event_id', 'must be a non-empty string'),
    now_ms IS NOT NULL
        AND toUnixTimestamp64Micro(event_time) > toInt64(ifNull(now_ms, 0)) * 1000 + toInt64(skew_s) * 1000000,
        ('event_time', concat(
            'is ',
            toString(toInt64(roundBankers(
                (toUnixTimestamp64Micro(event_time) - toInt64(ifNull(now_ms, 0)) * 1000) / 1000000
            ))),
            ' s in the future (more than the allowed clock skew of ', toString(skew_s), ' s)'
        )),
    toUnixTimestamp64Micro(received_time) < toUnixTimestamp64Micro(event_time) - toInt64(skew_s) * 1000000,
        ('received_time', 'is earlier than event_time (beyond the allowed clock skew)'),
    shekara_is_blank(source_system), ('source_system', 'must be a non-empty string'),
    ('', '')
);

-- schemas.validation._traveller. The caller computes `number` (shekara_normalise_document, the key needs it too)
-- and `on_day` (shekara_judging_day) once per record: under multiIf's short-circuiting, a value that several lazily
-- evaluated checks share is computed again for each.
CREATE OR REPLACE FUNCTION shekara_traveller_problem AS (number, issuing_country, nationality, born, on_day) -> multiIf(
    NOT match(number, '^[A-Z0-9]{5,20}$'), ('traveller.document.number', concat(
        'must be 5-20 letters or digits after removing separators; got ', toString(lengthUTF8(number)),
        ' characters', if(number = '' OR match(number, '^[\\p{L}\\p{N}]+$'), '', ' including other symbols')
    )),
    NOT shekara_is_country(issuing_country),
        ('traveller.document.issuing_country', shekara_not_country(issuing_country)),
    NOT shekara_is_country(nationality), ('traveller.nationality', shekara_not_country(nationality)),
    born > on_day, ('traveller.birth_date', 'is in the future (after the day of the event)'),
    shekara_age(born, on_day) > 125, ('traveller.birth_date', 'gives an age over 125 years'),
    ('', '')
);

-- streams.intake: the message key must be the traveller key (shekara.pseudonym.traveller_key), which puts all of
-- a traveller's events on one partition. number: normalised, as above; ipad/opad: the HMAC pads in hex.
CREATE OR REPLACE FUNCTION shekara_key_problem AS (message_key, issuing_country, number, ipad, opad) -> if(
    message_key != shekara_hmac32(unhex(ipad), unhex(opad), concat(upperUTF8(issuing_country), '|', number)),
    ('key', 'message key is not the traveller key of traveller.document (key with shekara.pseudonym.traveller_key)'),
    ('', '')
);
