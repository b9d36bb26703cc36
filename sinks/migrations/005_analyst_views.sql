-- Plain views over the aggregates that encode a method, so every analyst computes it the same way.

-- Open overstays now: stays with no exit whose last allowed day has passed (Asia/Almaty calendar).
CREATE OR REPLACE VIEW open_overstays AS
SELECT
    nationality,
    entry_checkpoint,
    sum(stays) AS open_overstays,
    sum(stays * dateDiff('day', allowed_until, toDate(now(), 'Asia/Almaty'))) AS days_over_now
FROM stay_outcomes
WHERE outcome = 'OPEN' AND allowed_until < toDate(now(), 'Asia/Almaty')
GROUP BY nationality, entry_checkpoint
HAVING open_overstays > 0;

-- Overstay rates per expected departure, as the US DHS Entry/Exit Overstay Report computes them: of the stays
-- whose allowed period ended in a month, how many left late (out-of-country overstays) and how many have not
-- left at all (suspected in-country overstays). Stays still inside their allowed period are not yet due.
CREATE OR REPLACE VIEW overstay_rates AS
SELECT
    toStartOfMonth(allowed_until) AS expected_departure_month,
    nationality,
    sum(stays) AS expected_departures,
    sumIf(stays, outcome = 'LATE') AS out_of_country_overstays,
    sumIf(stays, outcome = 'OPEN') AS in_country_overstays,
    round(100 * (out_of_country_overstays + in_country_overstays) / nullIf(expected_departures, 0), 2) AS overstay_rate_pct,
    round(100 * in_country_overstays / nullIf(expected_departures, 0), 2) AS in_country_rate_pct
FROM stay_outcomes
WHERE allowed_until < toDate(now(), 'Asia/Almaty')
GROUP BY expected_departure_month, nationality
HAVING expected_departures > 0;
