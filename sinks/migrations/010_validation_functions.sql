-- The validation functions of migration 007, replaced (an applied migration is never edited: its checksum is
-- recorded, so a warehouse that ran 007 refuses a changed file). What changed since 007:
-- * shekara_key_problem checks the message key against the PUBLIC partition key (SHA-256 of issuing country and
--   normalised number, shekara.pseudonym.partition_key): producers hold no secret. The traveller key is the HMAC of
--   that key, computed by the transforms from pads in the sink session's temporary table `_pseudonym_pads`, never
--   from query parameters (migration 003's note on pads "passed per query" no longer holds).
-- * The limits of settings.limits (sizes, text lengths, the date horizon), control characters and bidi overrides,
--   whole-string country and region codes, and text that is not UTF-8, as schemas.validation and streams.intake.

-- schemas.validation's checks shared by the rejects of all source events (sinks/transforms/*.rejects.sql), so
-- the three tables cannot drift apart. A `*_problem` function returns its group's first problem, in
-- validation's order, as (field, reason); ('', '') when there is none. Lambda UDFs are inlined, so a caller's
-- multiIf still skips a group for a record with an earlier problem. now_ms is the message's Kafka timestamp
-- (the staged _ts; null when not known), skew_s settings.max_future_skew_seconds; max_id, max_text, earliest and
-- latest are settings.limits (max_id_chars, max_text_chars, earliest_date, latest_date), bound per query.

-- Blank as Python's str.strip() sees it: only str.isspace() characters (as in shekara_normalise_document).
CREATE OR REPLACE FUNCTION shekara_is_blank AS (s) ->
    match(s, '^[\\s\\x{0B}\\x{1C}-\\x{1F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]*$');

-- schemas.validation.COUNTRY (a whole-string match there: no trailing newline).
CREATE OR REPLACE FUNCTION shekara_is_country AS (s) -> match(s, '^[A-Z]{3}$');

CREATE OR REPLACE FUNCTION shekara_not_country AS (s) ->
    concat('must be an ISO 3166-1 alpha-3 country code (3 capital letters); got \'', s, '\'');

-- streams.intake.too_large, checked before anything else: settings.limits.max_key_bytes. (The value's own limit
-- needs no copy here: a value that large always holds a field beyond its character limit.)
CREATE OR REPLACE FUNCTION shekara_size_problem AS (message_key, max_key_bytes, suspect) -> if(
    suspect AND length(message_key) > max_key_bytes,
    ('key', concat(
        'message key is ', toString(length(message_key)), ' bytes, more than the limit of ', toString(max_key_bytes),
        ' bytes'
    )),
    ('', '')
);

-- schemas.serde: text that is not valid UTF-8 (a stray byte, a surrogate, an overlong form) cannot be decoded, so the
-- processors dead-letter the message at decode; ClickHouse would read it as bytes. `texts`: the record's strings
-- joined by ' ' (an ASCII byte ends any broken sequence: two broken halves never join into a valid character).
CREATE OR REPLACE FUNCTION shekara_utf8_problem AS (texts, suspect) -> if(
    suspect AND NOT isValidUTF8(texts),
    ('value', 'holds text that is not valid UTF-8, so it cannot be decoded'),
    ('', '')
);

-- Whether a text holds a character schemas.validation.HIDDEN refuses.
CREATE OR REPLACE FUNCTION shekara_has_hidden AS (s) ->
    match(s, '[\\x{00}-\\x{1F}\\x{7F}-\\x{9F}\\x{202A}-\\x{202E}\\x{2066}-\\x{2069}]');

-- `suspect`: whether a record may fail a check of settings.limits at all (each table's rejects compute it once per
-- record, eagerly, from a sufficient condition: every date within the horizon, every string within its limit
-- in bytes, no hidden character in the strings joined, valid UTF-8, an ASCII document number, a small key). The
-- limits' checks run only for suspect records: a check in multiIf costs a pass over the rows still undecided, and
-- run for every record they tripled the rejects query (130 against 40 ms per 45,000 crossings). This is the
-- part shared by the three tables; `texts` is the record's strings joined by ' '.
CREATE OR REPLACE FUNCTION shekara_clean_source AS
    (message_key, texts, event_time, received_time, born, raw_number, max_key, earliest, latest) ->
    length(message_key) <= max_key
    -- printable ASCII only (one cheap match, the usual case), else valid UTF-8 without hidden characters
    AND (
        match(texts, '^[ -~]*$')
        OR (isValidUTF8(texts) AND NOT shekara_has_hidden(texts) AND length(raw_number) = lengthUTF8(raw_number))
    )
    AND toDate32(event_time) BETWEEN earliest AND latest
    AND toDate32(received_time) BETWEEN earliest AND latest
    AND born BETWEEN earliest AND latest;

-- schemas.validation._chars: a text field's length in characters (code points, as Python's len) and its control
-- characters and bidirectional overrides (schemas.validation.HIDDEN), looked for only if the record has some.
CREATE OR REPLACE FUNCTION shekara_text_problem AS (path, s, max_chars, suspect) -> multiIf(
    suspect AND lengthUTF8(s) > max_chars,
        (path, concat('is ', toString(lengthUTF8(s)), ' characters long, more than the limit of ', toString(max_chars))),
    suspect AND shekara_has_hidden(s), (path,
        'contains a control character or a bidirectional override (U+0000-001F, U+007F-009F, U+202A-202E, U+2066-2069)'),
    ('', '')
);

