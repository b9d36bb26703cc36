-- title: Open overstays by nationality and entry checkpoint
-- description: Stays with no exit whose last allowed day had passed on `as_of` (default: the last day with data; open_overstays_at).
-- param: top UInt16 = 50
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT nationality, entry_checkpoint, open_overstays, days_over_now
FROM open_overstays_at(as_of = {as_of:Date})
ORDER BY open_overstays DESC, nationality, entry_checkpoint
LIMIT {top:UInt16}
