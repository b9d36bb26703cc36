-- Staged Stay records (stage_stays) -> stays. Parameters as in crossings.sql (the pads are unused).
-- Only the newest revision of a stay in the batch is kept, and only if it is newer than the stored one; it
-- carries the state it supersedes (prev_*) so stay_outcomes_mv can take that state back. A stay's anchor
-- (the time of its entry, or of its exit without entry) never changes, so the stored revision is looked up on
-- the anchor day alone. A void revision (rule "void": late data showed the stay never existed) is stored with
-- outcome VOID, which the views do not count, and takes back the state of the revision it supersedes. An open
-- stay (no exit, no close_time: emitted once overdue) is OPEN; one closed by a new entry is SUPERSEDED.
INSERT INTO stays
(
    stay_id, revision, traveller_key, nationality, entry_basis, purpose, entry_event_id, exit_event_id, entry_time,
    exit_time, close_time, anchor_date, entry_checkpoint, exit_checkpoint, days, allowed_days, days_over, allowed_until, outcome,
    rule_id, rule_version, prev_outcome, prev_nationality, prev_entry_checkpoint, prev_allowed_until, prev_days_over,
    source_partition, source_offset, _batch
)
WITH
    staged AS (
        SELECT
            *,
            toDate(anchor_time, 'Asia/Almaty') AS anchor,
            if(entry_time IS NULL OR allowed_days IS NULL, NULL,
               toDate32(toDate(assumeNotNull(entry_time), 'Asia/Almaty')) + (assumeNotNull(allowed_days) - 1)) AS until,
            multiIf(
                rule_id = 'void', 'VOID',
                entry_time IS NULL, 'NO_ENTRY',
                allowed_days IS NULL, 'NO_LIMIT',
                exit_time IS NULL AND close_time IS NOT NULL, 'SUPERSEDED',
                exit_time IS NULL, 'OPEN',
                days_over > 0, 'LATE',
                'ON_TIME'
            ) AS state
        FROM stage_stays
        WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
        ORDER BY revision DESC, _msg DESC
        LIMIT 1 BY stay_id
    ),
    stored AS (
        SELECT
            stay_id,
            1 AS found,
            argMax((revision, outcome, nationality, entry_checkpoint, allowed_until, days_over), revision) AS latest
        FROM stays
        WHERE anchor_date IN (SELECT anchor FROM staged)
          AND stay_id IN (SELECT stay_id FROM staged)
          AND _batch != {batch:String}
        GROUP BY stay_id
    )
SELECT
    s.stay_id,
    s.revision,
    s.traveller_key,
    s.nationality,
    s.entry_basis,
    s.purpose,
    ifNull(s.entry_event_id, ''),
    ifNull(s.exit_event_id, ''),
    s.entry_time,
    s.exit_time,
    s.close_time,
    s.anchor,
    ifNull(s.entry_checkpoint, ''),
    ifNull(s.exit_checkpoint, ''),
    s.days,
    s.allowed_days,
    s.days_over,
    s.until,
    s.state,
    s.rule_id,
    s.rule_version,
    if(p.found = 1, p.latest.2, ''),
    if(p.found = 1, p.latest.3, ''),
    if(p.found = 1, p.latest.4, ''),
    if(p.found = 1, p.latest.5, NULL),
    if(p.found = 1, p.latest.6, 0),
    s._partition,
    {bases:Array(UInt64)}[s._partition + 1] + s._delta,
    {batch:String}
FROM staged AS s
LEFT JOIN stored AS p ON p.stay_id = s.stay_id
WHERE p.found = 0 OR s.revision > p.latest.1
ORDER BY s._msg
