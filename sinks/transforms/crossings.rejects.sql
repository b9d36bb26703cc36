-- Staged Crossing records that can never be stored: (_msg, field, reason).
SELECT _msg, field, reason
FROM
(
    SELECT
        _msg,
        multiIf(
            event_id = '', 'event_id',
            checkpoint.id = '', 'checkpoint.id',
            shekara_normalise_document(traveller.document.number) = '', 'traveller.document.number',
            traveller.nationality = '', 'traveller.nationality',
            ''
        ) AS field,
        multiIf(
            field = 'traveller.document.number', 'document number is empty: no traveller key can be derived',
            concat(field, ' is empty')
        ) AS reason
    FROM stage_crossings
)
WHERE field != ''
ORDER BY _msg
