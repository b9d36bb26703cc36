-- title: Overstay rates per expected departure (DHS method)
-- description: By month of expected departure (last allowed day) and nationality over the last `months`
-- description: months: expected departures, out-of-country overstays (left late), suspected in-country
-- description: overstays (not left), and their rates in percent of expected departures.
-- param: months UInt16 = 12
-- param: min_departures UInt32 = 1
-- param: as_of Date = latest
-- data: crossings.event_date
SELECT
    expected_departure_month,
    nationality,
    expected_departures,
    out_of_country_overstays,
    in_country_overstays,
    overstay_rate_pct,
    in_country_rate_pct
FROM overstay_rates_at(as_of = {as_of:Date})
WHERE expected_departure_month > toStartOfMonth({as_of:Date}) - toIntervalMonth({months:UInt16}) AND expected_departure_month <= {as_of:Date}
  AND expected_departures >= {min_departures:UInt32}
ORDER BY expected_departure_month, expected_departures DESC, nationality
