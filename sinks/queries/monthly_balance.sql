-- title: Migration balance by nationality
-- description: Entries minus exits per calendar month and nationality, over the last `months` months,
-- description: largest absolute balance first within a month.
-- param: months UInt16 = 12
SELECT
    month,
    nationality,
    sum(entries) AS entries,
    sum(exits) AS exits,
    toInt64(entries) - toInt64(exits) AS balance
FROM monthly_balance
WHERE month > toStartOfMonth(toDate(now(), 'Asia/Almaty')) - toIntervalMonth({months:UInt16})
GROUP BY month, nationality
ORDER BY month, abs(balance) DESC, nationality
