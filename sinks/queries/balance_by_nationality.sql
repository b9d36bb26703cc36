-- title: Net migration by nationality
-- description: Entries, exits and balance per nationality summed over the last `months` months.
-- param: months UInt16 = 12
-- param: top UInt16 = 15
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT
    nationality,
    sum(entries) AS entries,
    sum(exits) AS exits,
    toInt64(entries) - toInt64(exits) AS balance
FROM monthly_balance
WHERE month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND month <= {as_of:Date}
GROUP BY nationality
ORDER BY abs(balance) DESC, nationality
LIMIT {top:UInt16}
