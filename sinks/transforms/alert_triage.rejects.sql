-- Staged AlertTriage records that can never be stored: (_msg, field, reason). Only the ops page and the console
-- write this topic, and they refuse these first (streams.triage.validate); the sink dead-letters any that come.
SELECT _msg, field, reason
FROM
(
    SELECT
        _msg,
        multiIf(alert_id = '', 'alert_id', updated_by = '', 'updated_by', revision < 1, 'revision', '') AS field,
        if(field = 'revision', 'revision is below 1', concat(field, ' is empty')) AS reason
    FROM stage_alert_triage
)
WHERE field != ''
ORDER BY _msg
