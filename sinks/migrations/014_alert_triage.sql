-- Officers' triage of alerts (issue 17, item 6). The ops page and `shekara alerts ack|assign|note` publish each
-- alert's whole latest triage state to the compacted alert-actions topic (AlertTriage records, keyed by alert id);
-- the sink lands every state it reads, and ReplacingMergeTree keeps the latest by `updated_time` (read with FINAL).
-- Notes are officers' free text about people: the alerts' 5-year rule applies to them too.

CREATE TABLE IF NOT EXISTS alert_triage
(
    alert_id String,
    status LowCardinality(String) COMMENT 'NEW or ACKNOWLEDGED',
    acknowledged_by Nullable(String),
    acknowledged_time Nullable(DateTime64(6, 'UTC')),
    assignee Nullable(String),
    notes Array(Tuple(author String, time DateTime64(6, 'UTC'), text String)) COMMENT 'every note so far, oldest first',
    last_action LowCardinality(String) COMMENT 'ACKNOWLEDGE, ASSIGN or NOTE',
    updated_by String,
    updated_time DateTime64(6, 'UTC'),
    revision UInt64,
    source_partition UInt32,
    source_offset UInt64,
    ingested_time DateTime64(3, 'UTC') DEFAULT now64(3),
    _batch String
)
ENGINE = ReplacingMergeTree(updated_time)
ORDER BY alert_id
TTL toDate(updated_time) + toIntervalYear(5)
SETTINGS non_replicated_deduplication_window = 1000;

-- Open alerts (raised, neither resolved nor retracted) with when they were raised and their triage state;
-- an alert no officer has touched yet says NEW with no names.
CREATE OR REPLACE VIEW open_alerts_triage AS
SELECT
    a.alert_id AS alert_id,
    a.type AS type,
    a.severity AS severity,
    a.traveller_key AS traveller_key,
    a.nationality AS nationality,
    a.checkpoint_id AS checkpoint_id,
    a.due_time AS due_time,
    a.raised_time AS raised_time,
    if(t.revision = 0, 'NEW', t.status) AS triage_status,
    t.acknowledged_by AS acknowledged_by,
    t.acknowledged_time AS acknowledged_time,
    t.assignee AS assignee,
    length(t.notes) AS notes,
    if(length(t.notes) = 0, NULL, t.notes[-1].3) AS last_note,
    if(t.revision = 0, NULL, t.updated_time) AS triage_updated_time
FROM
(
    SELECT
        alert_id,
        any(type) AS type,
        any(severity) AS severity,
        any(traveller_key) AS traveller_key,
        any(nationality) AS nationality,
        any(checkpoint_id) AS checkpoint_id,
        min(due_time) AS due_time,
        minIf(emitted_time, action = 'RAISED') AS raised_time,
        groupUniqArray(action) AS actions
    FROM alerts
    GROUP BY alert_id
    HAVING has(actions, 'RAISED') AND NOT hasAny(actions, ['RESOLVED', 'RETRACTED'])
) AS a
LEFT JOIN (SELECT * FROM alert_triage FINAL) AS t ON a.alert_id = t.alert_id;
