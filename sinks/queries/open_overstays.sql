-- title: Open overstays by nationality and entry checkpoint
-- description: Stays still in the country (no exit, no new entry) past their last allowed day at the start of `as_of`
-- description: (default: the last day with data; open_overstays_at), with the travellers they are.
-- param: top UInt16 = 50
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT nationality, entry_checkpoint, open_overstays, travellers, days_over_now
FROM open_overstays_at(as_of = {as_of:Date})
ORDER BY open_overstays DESC, nationality, entry_checkpoint
LIMIT {top:UInt16}
