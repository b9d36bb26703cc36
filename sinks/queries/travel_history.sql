-- title: Travel history of one traveller
-- description: Every crossing of a pseudonymous traveller key, oldest first (keys come from alerts or stays);
-- description: the key's first 12 or more characters, as alerts show it, are enough. A renewed document
-- description: (DOCUMENT_REPLACED, traveller_links) is the same person: its crossings are listed too, up to two
-- description: renewals away, and document_key says which document each crossing was made on.
-- param: traveller_key String = 
-- data: crossings.event_date
-- key: traveller_key crossings.traveller_key
WITH
    given AS (SELECT DISTINCT traveller_key AS k FROM crossings WHERE startsWith(traveller_key, {traveller_key:String})),
    once AS (
        SELECT k FROM given
        UNION DISTINCT SELECT new_traveller_key FROM traveller_links WHERE old_traveller_key IN (SELECT k FROM given)
        UNION DISTINCT SELECT old_traveller_key FROM traveller_links WHERE new_traveller_key IN (SELECT k FROM given)
    ),
    twice AS (
        SELECT k FROM once
        UNION DISTINCT SELECT new_traveller_key FROM traveller_links WHERE old_traveller_key IN (SELECT k FROM once)
        UNION DISTINCT SELECT old_traveller_key FROM traveller_links WHERE new_traveller_key IN (SELECT k FROM once)
    )
SELECT
    event_time, checkpoint_id, direction, purpose, entry_basis, nationality, conveyance_kind, carrier,
    traveller_key AS document_key
FROM crossings
WHERE traveller_key IN (SELECT k FROM twice)
ORDER BY event_time
LIMIT 1 BY event_id
