-- title: Open alerts by type and severity
-- description: Alerts whose current state (their latest revision, view alert_states) is RAISED: neither
-- description: resolved nor retracted since.
-- data: alerts.due_date
SELECT type, severity, count() AS open_alerts, min(due_time) AS oldest_due
FROM alert_states
WHERE action = 'RAISED'
GROUP BY type, severity
ORDER BY open_alerts DESC, type, severity
