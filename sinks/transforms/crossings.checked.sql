-- A staged Crossing with the values several checks use, computed once (not once for each lazily evaluated
-- check): its document number in normal form, its judging day, every string of it in one text, and `suspect`.
-- Included (`-- include: crossings.checked`) by crossings.screen.sql and crossings.rejects.sql, which must read
-- the same values; the parameters are theirs. Enums need no check: decoding the Avro gives one of their symbols.
SELECT
    *,
    -- A number already in normal form (the usual case) is its own normal form: no regex replacement.
    if(
        match(traveller.document.number, '^[A-Z0-9]{5,20}$'),
        traveller.document.number,
        shekara_normalise_document(traveller.document.number)
    ) AS number,
    shekara_judging_day(event_time, _ts) AS on_day,
    -- Every string of the record (enums need none: decoding the Avro gives one of their symbols), for the
    -- UTF-8 check and one search for hidden characters per record; `suspect`: see shekara_clean_source.
    concat(
        event_id, ' ',
        checkpoint.id, ' ',
        ifNull(checkpoint.border_country, ''), ' ',
        traveller.document.number, ' ',
        traveller.document.issuing_country, ' ',
        traveller.nationality, ' ',
        ifNull(entry_basis.permit_number, ''), ' ',
        source_system, ' ',
        ifNull(declared_destination, ''), ' ',
        ifNull(planned_exit_checkpoint, ''), ' ',
        ifNull(migration_card_number, ''), ' ',
        ifNull(tupleElement(assumeNotNull(conveyance), 'identifier'), ''), ' ',
        ifNull(source_record_id, '')
    ) AS texts,
    NOT (
        shekara_clean_source(
            _key, texts, event_time, received_time, traveller.birth_date, traveller.document.number,
            {max_key:UInt32}, {earliest:Date32}, {latest:Date32}
        )
        AND greatest(
            length(event_id),
            length(ifNull(source_record_id, '')),
            length(checkpoint.id),
            length(traveller.document.number),
            length(ifNull(entry_basis.permit_number, '')),
            length(ifNull(planned_exit_checkpoint, '')),
            length(ifNull(migration_card_number, '')),
            length(ifNull(tupleElement(assumeNotNull(conveyance), 'identifier'), ''))
        ) <= {max_id:UInt32}
        AND length(source_system) <= {max_text:UInt32}
        AND ifNull(entry_basis.visa_expiry, {earliest:Date32}) BETWEEN {earliest:Date32} AND {latest:Date32}
    ) AS suspect
FROM stage_crossings
