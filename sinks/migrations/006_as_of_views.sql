-- The overstay methods of 005 as parameterized views judged at a given day (`as_of`), so a report can be made
-- as of any day (a past month, the end of a simulated period); the plain views become "as of today" over them,
-- so the method stays in one place. Counts follow each stay's latest revision (stay_outcomes).

CREATE OR REPLACE VIEW open_overstays_at AS
SELECT
    nationality,
    entry_checkpoint,
    sum(stays) AS open_overstays,
    sum(stays * dateDiff('day', allowed_until, {as_of:Date})) AS days_over_now
FROM stay_outcomes
WHERE outcome = 'OPEN' AND allowed_until < {as_of:Date}
GROUP BY nationality, entry_checkpoint
HAVING open_overstays > 0;

CREATE OR REPLACE VIEW overstay_rates_at AS
SELECT
    toStartOfMonth(allowed_until) AS expected_departure_month,
    nationality,
    sum(stays) AS expected_departures,
    sumIf(stays, outcome = 'LATE') AS out_of_country_overstays,
    sumIf(stays, outcome = 'OPEN') AS in_country_overstays,
    round(100 * (out_of_country_overstays + in_country_overstays) / nullIf(expected_departures, 0), 2) AS overstay_rate_pct,
    round(100 * in_country_overstays / nullIf(expected_departures, 0), 2) AS in_country_rate_pct
FROM stay_outcomes
WHERE allowed_until < {as_of:Date}
GROUP BY expected_departure_month, nationality
HAVING expected_departures > 0;

CREATE OR REPLACE VIEW open_overstays AS
SELECT * FROM open_overstays_at(as_of = toDate(now(), 'Asia/Almaty'));

CREATE OR REPLACE VIEW overstay_rates AS
SELECT * FROM overstay_rates_at(as_of = toDate(now(), 'Asia/Almaty'));
