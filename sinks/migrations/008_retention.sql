-- Retention, corrected: every table with personal or host data, facts and aggregates, has a TTL; crossings of an
-- overstay keep 5 years; no TTL can overflow. The rules (EES, domain.md): 3 years after exit, 5 years with no
-- exit or for overstayers. Reasons and the overstay sweep: docs/warehouse.md, "Retention".
--
-- Overflow: Date ends on 2149-06-06, and toDate() of a Date32 past it wraps (toDate(toDate32('2299-12-31')) is
-- 2120-07-26), as does adding years near the end (toDate('2148-01-01') + 5 years is 1973-07-28): a visa valid
-- "until 2299" would then be deleted at the next TTL merge. So every TTL takes its day as Date32, clamps it to
-- [1970-01-01, 2144-01-01], and only then becomes a Date and adds at most 5 years (at most 2149-01-01). A day
-- past 2144 means "longer than anyone here will check": the row is kept until 2147-2149.
--
-- MODIFY TTL recalculates the TTL of existing parts in the background (materialize_ttl_after_modify), so rows
-- that an older TTL would have wrongly deleted are re-judged by these.

-- Set on the EXIT crossing of a stay that ended after its last allowed day (days_over > 0 in `stays`), by the
-- sink's overstay sweep (sinks/retention.py): the exit event cannot know it is late when it is written, the
-- stay that says so arrives from the processors afterwards.
ALTER TABLE crossings ADD COLUMN IF NOT EXISTS overstay Bool DEFAULT false
    COMMENT 'exit of a stay that overstayed: kept 5 years, not 3 (set by the sink''s overstay sweep)';

-- Entries: 5 years after the later of the entry day and the visa expiry (the authorised stay of a visa holder
-- can run to the visa's end; the stay's exact rule is on `stays`). Exits: 3 years, 5 for an overstay.
ALTER TABLE crossings MODIFY TTL multiIf(
    direction != 'EXIT',
    toDate(least(greatest(toDate32(event_date), ifNull(visa_expiry, toDate32(event_date))), toDate32('2144-01-01')))
        + toIntervalYear(5),
    overstay, toDate(least(toDate32(event_date), toDate32('2144-01-01'))) + toIntervalYear(5),
    toDate(least(toDate32(event_date), toDate32('2144-01-01'))) + toIntervalYear(3)
);

-- 3 years after the registration stops applying (valid_until), at least 3 years after it was filed.
ALTER TABLE registrations MODIFY TTL
    toDate(least(greatest(toDate32(event_date), valid_until), toDate32('2144-01-01'))) + toIntervalYear(3);

-- Bans and permits matter while they run: 5 years after the status stops applying.
ALTER TABLE status_changes MODIFY TTL
    toDate(least(greatest(toDate32(event_date), ifNull(valid_until, toDate32(event_date))), toDate32('2144-01-01')))
        + toIntervalYear(5);

-- No exit: 5 years after the last allowed day. Exit after it (days_over > 0): 5 years after the exit. Else 3.
ALTER TABLE stays MODIFY TTL multiIf(
    exit_time IS NULL,
    toDate(least(greatest(toDate32(anchor_date), ifNull(allowed_until, toDate32(anchor_date))), toDate32('2144-01-01')))
        + toIntervalYear(5),
    days_over > 0,
    toDate(least(greatest(toDate32(assumeNotNull(exit_time), 'Asia/Almaty'), toDate32(anchor_date)), toDate32('2144-01-01'))) + toIntervalYear(5),
    toDate(least(greatest(toDate32(assumeNotNull(exit_time), 'Asia/Almaty'), toDate32(anchor_date)), toDate32('2144-01-01'))) + toIntervalYear(3)
);

-- Alerts concern overstayers and violations: the 5-year rule, from the day the alert fell due.
ALTER TABLE alerts MODIFY TTL toDate(least(toDate32(due_date), toDate32('2144-01-01'))) + toIntervalYear(5);

-- Aggregates. Small cells single people out (one national of a rare country at a small post on one day), and
-- registration_compliance holds host keys: none outlives the facts it was computed from. Each keeps as long as
-- the longest-kept fact of its day or month.
ALTER TABLE daily_flows MODIFY TTL toDate(least(toDate32(day), toDate32('2144-01-01'))) + toIntervalYear(5);

ALTER TABLE monthly_balance MODIFY TTL
    toDate(least(toDate32(toLastDayOfMonth(month)), toDate32('2144-01-01'))) + toIntervalYear(5);

ALTER TABLE stay_outcomes MODIFY TTL
    toDate(least(greatest(allowed_until, toDate32('1970-01-01')), toDate32('2144-01-01'))) + toIntervalYear(5);

-- Host keys: 3 years after the month the registrations were filed, as the registrations themselves at least.
ALTER TABLE registration_compliance MODIFY TTL
    toDate(least(toDate32(toLastDayOfMonth(month)), toDate32('2144-01-01'))) + toIntervalYear(3);

ALTER TABLE alert_counts MODIFY TTL toDate(least(toDate32(day), toDate32('2144-01-01'))) + toIntervalYear(5);
