-- title: Top alert types
-- description: Alerts raised, resolved and retracted per type over the last `days` days (by day due).
-- param: days UInt16 = 30
SELECT
    type,
    sumIf(alerts, action = 'RAISED') AS raised,
    sumIf(alerts, action = 'RESOLVED') AS resolved,
    sumIf(alerts, action = 'RETRACTED') AS retracted
FROM alert_counts
WHERE day > toDate(now(), 'Asia/Almaty') - {days:UInt16}
GROUP BY type
ORDER BY raised DESC, type
