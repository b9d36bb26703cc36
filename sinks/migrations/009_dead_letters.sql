-- Dead letters in the warehouse, and the sink's record of the dead letters it produced.

-- Every record of the dead-letter topic (`shekara dead-letters`), one row per rejected source message and stage:
-- where it came from, who rejected it and why. No payload and no message key (the key is a public hash of the
-- document number): what was rejected stays on the topic, whose retention is its own. `letter_id` is the
-- source coordinates and stage, or, for a message rejected before it reached Kafka (`shekara publish`), the
-- dead letter's own coordinates: a record delivered twice lands once (the transform checks, and the engine
-- collapses what a concurrent insert could still let through).
CREATE TABLE IF NOT EXISTS dead_letters
(
    letter_id String,
    stage LowCardinality(String) COMMENT 'decode, validate, process (the stream processors) or sink',
    reason String,
    field Nullable(String) COMMENT 'dotted path of the field at fault, if one field is to blame',
    source_topic LowCardinality(String),
    source_partition Nullable(Int32),
    source_offset Nullable(Int64),
    record_type LowCardinality(String) COMMENT 'the record the source topic carries',
    writer_schema String COMMENT 'the wire header: fp:<fingerprint> (single-object), id:<registry id>, or empty',
    rejected_time DateTime64(6, 'UTC'),
    letter_partition UInt32,
    letter_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, letter_id)
-- Operational data about rejected input, not about people: kept long enough to follow a sender's fixes.
TTL toDateTime(rejected_time) + toIntervalDay(400)
SETTINGS non_replicated_deduplication_window = 1000;

-- The source messages the sink has dead-lettered (stage "sink"), recorded as each dead letter is acknowledged:
-- a retried or replayed batch produces only the dead letters not recorded here, so the topic never grows on a retry.
CREATE TABLE IF NOT EXISTS sink_dead_lettered
(
    group_id LowCardinality(String),
    source_topic String,
    source_partition UInt32,
    source_offset UInt64,
    created_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (group_id, source_topic, source_partition, source_offset)
TTL toDateTime(created_time) + toIntervalDay(7);
