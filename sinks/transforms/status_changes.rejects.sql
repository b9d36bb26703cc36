-- Staged StatusChange records that can never be stored: (_msg, field, reason).
SELECT _msg, field, concat(field, ' is empty') AS reason
FROM
(
    SELECT
        _msg,
        multiIf(
            event_id = '', 'event_id',
            shekara_normalise_document(traveller.document.number) = '', 'traveller.document.number',
            ''
        ) AS field
    FROM stage_status_changes
)
WHERE field != ''
ORDER BY _msg
