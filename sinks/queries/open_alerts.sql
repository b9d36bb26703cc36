-- title: Open alerts by type and severity
-- description: Alerts raised and neither resolved nor retracted, from the alerts fact table.
-- data: alerts.due_date
SELECT type, severity, count() AS open_alerts, min(due_time) AS oldest_due
FROM
(
    SELECT alert_id, any(type) AS type, any(severity) AS severity, min(due_time) AS due_time,
           groupUniqArray(action) AS actions
    FROM alerts
    GROUP BY alert_id
)
WHERE has(actions, 'RAISED') AND NOT hasAny(actions, ['RESOLVED', 'RETRACTED'])
GROUP BY type, severity
ORDER BY open_alerts DESC, type, severity
