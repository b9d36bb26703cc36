-- Identity continuity (issue 16, item 5): a DOCUMENT_REPLACED status change (schema v3) links the traveller key of
-- the old document to the key of the new one, so the warehouse can show one person's history across a renewed
-- passport (travel_history follows the links; traveller_links lists them).

-- The keyed traveller key of the new document (HMAC of its public partition key, as traveller_key is of the
-- message key); '' for every other kind. Rows stored before this migration have ''.
ALTER TABLE status_changes ADD COLUMN IF NOT EXISTS new_traveller_key String DEFAULT ''
    COMMENT 'DOCUMENT_REPLACED: traveller key of the new document';

-- shekara.pseudonym.partition_key: SHA-256 of the upper-case issuing country, '|' and the normalised number.
CREATE OR REPLACE FUNCTION shekara_partition_key AS (issuing_country, number) ->
    lower(left(hex(SHA256(concat(upperUTF8(issuing_country), '|', number))), 32));

-- One link per replacement: the old document's key and the new one's, from the status changes.
CREATE VIEW IF NOT EXISTS traveller_links AS
SELECT event_id, event_time AS replaced_time, traveller_key AS old_traveller_key, new_traveller_key
FROM status_changes
WHERE kind = 'DOCUMENT_REPLACED' AND new_traveller_key != '';

-- schemas.validation._document_number for any field path (shekara_traveller_problem has the traveller's inline).
CREATE OR REPLACE FUNCTION shekara_document_number_problem AS (path, raw_number, number, max_id, suspect) -> multiIf(
    suspect AND lengthUTF8(raw_number) > max_id, (path, concat(
        'is ', toString(lengthUTF8(raw_number)), ' characters long, more than the limit of ', toString(max_id)
    )),
    suspect AND match(
        raw_number,
        '[^\\x{00}-\\x{7F}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]'
    ), (path, 'must be Latin letters A-Z and digits (besides separators); got other letters or symbols'),
    NOT match(number, '^[A-Z0-9]{5,20}$'), (path, concat(
        'must be 5-20 letters or digits after removing separators; got ', toString(lengthUTF8(number)),
        ' characters', if(number = '' OR match(number, '^[\\p{L}\\p{N}]+$'), '', ' including other symbols')
    )),
    ('', '')
);

-- schemas.validation._replacement: DOCUMENT_REPLACED names a new document that differs from the old one; no other
-- kind names one. new_number: the new number normalised (shekara_normalise_document).
CREATE OR REPLACE FUNCTION shekara_replacement_problem AS
    (kind, raw_new_number, new_number, new_country, old_country, old_number, max_id, suspect) -> multiIf(
    kind != 'DOCUMENT_REPLACED' AND raw_new_number IS NOT NULL, ('new_document_number', 'is only for DOCUMENT_REPLACED'),
    kind != 'DOCUMENT_REPLACED' AND new_country IS NOT NULL,
        ('new_document_issuing_country', 'is only for DOCUMENT_REPLACED'),
    kind != 'DOCUMENT_REPLACED', ('', ''),
    raw_new_number IS NULL,
        ('new_document_number', 'is required for DOCUMENT_REPLACED (the new document)'),
    shekara_document_number_problem(
        'new_document_number', assumeNotNull(raw_new_number), new_number, max_id, suspect
    ).1 != '',
        shekara_document_number_problem('new_document_number', assumeNotNull(raw_new_number), new_number, max_id, suspect),
    new_country IS NULL, ('new_document_issuing_country', 'is required for DOCUMENT_REPLACED'),
    NOT shekara_is_country(assumeNotNull(new_country)),
        ('new_document_issuing_country', shekara_not_country(assumeNotNull(new_country))),
    assumeNotNull(new_country) = old_country AND new_number = old_number,
        ('new_document_number', 'is the document it replaces (traveller.document)'),
    ('', '')
);
