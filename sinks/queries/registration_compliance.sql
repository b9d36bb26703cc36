-- title: Registration compliance by region and host kind
-- description: Registrations filed in the last `months` months, on time or late against the deadline of the
-- description: rules file; no_deadline counts registrations no rule covers.
-- param: months UInt16 = 12
-- param: as_of Date = latest
-- data: registrations.event_date
SELECT
    region,
    host_kind,
    sum(registrations) AS registrations,
    sum(on_time) AS on_time,
    sum(late) AS late,
    sum(no_deadline) AS no_deadline,
    round(100 * on_time / nullIf(on_time + late, 0), 2) AS on_time_pct,
    round(sum(days_late) / nullIf(late, 0), 1) AS avg_days_late
FROM registration_compliance
WHERE month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND month <= {as_of:Date}
GROUP BY region, host_kind
ORDER BY region, host_kind
