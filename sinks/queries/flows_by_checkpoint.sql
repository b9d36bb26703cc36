-- title: Busiest checkpoints
-- description: Entries and exits per checkpoint over the last `days` days, busiest first.
-- param: days UInt16 = 30
-- param: top UInt16 = 20
-- param: as_of Date = latest
-- data: daily_flows.day
SELECT
    checkpoint_id,
    any(checkpoint_kind) AS kind,
    sumIf(crossings, direction = 'ENTRY') AS entries,
    sumIf(crossings, direction = 'EXIT') AS exits,
    entries + exits AS total
FROM daily_flows
WHERE day > {as_of:Date} - {days:UInt16} AND day <= {as_of:Date}
GROUP BY checkpoint_id
ORDER BY total DESC, checkpoint_id
LIMIT {top:UInt16}
