-- Pseudonymisation inside ClickHouse, bit-for-bit equal to shekara.pseudonym (tests/test_sink_transforms.py):
-- the sink lets ClickHouse decode Avro and derive columns, so the keyed hashes are computed there too.
-- The key never reaches the database: the sink passes only the HMAC pads, per query, with query logging off.

-- shekara.pseudonym.normalise_document_number: drop whitespace (Python's Unicode \s), '-', '/', '.', upper-case.
CREATE OR REPLACE FUNCTION shekara_normalise_document AS (number) -> upperUTF8(replaceRegexpAll(
    number,
    '[\\s\\x{0B}\\x{1C}-\\x{1F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\-/.]',
    ''
));

-- HMAC-SHA256 (RFC 2104) from the inner and outer pads, first 32 hex digits, as hmac.new(...).hexdigest()[:32].
CREATE OR REPLACE FUNCTION shekara_hmac32 AS (ipad, opad, message) ->
    lower(left(hex(SHA256(concat(opad, SHA256(concat(ipad, message))))), 32));
