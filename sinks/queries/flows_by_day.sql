-- title: Entries and exits per day
-- description: All checkpoints together, over the last `days` days: the dashboard's flow chart.
-- param: days UInt16 = 30
-- param: as_of Date = latest
-- data: daily_flows.day
SELECT
    day,
    sumIf(crossings, direction = 'ENTRY') AS entries,
    sumIf(crossings, direction = 'EXIT') AS exits
FROM daily_flows
WHERE day > {as_of:Date} - {days:UInt16} AND day <= {as_of:Date}
GROUP BY day
ORDER BY day
