-- title: Migration balance by nationality
-- description: Entries minus exits per calendar month and nationality, over the last `months` months,
-- description: largest absolute balance first within a month.
-- param: months UInt16 = 12
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT
    month,
    nationality,
    sum(entries) AS entries,
    sum(exits) AS exits,
    toInt64(entries) - toInt64(exits) AS balance
FROM monthly_balance
WHERE month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND month <= {as_of:Date}
GROUP BY month, nationality
ORDER BY month, abs(balance) DESC, nationality
