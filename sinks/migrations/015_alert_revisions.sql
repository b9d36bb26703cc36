-- An alert's whole life, as the alerts topic tells it (Alert schema v2). The processors number each record of an
-- alert id (`revision`: 0, 1, 2...): an alert RETRACTED because late data moved its due time is RAISED again with
-- a later revision, and a RAISED or RESOLVED record may be repeated with corrected fields. The sink keeps every
-- record, one row per (alert_id, revision) (a replay's copy is left out), and the alert's current state is its
-- record with the highest revision. Rows stored before v2 read revision 0: for them, ties go to the later
-- emitted_time, then RETRACTED over RESOLVED over RAISED (what they meant before: a RESOLVED or RETRACTED row
-- ends the alert).

-- No explicit DEFAULT: a sorting key may only take a column added in the same ALTER without a default
-- expression. A UInt32 reads 0 where it was never written, the revision of every record before v2.
ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS revision UInt32
        COMMENT 'increases with each record of the alert id; the highest is its current state (0 before v2)' AFTER action,
    MODIFY ORDER BY (due_date, type, alert_id, action, revision);

ALTER TABLE alerts COMMENT COLUMN action 'RAISED, RESOLVED or RETRACTED: one row per record (alert_id, revision)';

-- Each alert's current state: its latest record's fields, when it was first raised, how many records it has.
-- (`latest` and `raising` are computed below the aggregation: the aliases above shadow the columns they read.)
CREATE OR REPLACE VIEW alert_states AS
SELECT
    alert_id,
    argMax(action, latest) AS action,
    max(revision) AS revision,
    argMax(type, latest) AS type,
    argMax(severity, latest) AS severity,
    argMax(traveller_key, latest) AS traveller_key,
    argMax(nationality, latest) AS nationality,
    argMax(checkpoint_id, latest) AS checkpoint_id,
    argMax(evidence_event_ids, latest) AS evidence_event_ids,
    argMax(rule_id, latest) AS rule_id,
    argMax(rule_version, latest) AS rule_version,
    argMax(reason, latest) AS reason,
    argMax(due_time, latest) AS due_time,
    argMax(due_date, latest) AS due_date,
    argMax(days_overstayed, latest) AS days_overstayed,
    argMax(details, latest) AS details,
    minIf(emitted_time, raising) AS raised_time,
    max(emitted_time) AS updated_time,
    count() AS records
FROM
(
    SELECT
        *,
        (revision, emitted_time, indexOf(['RAISED', 'RESOLVED', 'RETRACTED'], action)) AS latest,
        action = 'RAISED' AS raising
    FROM alerts
)
GROUP BY alert_id;

-- Open alerts (current state RAISED: neither resolved nor retracted since) with their triage state; an alert no
-- officer has touched yet says NEW with no names.
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
FROM (SELECT * FROM alert_states WHERE action = 'RAISED') AS a
LEFT JOIN (SELECT * FROM alert_triage FINAL) AS t ON a.alert_id = t.alert_id;
