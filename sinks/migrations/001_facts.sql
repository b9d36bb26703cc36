-- Fact tables: one row per event (or per alert action / stay revision), pseudonymised.
-- No document number, address or host id is stored in clear: traveller_key, host_key and address_key are keyed
-- HMACs (shekara.pseudonym). Birth dates are reduced to the year. Calendar days are Asia/Almaty days.
-- ReplacingMergeTree on the natural id (last in the sort key) removes duplicates that slip past the sink's
-- batch check; `_batch` is the insert token of the sink batch that wrote the row (see sinks/writer.py).
-- Retention follows EES (domain.md): 3 years after exit, 5 years without exit or for overstayers.

CREATE TABLE IF NOT EXISTS crossings
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    received_time DateTime64(3, 'UTC'),
    event_date Date COMMENT 'day of event_time in Asia/Almaty',
    checkpoint_id LowCardinality(String),
    checkpoint_kind LowCardinality(String),
    border_country LowCardinality(String) COMMENT 'neighbour country; empty for airports and sea ports',
    direction LowCardinality(String),
    traveller_key String COMMENT 'HMAC pseudonym of issuing country and document number',
    document_type LowCardinality(String),
    issuing_country LowCardinality(String),
    nationality LowCardinality(String),
    birth_year UInt16,
    sex LowCardinality(String),
    purpose LowCardinality(String),
    entry_basis LowCardinality(String),
    visa_expiry Nullable(Date32),
    declared_destination LowCardinality(String),
    planned_exit_checkpoint LowCardinality(String),
    has_migration_card Bool,
    conveyance_kind LowCardinality(String),
    carrier LowCardinality(String) COMMENT 'flight, train or vessel; empty for private vehicles (plates are personal)',
    source_system LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String,
    INDEX traveller_key_bf traveller_key TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_date, checkpoint_id, direction, nationality, event_id)
-- An entry cannot know at write time whether an exit will follow, so entries keep the 5-year bound;
-- the exact per-stay rule is on `stays`.
TTL if(direction = 'EXIT', event_date + toIntervalYear(3), event_date + toIntervalYear(5))
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS registrations
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    received_time DateTime64(3, 'UTC'),
    event_date Date COMMENT 'day the registration was filed, Asia/Almaty',
    action LowCardinality(String),
    registration_id String,
    traveller_key String,
    nationality LowCardinality(String),
    birth_year UInt16,
    sex LowCardinality(String),
    host_kind LowCardinality(String),
    host_key String COMMENT 'HMAC pseudonym of the host id',
    region LowCardinality(String),
    address_key String COMMENT 'HMAC pseudonym of the address',
    valid_from Date32,
    valid_until Date32,
    deadline Nullable(Date32) COMMENT 'last day to register for an arrival on valid_from (rules file); NULL: none',
    days_late Int32 COMMENT 'days filed after the deadline; 0 when on time or no deadline',
    rule_id LowCardinality(String),
    source_system LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String,
    INDEX traveller_key_bf traveller_key TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_date, region, host_kind, event_id)
TTL greatest(toDate(valid_until), event_date) + toIntervalYear(3)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS status_changes
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    received_time DateTime64(3, 'UTC'),
    event_date Date,
    kind LowCardinality(String),
    traveller_key String,
    nationality LowCardinality(String),
    birth_year UInt16,
    sex LowCardinality(String),
    authority LowCardinality(String),
    valid_from Nullable(Date32),
    valid_until Nullable(Date32) COMMENT 'new visa expiry, permit end, ban end',
    source_system LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String,
    INDEX traveller_key_bf traveller_key TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_date, kind, event_id)
-- Bans and permits matter while they run: keep 5 years after the status stops applying.
TTL greatest(event_date, toDate(ifNull(valid_until, event_date))) + toIntervalYear(5)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS stays
(
    stay_id String,
    revision UInt32,
    traveller_key String,
    nationality LowCardinality(String),
    entry_basis LowCardinality(String),
    purpose LowCardinality(String),
    entry_event_id String,
    exit_event_id String,
    entry_time Nullable(DateTime64(3, 'UTC')),
    exit_time Nullable(DateTime64(3, 'UTC')),
    anchor_date Date COMMENT 'day of the entry (or of the exit for an exit without entry); fixed for a stay',
    entry_checkpoint LowCardinality(String),
    exit_checkpoint LowCardinality(String),
    days UInt32,
    allowed_days Nullable(UInt32),
    days_over UInt32,
    allowed_until Nullable(Date32) COMMENT 'last allowed day (expected departure): entry day + allowed_days - 1',
    outcome LowCardinality(String) COMMENT 'OPEN, ON_TIME, LATE (out-of-country overstay), NO_LIMIT, NO_ENTRY, VOID (never existed: drop)',
    rule_id LowCardinality(String),
    rule_version LowCardinality(String),
    -- The state this revision supersedes, so the stay views can take it back (empty outcome: first revision).
    prev_outcome LowCardinality(String),
    prev_nationality LowCardinality(String),
    prev_entry_checkpoint LowCardinality(String),
    prev_allowed_until Nullable(Date32),
    prev_days_over UInt32,
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String,
    INDEX traveller_key_bf traveller_key TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(anchor_date)
ORDER BY (anchor_date, stay_id)
TTL multiIf(
    exit_time IS NULL, toDate(ifNull(allowed_until, anchor_date)) + toIntervalYear(5),
    days_over > 0, toDate(assumeNotNull(exit_time), 'Asia/Almaty') + toIntervalYear(5),
    toDate(assumeNotNull(exit_time), 'Asia/Almaty') + toIntervalYear(3)
)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    action LowCardinality(String) COMMENT 'RAISED, RESOLVED or RETRACTED: one row each',
    type LowCardinality(String),
    severity LowCardinality(String),
    traveller_key String,
    nationality LowCardinality(String),
    checkpoint_id LowCardinality(String),
    evidence_event_ids Array(String),
    rule_id LowCardinality(String),
    rule_version LowCardinality(String),
    reason String,
    due_time DateTime64(3, 'UTC'),
    emitted_time DateTime64(3, 'UTC'),
    due_date Date,
    days_overstayed Nullable(Int32),
    details Map(String, String),
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String,
    INDEX traveller_key_bf traveller_key TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(due_date)
ORDER BY (due_date, type, alert_id, action)
-- Alerts concern overstayers and violations: the 5-year rule.
TTL due_date + toIntervalYear(5)
SETTINGS non_replicated_deduplication_window = 1000;
