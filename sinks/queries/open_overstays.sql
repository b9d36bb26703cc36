-- title: Open overstays by nationality and entry checkpoint
-- description: Stays with no exit whose last allowed day has passed, now (the open_overstays view).
-- param: top UInt16 = 50
SELECT nationality, entry_checkpoint, open_overstays, days_over_now
FROM open_overstays
ORDER BY open_overstays DESC, nationality, entry_checkpoint
LIMIT {top:UInt16}
