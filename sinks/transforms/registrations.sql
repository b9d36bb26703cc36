-- Staged Registration records (stage_registrations) -> registrations. Parameters as in crossings.sql; the HMAC
-- pads (traveller, host and address keys) come from the session table _pseudonym_pads, as in crossings.sql.
-- Host id and address are pseudonymised like document numbers (keyed hash with a purpose label). The filing
-- deadline comes from registration_deadlines (computed from the rules file by sinks/deadlines.py) for the
-- traveller's nationality group and the first day of the registration (the arrival at the address).
INSERT INTO registrations
(
    event_id, event_time, received_time, event_date, action, registration_id, traveller_key, nationality,
    birth_year, sex, host_kind, host_key, region, address_key, valid_from, valid_until, deadline, days_late, rule_id,
    source_system, source_partition, source_offset, _batch
)
WITH
    -- The HMAC pads from the writer session's temporary table (sinks.writer): never in the query text.
    (SELECT ipad FROM _pseudonym_pads) AS ipad,
    (SELECT opad FROM _pseudonym_pads) AS opad,
    staged AS (
        SELECT *, toDate(event_time, 'Asia/Almaty') AS day
        FROM stage_registrations
        WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
    ),
    grouped AS (
        SELECT s.*, if(g.nationality_group = '', 'GENERAL', g.nationality_group) AS nationality_group
        FROM staged AS s
        LEFT JOIN nationality_groups AS g ON g.nationality = s.traveller.nationality
    )
SELECT
    r.event_id,
    r.event_time,
    r.received_time,
    r.day,
    r.action,
    r.registration_id,
    -- The keyed traveller key: HMAC of the message key, which registrations.rejects.sql checked is the public
    -- partition key of issuing country and normalised number (shekara.pseudonym.traveller_key).
    shekara_hmac32(ipad, opad, r._key),
    r.traveller.nationality,
    toYear(r.traveller.birth_date),
    r.traveller.sex,
    r.host_kind,
    shekara_hmac32(ipad, opad, concat('host', '|', r.host_id)),
    r.region,
    shekara_hmac32(ipad, opad, concat('address', '|', r.address)),
    r.valid_from,
    r.valid_until,
    if(r.action = 'REGISTERED', d.deadline, NULL) AS filing_deadline,
    if(filing_deadline IS NULL, 0, greatest(0, dateDiff('day', assumeNotNull(filing_deadline), r.day))),
    if(r.action = 'REGISTERED', d.rule_id, ''),
    r.source_system,
    r._partition,
    {bases:Array(UInt64)}[r._partition + 1] + r._delta,
    {batch:String}
FROM grouped AS r
LEFT JOIN registration_deadlines AS d ON d.nationality_group = r.nationality_group AND d.arrival = r.valid_from
WHERE r.event_id NOT IN (
    SELECT event_id FROM registrations
    WHERE event_date IN (SELECT day FROM staged)
      AND event_id IN (SELECT event_id FROM staged)
      AND _batch != {batch:String}
)
ORDER BY r._msg
LIMIT 1 BY r.event_id
