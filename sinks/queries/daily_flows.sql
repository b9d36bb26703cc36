-- title: Daily crossings by checkpoint, direction and nationality
-- description: Crossings per Almaty calendar day over the last `days` days, from the daily_flows view.
-- param: days UInt16 = 30
-- param: as_of Date = latest
-- data: daily_flows.day
SELECT
    day,
    checkpoint_id,
    direction,
    nationality,
    sum(crossings) AS crossings
FROM daily_flows
WHERE day > {as_of:Date} - {days:UInt16} AND day <= {as_of:Date}
GROUP BY day, checkpoint_id, direction, nationality
ORDER BY day, checkpoint_id, direction, crossings DESC
