-- Open stays reach the warehouse (issue 16). The processors emit a stay with no exit once it passes its last
-- allowed day (and revise it when it changes); its close is its next revision. A stay closed by a new entry (a
-- missing exit record) now says when: `close_time` (Stay schema v2), outcome SUPERSEDED.
--
-- The overstay figures are judged "as of" the start of a day D (00:00 Asia/Almaty), from each stay's latest
-- revision and its times, so any past day can be asked after the fact:
--   overdue at D            its last allowed day L is before D (the IN_COUNTRY_OVERSTAY alert is due at L+1 00:00)
--   in the country at D     overdue, and no exit or superseding entry before D 00:00 (the alert is open)
--   left late by D          an exit before D 00:00 that the processors judged late (LATE: on a day after L)
-- A stay superseded by a new entry after L left at some unknown time: neither kind of overstay once superseded.

ALTER TABLE stays ADD COLUMN IF NOT EXISTS close_time Nullable(DateTime64(3, 'UTC'))
    COMMENT 'the exit, or the entry that superseded the stay; NULL while open' AFTER exit_time;

-- Each stay's latest revision with the times the as-of views read (void and limitless stays left out).
CREATE OR REPLACE VIEW stays_judged AS
SELECT
    stay_id,
    traveller_key,
    nationality,
    entry_checkpoint,
    assumeNotNull(allowed_until) AS allowed_until,
    exit_time,
    coalesce(exit_time, close_time) AS closed_time,
    outcome
FROM stays FINAL
WHERE outcome IN ('OPEN', 'ON_TIME', 'LATE', 'SUPERSEDED') AND allowed_until IS NOT NULL;

CREATE OR REPLACE VIEW open_overstays_at AS
SELECT
    nationality,
    entry_checkpoint,
    count() AS open_overstays,
    sum(dateDiff('day', allowed_until, {as_of:Date})) AS days_over_now,
    uniqExact(traveller_key) AS travellers
FROM stays_judged
WHERE allowed_until < {as_of:Date}
  AND (closed_time IS NULL OR closed_time > toDateTime({as_of:Date}, 'Asia/Almaty'))
GROUP BY nationality, entry_checkpoint;

CREATE OR REPLACE VIEW overstay_rates_at AS
SELECT
    toStartOfMonth(allowed_until) AS expected_departure_month,
    nationality,
    count() AS expected_departures,
    countIf(outcome = 'LATE' AND exit_time <= toDateTime({as_of:Date}, 'Asia/Almaty')) AS out_of_country_overstays,
    countIf(closed_time IS NULL OR closed_time > toDateTime({as_of:Date}, 'Asia/Almaty')) AS in_country_overstays,
    round(100 * (out_of_country_overstays + in_country_overstays) / nullIf(expected_departures, 0), 2) AS overstay_rate_pct,
    round(100 * in_country_overstays / nullIf(expected_departures, 0), 2) AS in_country_rate_pct
FROM stays_judged
WHERE allowed_until < {as_of:Date}
GROUP BY expected_departure_month, nationality;

CREATE OR REPLACE VIEW open_overstays AS
SELECT * FROM open_overstays_at(as_of = toDate(now(), 'Asia/Almaty'));

CREATE OR REPLACE VIEW overstay_rates AS
SELECT * FROM overstay_rates_at(as_of = toDate(now(), 'Asia/Almaty'));
