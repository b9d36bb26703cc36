-- Staged Alert records that can never be stored: (_msg, field, reason).
SELECT _msg, field, concat(field, ' is empty') AS reason
FROM
(
    SELECT _msg, multiIf(alert_id = '', 'alert_id', traveller_key = '', 'traveller_key', '') AS field
    FROM stage_alerts
)
WHERE field != ''
ORDER BY _msg
