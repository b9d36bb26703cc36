-- Staged DeadLetter records (stage_dead_letters) -> dead_letters: where each rejected message came from, who
-- rejected it and why; never its key or payload. Parameters as in crossings.sql (the pads are unused), plus
-- topics/types: the record type each source topic carries. A letter_id already stored by an earlier batch
-- (a dead letter delivered twice) is left out, and one batch keeps one row per letter_id. A reason is kept up to
-- the value it quotes ("...; got 1850-02-30"): analysts read this table, and the value may be a traveller's.
INSERT INTO dead_letters
(
    letter_id, stage, reason, field, source_topic, source_partition, source_offset, record_type, writer_schema,
    rejected_time, letter_partition, letter_offset, _batch
)
WITH staged AS (
    SELECT
        *,
        {bases:Array(UInt64)}[_partition + 1] + _delta AS own_offset,
        if(
            source_partition IS NULL OR source_offset IS NULL,
            concat('letter:', toString(_partition), ':', toString(own_offset)),
            concat(toString(source_partition), ':', toString(source_offset), ':', stage)
        ) AS id
    FROM stage_dead_letters
    WHERE _msg BETWEEN {lo:UInt64} AND {hi:UInt64} AND NOT has({skip:Array(UInt64)}, _msg)
)
SELECT
    id,
    stage,
    left(splitByString('; got ', reason)[1], 1000),
    field,
    source_topic,
    source_partition,
    source_offset,
    transform(source_topic, {topics:Array(String)}, {types:Array(String)}, ''),
    multiIf(
        value IS NULL, '',
        startsWith(assumeNotNull(value), unhex('C301')) AND length(value) >= 10,
            concat('fp:', lower(hex(substring(assumeNotNull(value), 3, 8)))),
        startsWith(assumeNotNull(value), unhex('00')) AND length(value) >= 5,
            concat('id:', toString(reinterpretAsUInt32(reverse(substring(assumeNotNull(value), 2, 4))))),
        ''
    ),
    rejected_time,
    _partition,
    own_offset,
    {batch:String}
FROM staged
WHERE (source_topic, id) NOT IN (
    SELECT source_topic, letter_id FROM dead_letters
    WHERE letter_id IN (SELECT id FROM staged) AND _batch != {batch:String}
)
ORDER BY _msg
LIMIT 1 BY source_topic, id
