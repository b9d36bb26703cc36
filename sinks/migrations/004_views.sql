-- Materialized views: pre-aggregated tables the dashboard reads instead of the facts. Each is fed by inserts
-- into one fact table; the sink inserts every event once (batch check + insert token) and ClickHouse
-- deduplicates retried blocks in the views too, so no view double counts. Read them with sum() ... GROUP BY:
-- Summing/Aggregating merges happen in the background.

-- Daily flows by checkpoint, direction and nationality.
CREATE TABLE IF NOT EXISTS daily_flows
(
    day Date,
    checkpoint_id LowCardinality(String),
    direction LowCardinality(String),
    nationality LowCardinality(String),
    checkpoint_kind LowCardinality(String),
    crossings UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, checkpoint_id, direction, nationality, checkpoint_kind)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_flows_mv TO daily_flows AS
SELECT event_date AS day, checkpoint_id, direction, nationality, checkpoint_kind, count() AS crossings
FROM crossings
GROUP BY day, checkpoint_id, direction, nationality, checkpoint_kind;

-- Monthly migration balance (entries minus exits) by nationality.
CREATE TABLE IF NOT EXISTS monthly_balance
(
    month Date,
    nationality LowCardinality(String),
    entries UInt64,
    exits UInt64
)
ENGINE = SummingMergeTree
ORDER BY (month, nationality)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS monthly_balance_mv TO monthly_balance AS
SELECT
    toStartOfMonth(event_date) AS month,
    nationality,
    countIf(direction = 'ENTRY') AS entries,
    countIf(direction = 'EXIT') AS exits
FROM crossings
GROUP BY month, nationality;

-- Stays by expected departure (last allowed day), nationality, entry checkpoint and outcome. A new revision
-- of a stay adds its state (+1) and takes back the state it supersedes (-1, the prev_* columns), so the
-- counts follow the latest revision. Serves open overstays (OPEN, last allowed day passed) and the DHS-style
-- overstay rates per expected departure.
CREATE TABLE IF NOT EXISTS stay_outcomes
(
    allowed_until Date32,
    nationality LowCardinality(String),
    entry_checkpoint LowCardinality(String),
    outcome LowCardinality(String),
    stays Int64,
    days_over Int64
)
ENGINE = SummingMergeTree
ORDER BY (allowed_until, nationality, entry_checkpoint, outcome)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS stay_outcomes_mv TO stay_outcomes AS
SELECT
    assumeNotNull(state_until) AS allowed_until,
    state_nationality AS nationality,
    state_checkpoint AS entry_checkpoint,
    state_outcome AS outcome,
    sum(sign) AS stays,
    sum(sign * state_days_over) AS days_over
FROM
(
    SELECT
        state.1 AS sign,
        state.2 AS state_until,
        state.3 AS state_nationality,
        state.4 AS state_checkpoint,
        state.5 AS state_outcome,
        state.6 AS state_days_over
    FROM stays
    ARRAY JOIN [
        (toInt64(1), allowed_until, nationality, entry_checkpoint, outcome, toInt64(days_over)),
        (toInt64(-1), prev_allowed_until, prev_nationality, prev_entry_checkpoint, prev_outcome, toInt64(prev_days_over))
    ] AS state
)
WHERE state_outcome IN ('OPEN', 'ON_TIME', 'LATE') AND state_until IS NOT NULL
GROUP BY allowed_until, nationality, entry_checkpoint, outcome;

-- Registration compliance by month filed, region and host: filed by the deadline of the rules file or late.
CREATE TABLE IF NOT EXISTS registration_compliance
(
    month Date,
    region LowCardinality(String),
    host_kind LowCardinality(String),
    host_key String,
    registrations UInt64,
    on_time UInt64,
    late UInt64,
    no_deadline UInt64,
    days_late UInt64
)
ENGINE = SummingMergeTree
ORDER BY (month, region, host_kind, host_key)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS registration_compliance_mv TO registration_compliance AS
SELECT
    toStartOfMonth(event_date) AS month,
    region,
    host_kind,
    host_key,
    count() AS registrations,
    countIf(deadline IS NOT NULL AND registrations.days_late = 0) AS on_time,
    countIf(registrations.days_late > 0) AS late,
    countIf(deadline IS NULL) AS no_deadline,
    sum(toUInt64(registrations.days_late)) AS days_late
FROM registrations
WHERE action = 'REGISTERED'
GROUP BY month, region, host_kind, host_key;

-- Alert counts by day due, type, action, severity and nationality.
CREATE TABLE IF NOT EXISTS alert_counts
(
    day Date,
    type LowCardinality(String),
    action LowCardinality(String),
    severity LowCardinality(String),
    nationality LowCardinality(String),
    alerts UInt64
)
ENGINE = SummingMergeTree
ORDER BY (day, type, action, severity, nationality)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS alert_counts_mv TO alert_counts AS
SELECT due_date AS day, type, action, severity, nationality, count() AS alerts
FROM alerts
GROUP BY day, type, action, severity, nationality;
