-- title: Hosts with the most late registrations
-- description: Pseudonymous hosts (host_key) ranked by late registrations over the last `months` months.
-- param: months UInt16 = 12
-- param: top UInt16 = 20
-- param: as_of Date = latest
-- data: registrations.event_date
SELECT
    host_key,
    any(host_kind) AS host_kind,
    any(region) AS region,
    sum(registrations) AS registrations,
    sum(late) AS late,
    round(100 * late / nullIf(sum(on_time) + late, 0), 2) AS late_pct
FROM registration_compliance
WHERE month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND month <= {as_of:Date}
GROUP BY host_key
HAVING late > 0
ORDER BY late DESC, host_key
LIMIT {top:UInt16}
