-- title: Travel history of one traveller
-- description: Every crossing of a pseudonymous traveller key, oldest first (keys come from alerts or stays).
-- param: traveller_key String = 
SELECT event_time, checkpoint_id, direction, purpose, entry_basis, nationality, conveyance_kind, carrier
FROM crossings
WHERE traveller_key = {traveller_key:String}
ORDER BY event_time
LIMIT 1 BY event_id
