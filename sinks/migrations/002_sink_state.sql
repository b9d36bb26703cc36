-- State of the sink itself, kept next to the data it describes.

-- Write-ahead batch intents: the sink records a batch's offset ranges and insert token before inserting it, so
-- after a crash the same ranges are re-read and re-inserted with the same token (ClickHouse then drops the
-- blocks that already landed, in the tables and in every materialized view).
CREATE TABLE IF NOT EXISTS sink_batches
(
    group_id LowCardinality(String),
    token String,
    ranges Array(Tuple(topic String, partition UInt32, first_offset UInt64, last_offset UInt64)),
    created_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (group_id, created_time)
TTL toDateTime(created_time) + toIntervalDay(7);

-- Registration deadlines for every arrival day, computed from the rules file (sinks/deadlines.py) and
-- reloaded when the sink starts with a rules file of another version, so a decree changes data, not SQL.
CREATE TABLE IF NOT EXISTS registration_deadlines
(
    nationality_group LowCardinality(String),
    arrival Date32,
    deadline Nullable(Date32),
    rule_id LowCardinality(String),
    rules_version String
)
ENGINE = MergeTree
ORDER BY (nationality_group, arrival);

CREATE TABLE IF NOT EXISTS nationality_groups
(
    nationality LowCardinality(String),
    nationality_group LowCardinality(String),
    rules_version String
)
ENGINE = MergeTree
ORDER BY nationality;
