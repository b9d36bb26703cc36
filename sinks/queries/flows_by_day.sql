-- title: Entries and exits per day
-- description: All checkpoints together, over the last `days` days: the dashboard's flow chart.
-- param: days UInt16 = 30
SELECT
    day,
    sumIf(crossings, direction = 'ENTRY') AS entries,
    sumIf(crossings, direction = 'EXIT') AS exits
FROM daily_flows
WHERE day > toDate(now(), 'Asia/Almaty') - {days:UInt16}
GROUP BY day
ORDER BY day
