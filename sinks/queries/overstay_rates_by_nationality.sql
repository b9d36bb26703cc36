-- title: Overstay rate by nationality
-- description: The DHS-style rates over all expected departures of the last `months` months, per nationality,
-- description: for nationalities with at least `min_departures` expected departures.
-- param: months UInt16 = 12
-- param: min_departures UInt32 = 1
-- param: top UInt16 = 20
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT
    nationality,
    sum(expected_departures) AS expected,
    sum(out_of_country_overstays) AS out_of_country,
    sum(in_country_overstays) AS in_country,
    round(100 * (out_of_country + in_country) / expected, 2) AS overstay_rate_pct,
    round(100 * in_country / expected, 2) AS in_country_rate_pct
FROM overstay_rates_at(as_of = {as_of:Date})
WHERE expected_departure_month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND expected_departure_month <= {as_of:Date}
GROUP BY nationality
HAVING expected >= {min_departures:UInt32}
ORDER BY expected DESC, nationality
LIMIT {top:UInt16}