-- schemas.validation._text (required) and _opt_text (nullable: null is fine).
CREATE OR REPLACE FUNCTION shekara_required_text_problem AS (path, s, max_chars, suspect) ->
    if(shekara_is_blank(s), (path, 'must be a non-empty string'), shekara_text_problem(path, s, max_chars, suspect));

CREATE OR REPLACE FUNCTION shekara_optional_text_problem AS (path, s, max_chars, suspect) ->
    shekara_text_problem(path, ifNull(s, ''), max_chars, suspect);

-- The conditions of the problems below, as booleans: a multiIf condition that builds the (field, reason) tuple
-- builds it for every record; these leave the tuple to the records that have the problem.
CREATE OR REPLACE FUNCTION shekara_text_bad AS (s, max_chars, suspect) ->
    suspect AND (lengthUTF8(s) > max_chars OR shekara_has_hidden(s));

CREATE OR REPLACE FUNCTION shekara_required_text_bad AS (s, max_chars, suspect) ->
    shekara_is_blank(s) OR shekara_text_bad(s, max_chars, suspect);

CREATE OR REPLACE FUNCTION shekara_optional_text_bad AS (s, max_chars, suspect) ->
    shekara_text_bad(ifNull(s, ''), max_chars, suspect);

CREATE OR REPLACE FUNCTION shekara_date_bad AS (d, earliest, latest, suspect) ->
    suspect AND d IS NOT NULL AND (assumeNotNull(d) < earliest OR assumeNotNull(d) > latest);

CREATE OR REPLACE FUNCTION shekara_validity_bad AS (valid_from, valid_until, earliest, latest, suspect) ->
    shekara_date_bad(valid_from, earliest, latest, suspect) OR shekara_date_bad(valid_until, earliest, latest, suspect);

-- schemas.validation._outside: the date horizon (settings.limits). A nullable date that is null is fine.
CREATE OR REPLACE FUNCTION shekara_date_problem AS (path, d, earliest, latest, suspect) -> if(
    suspect AND d IS NOT NULL AND (assumeNotNull(d) < earliest OR assumeNotNull(d) > latest),
    (path, concat('is outside the accepted dates ', toString(earliest), '..', toString(latest), '; got ', toString(d))),
    ('', '')
);

