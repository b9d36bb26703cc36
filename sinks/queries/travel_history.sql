-- title: Travel history of one traveller
-- description: Every crossing of a pseudonymous traveller key, oldest first (keys come from alerts or stays);
-- description: the key's first 12 or more characters, as alerts show it, are enough.
-- param: traveller_key String = 
-- data: crossings.event_date
-- key: traveller_key crossings.traveller_key
SELECT event_time, checkpoint_id, direction, purpose, entry_basis, nationality, conveyance_kind, carrier
FROM crossings
WHERE startsWith(traveller_key, {traveller_key:String})
ORDER BY event_time
LIMIT 1 BY event_id
