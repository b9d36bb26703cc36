-- Staged DeadLetter records that can never be stored: (_msg, field, reason). A dead letter that cannot be read is
-- logged by the sink, never dead-lettered again (that could go on for ever).
SELECT _msg, 'stage' AS field, 'stage is empty' AS reason
FROM stage_dead_letters
WHERE stage = ''
ORDER BY _msg
