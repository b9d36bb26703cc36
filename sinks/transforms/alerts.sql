-- Staged Alert records (stage_alerts) -> alerts: one row per record of an alert (RAISED, RESOLVED, RETRACTED),
-- numbered by `revision`. Parameters as in crossings.sql; an (alert_id, revision, action) already stored by an
-- earlier batch is left out: the processors number records deterministically, so a replay repeats the key (not
-- emitted_time, their wall clock). The action is in the key for records written before revisions (all 0).
INSERT INTO alerts
(
    alert_id, action, revision, type, severity, traveller_key, nationality, checkpoint_id, evidence_event_ids, rule_id,
    rule_version, reason, due_time, emitted_time, due_date, days_overstayed, details, source_partition,
    source_offset, _batch
)
WITH staged AS (
    SELECT *, toDate(due_time, 'Asia/Almaty') AS day
    FROM stage_alerts
    WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
)
SELECT
    alert_id,
    action,
    revision,
    type,
    severity,
    traveller_key,
    nationality,
    ifNull(checkpoint_id, ''),
    evidence_event_ids,
    rule_id,
    rule_version,
    reason,
    due_time,
    emitted_time,
    day,
    days_overstayed,
    details,
    _partition,
    {bases:Array(UInt64)}[_partition + 1] + _delta,
    {batch:String}
FROM staged
WHERE (alert_id, revision, action) NOT IN (
    SELECT alert_id, revision, action FROM alerts
    WHERE due_date IN (SELECT day FROM staged)
      AND alert_id IN (SELECT alert_id FROM staged)
      AND _batch != {batch:String}
)
ORDER BY _msg
LIMIT 1 BY alert_id, revision, action
