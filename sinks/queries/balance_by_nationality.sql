-- title: Net migration by nationality
-- description: Entries, exits and balance per nationality summed over the last `months` months.
-- param: months UInt16 = 12
-- param: top UInt16 = 15
SELECT
    nationality,
    sum(entries) AS entries,
    sum(exits) AS exits,
    toInt64(entries) - toInt64(exits) AS balance
FROM monthly_balance
WHERE month > toStartOfMonth(toDate(now(), 'Asia/Almaty')) - toIntervalMonth({months:UInt16})
GROUP BY nationality
ORDER BY abs(balance) DESC, nationality
LIMIT {top:UInt16}
