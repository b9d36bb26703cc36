-- Staged Stay records that can never be stored: (_msg, field, reason).
SELECT _msg, field, reason
FROM
(
    SELECT
        _msg,
        multiIf(
            stay_id = '', 'stay_id',
            revision < 0, 'revision',
            entry_time IS NULL AND exit_time IS NULL AND rule_id != 'void', 'entry_time',
            days < 0, 'days',
            days_over < 0, 'days_over',
            allowed_days < 0, 'allowed_days',
            ''
        ) AS field,
        multiIf(
            field = 'stay_id', 'stay_id is empty',
            field = 'entry_time', 'a stay needs an entry_time or an exit_time (only a void revision has neither)',
            concat(field, ' is negative')
        ) AS reason
    FROM stage_stays
)
WHERE field != ''
ORDER BY _msg
