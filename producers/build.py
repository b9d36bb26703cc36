"""Build source events from plain values, for integrators who do not want to assemble nested records.

Every argument takes a plain value: strings for enums ("ROAD", "ENTRY"), ISO-8601 strings or datetimes for
times (with a zone), "YYYY-MM-DD" strings or dates for dates. Problems raise `ValidationError` naming the field
of the record ("traveller.document.number"); `EventProducer.publish` then checks the meaning (dates, formats,
cross-field rules).

Event ids: give `event_id` if the source has one; otherwise, with `source_record_id` (the source system's own
record id) the id is uuid5 of source system + record id, so re-sending the same record keeps the same id and is
never counted twice; with neither, a random uuid4 (re-sending such a record cannot be recognised).
`received_time` defaults to now (the moment the integration took the record), `event_time` too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from schemas.ids import source_event_id
from schemas.records import Crossing, Registration, StatusChange
from schemas.validation import parse_record
from shekara.pseudonym import normalise_document_number

Time = datetime | str
Day = date | str


def _traveller(
    document_type: str,
    document_number: str,
    issuing_country: str,
    nationality: str | None,
    birth_date: Day,
    sex: str,
) -> dict[str, Any]:
    number = normalise_document_number(document_number) if isinstance(document_number, str) else document_number
    return {
        "document": {"type": document_type, "number": number, "issuing_country": issuing_country},
        "nationality": nationality if nationality is not None else issuing_country,
        "birth_date": birth_date,
        "sex": sex,
    }


def _envelope(
    event_id: str | None,
    event_time: Time | None,
    received_time: Time | None,
    source_system: str,
    source_record_id: str | None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "event_id": event_id or source_event_id(source_system, source_record_id),
        "event_time": event_time if event_time is not None else now,
        "received_time": received_time if received_time is not None else now,
        "source_system": source_system,
        "source_record_id": source_record_id,
    }


def crossing(
    *,
    checkpoint_id: str,
    checkpoint_kind: str,
    direction: str,
    document_number: str,
    issuing_country: str,
    birth_date: Day,
    sex: str,
    purpose: str,
    entry_basis: str,
    source_system: str,
    document_type: str = "PASSPORT",
    nationality: str | None = None,
    border_country: str | None = None,
    visa_expiry: Day | None = None,
    permit_number: str | None = None,
    declared_destination: str | None = None,
    planned_exit_checkpoint: str | None = None,
    migration_card_number: str | None = None,
    conveyance_kind: str | None = None,
    conveyance_identifier: str | None = None,
    event_time: Time | None = None,
    received_time: Time | None = None,
    source_record_id: str | None = None,
    event_id: str | None = None,
) -> Crossing:
    """A crossing at a checkpoint. `nationality` defaults to the document's issuing country."""
    values = _envelope(event_id, event_time, received_time, source_system, source_record_id)
    values.update(
        checkpoint={"id": checkpoint_id, "kind": checkpoint_kind, "border_country": border_country},
        direction=direction,
        traveller=_traveller(document_type, document_number, issuing_country, nationality, birth_date, sex),
        purpose=purpose,
        entry_basis={"kind": entry_basis, "visa_expiry": visa_expiry, "permit_number": permit_number},
        declared_destination=declared_destination,
        planned_exit_checkpoint=planned_exit_checkpoint,
        migration_card_number=migration_card_number,
        conveyance=(
            None if conveyance_kind is None else {"kind": conveyance_kind, "identifier": conveyance_identifier}
        ),
    )
    result: Crossing = parse_record(Crossing, values)
    return result


def registration(
    *,
    registration_id: str,
    document_number: str,
    issuing_country: str,
    birth_date: Day,
    sex: str,
    host_kind: str,
    host_id: str,
    region: str,
    address: str,
    valid_from: Day,
    valid_until: Day,
    source_system: str,
    action: str = "REGISTERED",
    document_type: str = "PASSPORT",
    nationality: str | None = None,
    event_time: Time | None = None,
    received_time: Time | None = None,
    source_record_id: str | None = None,
    event_id: str | None = None,
) -> Registration:
    """A registration of a foreigner at an address (or, with ``action="CANCELLED"``, its cancellation)."""
    values = _envelope(event_id, event_time, received_time, source_system, source_record_id)
    values.update(
        action=action,
        registration_id=registration_id,
        traveller=_traveller(document_type, document_number, issuing_country, nationality, birth_date, sex),
        host_kind=host_kind,
        host_id=host_id,
        region=region,
        address=address,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    result: Registration = parse_record(Registration, values)
    return result


def status_change(
    *,
    kind: str,
    document_number: str,
    issuing_country: str,
    birth_date: Day,
    sex: str,
    authority: str,
    source_system: str,
    document_type: str = "PASSPORT",
    nationality: str | None = None,
    valid_from: Day | None = None,
    valid_until: Day | None = None,
    reference: str | None = None,
    event_time: Time | None = None,
    received_time: Time | None = None,
    source_record_id: str | None = None,
    event_id: str | None = None,
) -> StatusChange:
    """A status change: visa extension, permit, refugee status, expulsion (ban until `valid_until`), lost document."""
    values = _envelope(event_id, event_time, received_time, source_system, source_record_id)
    values.update(
        kind=kind,
        traveller=_traveller(document_type, document_number, issuing_country, nationality, birth_date, sex),
        authority=authority,
        valid_from=valid_from,
        valid_until=valid_until,
        reference=reference,
    )
    result: StatusChange = parse_record(StatusChange, values)
    return result