-- The validity of a registration or a status change: valid_from's horizon, then valid_until's.
CREATE OR REPLACE FUNCTION shekara_validity_problem AS (valid_from, valid_until, earliest, latest, suspect) -> multiIf(
    shekara_date_bad(valid_from, earliest, latest, suspect),
        shekara_date_problem('valid_from', valid_from, earliest, latest, suspect),
    shekara_date_problem('valid_until', valid_until, earliest, latest, suspect)
);

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

-- schemas.validation._envelope. A time's horizon is checked on its UTC day.
CREATE OR REPLACE FUNCTION shekara_envelope_problem AS (
    event_id, event_time, received_time, source_system, source_record_id, now_ms, skew_s, max_id, max_text, earliest,
    latest, suspect
) -> multiIf(
    shekara_required_text_bad(event_id, max_id, suspect),
        shekara_required_text_problem('event_id', event_id, max_id, suspect),
    shekara_date_bad(toDate32(event_time), earliest, latest, suspect),
        shekara_date_problem('event_time', toDate32(event_time), earliest, latest, suspect),
    shekara_date_bad(toDate32(received_time), earliest, latest, suspect),
        shekara_date_problem('received_time', toDate32(received_time), earliest, latest, suspect),
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
    shekara_required_text_bad(source_system, max_text, suspect),
        shekara_required_text_problem('source_system', source_system, max_text, suspect),
    shekara_optional_text_problem('source_record_id', source_record_id, max_id, suspect)
);

-- schemas.validation._traveller. The caller computes `number` (shekara_normalise_document, the key needs it too)
-- and `on_day` (shekara_judging_day) once per record: under multiIf's short-circuiting, a value that several lazily
-- evaluated checks share is computed again for each. raw_number is the number as sent: its length and its letters
-- (Latin only, besides separators: schemas.validation.NOT_LATIN) are judged before normalising.
CREATE OR REPLACE FUNCTION shekara_traveller_problem AS
    (raw_number, number, issuing_country, nationality, born, on_day, max_id, earliest, latest, suspect) -> multiIf(
    suspect AND lengthUTF8(raw_number) > max_id, ('traveller.document.number', concat(
        'is ', toString(lengthUTF8(raw_number)), ' characters long, more than the limit of ', toString(max_id)
    )),
    suspect AND match(
        raw_number,
        '[^\\x{00}-\\x{7F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]'
    ), ('traveller.document.number',
        'must be Latin letters A-Z and digits (besides separators); got other letters or symbols'),
    NOT match(number, '^[A-Z0-9]{5,20}$'), ('traveller.document.number', concat(
        'must be 5-20 letters or digits after removing separators; got ', toString(lengthUTF8(number)),
        ' characters', if(number = '' OR match(number, '^[\\p{L}\\p{N}]+$'), '', ' including other symbols')
    )),
    NOT shekara_is_country(issuing_country),
        ('traveller.document.issuing_country', shekara_not_country(issuing_country)),
    NOT shekara_is_country(nationality), ('traveller.nationality', shekara_not_country(nationality)),
    born > on_day, ('traveller.birth_date', 'is in the future (after the day of the event)'),
    shekara_age(born, on_day) > 125, ('traveller.birth_date', 'gives an age over 125 years'),
    shekara_date_bad(born, earliest, latest, suspect),
        shekara_date_problem('traveller.birth_date', born, earliest, latest, suspect),
    ('', '')
);

-- streams.intake: the message key must be the public partition key (shekara.pseudonym.partition_key: SHA-256,
-- no secret), which puts all of a traveller's events on one partition. number: normalised, as above.
CREATE OR REPLACE FUNCTION shekara_key_problem AS (message_key, issuing_country, number) -> if(
    message_key != lower(left(hex(SHA256(concat(upperUTF8(issuing_country), '|', number))), 32)),
    ('key', 'message key is not the partition key of traveller.document (key with shekara.pseudonym.partition_key)'),
    ('', '')
);
