-- title: Top alert types
-- description: Alerts raised, resolved and retracted per type over the last `days` days (by day due).
-- param: days UInt16 = 30
-- param: as_of Date = latest
-- data: alert_counts.day
SELECT
    type,
    sumIf(alerts, action = 'RAISED') AS raised,
    sumIf(alerts, action = 'RESOLVED') AS resolved,
    sumIf(alerts, action = 'RETRACTED') AS retracted
FROM alert_counts
WHERE day > {as_of:Date} - {days:UInt16} AND day <= {as_of:Date}
GROUP BY type
ORDER BY raised DESC, type
