"""Planned events -> source records (for Kafka) or Avro dicts (for container files), at emission time.

Two builders on purpose: the file writer skips the dataclasses entirely (the Avro dict of the latest schema
is built directly, sharing the traveller and checkpoint sub-dicts), which is where generation spends its
time at a year's scale. `tests/harness/simulator` checks both give the same Avro dict as `schemas.convert.to_avro`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from harness.simulator.catalogue import Catalogue
from harness.simulator.plan import Planned, PlannedCrossing, PlannedRegistration
from schemas.records import Checkpoint, Crossing, Registration, StatusChange

CROSSING = "crossing"
REGISTRATION = "registration"
STATUS_CHANGE = "status_change"
KINDS = (CROSSING, REGISTRATION, STATUS_CHANGE)
RECORD_NAME = {CROSSING: "Crossing", REGISTRATION: "Registration", STATUS_CHANGE: "StatusChange"}
CROSSING_SOURCE = "berkut"
CONVEYANCE_RECORD = "kz.shekara.Conveyance"  # full name of the record branch in crossing.v2.avsc


def kind_of(ev: Planned) -> str:
    """ "crossing", "registration" or "status_change" (the topic an event goes to)."""
    return ev.KIND


class Materialiser:
    def __init__(self, catalogue: Catalogue) -> None:
        self._checkpoints: dict[str, Checkpoint] = {p.id: p.record for p in catalogue.posts}
        self._checkpoint_avro: dict[str, dict[str, Any]] = {p.id: p.avro for p in catalogue.posts}

    def record(self, ev: Planned, received: datetime) -> Crossing | Registration | StatusChange:
        if isinstance(ev, PlannedCrossing):
            return Crossing(
                ev.event_id,
                ev.time,
                received,
                self._checkpoints[ev.checkpoint.id],
                ev.direction,
                ev.person.traveller,
                ev.purpose,
                ev.basis,
                CROSSING_SOURCE,
                ev.declared_destination,
                ev.planned_exit_checkpoint,
                ev.migration_card_number,
                ev.conveyance,
                ev.source_record_id,
            )
        if isinstance(ev, PlannedRegistration):
            return Registration(
                ev.event_id,
                ev.time,
                received,
                ev.action,
                ev.registration_id,
                ev.person.traveller,
                ev.host_kind,
                ev.host_id,
                ev.region,
                ev.address,
                ev.valid_from,
                ev.valid_until,
                ev.source_system,
                ev.source_record_id,
            )
        return StatusChange(
            ev.event_id,
            ev.time,
            received,
            ev.kind,
            ev.person.traveller,
            ev.authority,
            ev.source_system,
            ev.valid_from,
            ev.valid_until,
            ev.reference,
            ev.source_record_id,
            new_document_number=ev.new_person.avro["document"]["number"] if ev.new_person is not None else None,
            new_document_issuing_country=(
                ev.new_person.avro["document"]["issuing_country"] if ev.new_person is not None else None
            ),
        )

    def avro(
        self, ev: Planned, received: datetime, event_id: str | None = None, *, hint_unions: bool = False
    ) -> dict[str, Any]:
        """The Avro dict of the latest schema; nested dicts are shared, copy them before changing them.

        `hint_unions`: name the branch of the conveyance union, `(name, value)` as fastavro allows, which spares
        its writer matching the record against the branches (for the file writer; same bytes).
        """
        if isinstance(ev, PlannedCrossing):
            b, cv = ev.basis, ev.conveyance
            conveyance: Any = None
            if cv is not None:
                conveyance = {"kind": cv.kind, "identifier": cv.identifier}
                if hint_unions:
                    conveyance = (CONVEYANCE_RECORD, conveyance)
            return {
                "event_id": event_id or ev.event_id,
                "event_time": ev.time,
                "received_time": received,
                "checkpoint": self._checkpoint_avro[ev.checkpoint.id],
                "direction": ev.direction,
                "traveller": ev.person.avro,
                "purpose": ev.purpose,
                "entry_basis": {"kind": b.kind, "visa_expiry": b.visa_expiry, "permit_number": b.permit_number},
                "source_system": CROSSING_SOURCE,
                "declared_destination": ev.declared_destination,
                "planned_exit_checkpoint": ev.planned_exit_checkpoint,
                "migration_card_number": ev.migration_card_number,
                "conveyance": conveyance,
                "source_record_id": ev.source_record_id,
            }
        if isinstance(ev, PlannedRegistration):
            return {
                "event_id": event_id or ev.event_id,
                "event_time": ev.time,
                "received_time": received,
                "action": ev.action,
                "registration_id": ev.registration_id,
                "traveller": ev.person.avro,
                "host_kind": ev.host_kind,
                "host_id": ev.host_id,
                "region": ev.region,
                "address": ev.address,
                "valid_from": ev.valid_from,
                "valid_until": ev.valid_until,
                "source_system": ev.source_system,
                "source_record_id": ev.source_record_id,
            }
        new = ev.new_person.avro if ev.new_person is not None else None
        return {
            "event_id": event_id or ev.event_id,
            "event_time": ev.time,
            "received_time": received,
            "kind": ev.kind,
            "traveller": ev.person.avro,
            "authority": ev.authority,
            "source_system": ev.source_system,
            "valid_from": ev.valid_from,
            "valid_until": ev.valid_until,
            "reference": ev.reference,
            "source_record_id": ev.source_record_id,
            # DOCUMENT_REPLACED only (schema v3): the renewal's new document
            "new_document_number": new["document"]["number"] if new is not None else None,
            "new_document_issuing_country": new["document"]["issuing_country"] if new is not None else None,
        }
