-- Staged AlertTriage records (stage_alert_triage) -> alert_triage: every state as read; the table keeps the
-- latest per alert by updated_time (ReplacingMergeTree), so a state read twice (a replayed batch) changes nothing.
-- Parameters as in crossings.sql (the pads are unused).
INSERT INTO alert_triage
(
    alert_id, status, acknowledged_by, acknowledged_time, assignee, notes, last_action, updated_by, updated_time,
    revision, source_partition, source_offset, _batch
)
SELECT
    alert_id,
    status,
    acknowledged_by,
    acknowledged_time,
    assignee,
    notes,
    last_action,
    updated_by,
    updated_time,
    revision,
    _partition,
    {bases:Array(UInt64)}[_partition + 1] + _delta,
    {batch:String}
FROM stage_alert_triage
WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
ORDER BY _msg
