"""Record dataclass <-> Avro dict, hand-written per type.

Generic converters (dacite, asdict) cost several microseconds per nested record; the processors decode
thousands of events a second and the sink far more, so each type gets a direct function: positional
construction, enum lookup through a prebuilt dict. The dict shape is the latest schema in ``schemas/avro``
(what `schemas.serde` decodes to); `tests/schemas/test_schemas.py` keeps both in step with the dataclasses.
Enum members are written as-is: they are `str` subclasses, so fastavro and ClickHouse take them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from schemas.records import (
    Alert,
    AlertAction,
    AlertTriage,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Conveyance,
    ConveyanceKind,
    Crossing,
    DeadLetter,
    Direction,
    Document,
    DocumentType,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    Severity,
    Sex,
    StatusChange,
    StatusChangeKind,
    Stay,
    Traveller,
    TriageAction,
    TriageNote,
    TriageStatus,
)

AvroDict = dict[str, Any]
R = TypeVar("R")
E = TypeVar("E", bound=StrEnum)


def _members(enum: type[E]) -> dict[str, E]:
    return {m.value: m for m in enum}


_CHECKPOINT_KIND = _members(CheckpointKind)
_DIRECTION = _members(Direction)
_DOCUMENT_TYPE = _members(DocumentType)
_SEX = _members(Sex)
_PURPOSE = _members(Purpose)
_ENTRY_BASIS_KIND = _members(EntryBasisKind)
_CONVEYANCE_KIND = _members(ConveyanceKind)
_REGISTRATION_ACTION = _members(RegistrationAction)
_HOST_KIND = _members(HostKind)
_STATUS_CHANGE_KIND = _members(StatusChangeKind)
_ALERT_ACTION = _members(AlertAction)
_ALERT_TYPE = _members(AlertType)
_SEVERITY = _members(Severity)
_TRIAGE_STATUS = _members(TriageStatus)
_TRIAGE_ACTION = _members(TriageAction)


# --- nested records ---------------------------------------------------------------------------------------


def _traveller_to(t: Traveller) -> AvroDict:
    d = t.document
    return {
        "document": {"type": d.type, "number": d.number, "issuing_country": d.issuing_country},
        "nationality": t.nationality,
        "birth_date": t.birth_date,
        "sex": t.sex,
    }


def _traveller_from(t: AvroDict) -> Traveller:
    d = t["document"]
    return Traveller(
        Document(_DOCUMENT_TYPE[d["type"]], d["number"], d["issuing_country"]),
        t["nationality"],
        t["birth_date"],
        _SEX[t["sex"]],
    )


# --- top-level records ------------------------------------------------------------------------------------


def _crossing_to(r: Crossing) -> AvroDict:
    cp, eb, cv = r.checkpoint, r.entry_basis, r.conveyance
    return {
        "event_id": r.event_id,
        "event_time": r.event_time,
        "received_time": r.received_time,
        "checkpoint": {"id": cp.id, "kind": cp.kind, "border_country": cp.border_country},
        "direction": r.direction,
        "traveller": _traveller_to(r.traveller),
        "purpose": r.purpose,
        "entry_basis": {"kind": eb.kind, "visa_expiry": eb.visa_expiry, "permit_number": eb.permit_number},
        "source_system": r.source_system,
        "declared_destination": r.declared_destination,
        "planned_exit_checkpoint": r.planned_exit_checkpoint,
        "migration_card_number": r.migration_card_number,
        "conveyance": None if cv is None else {"kind": cv.kind, "identifier": cv.identifier},
        "source_record_id": r.source_record_id,
    }


def _crossing_from(d: AvroDict) -> Crossing:
    cp, eb, cv = d["checkpoint"], d["entry_basis"], d.get("conveyance")
    return Crossing(
        d["event_id"],
        d["event_time"],
        d["received_time"],
        Checkpoint(cp["id"], _CHECKPOINT_KIND[cp["kind"]], cp.get("border_country")),
        _DIRECTION[d["direction"]],
        _traveller_from(d["traveller"]),
        _PURPOSE[d["purpose"]],
        EntryBasis(_ENTRY_BASIS_KIND[eb["kind"]], eb.get("visa_expiry"), eb.get("permit_number")),
        d["source_system"],
        d.get("declared_destination"),
        d.get("planned_exit_checkpoint"),
        d.get("migration_card_number"),
        None if cv is None else Conveyance(_CONVEYANCE_KIND[cv["kind"]], cv.get("identifier")),
        d.get("source_record_id"),
    )


def _registration_to(r: Registration) -> AvroDict:
    return {
        "event_id": r.event_id,
        "event_time": r.event_time,
        "received_time": r.received_time,
        "action": r.action,
        "registration_id": r.registration_id,
        "traveller": _traveller_to(r.traveller),
        "host_kind": r.host_kind,
        "host_id": r.host_id,
        "region": r.region,
        "address": r.address,
        "valid_from": r.valid_from,
        "valid_until": r.valid_until,
        "source_system": r.source_system,
        "source_record_id": r.source_record_id,
    }


def _registration_from(d: AvroDict) -> Registration:
    return Registration(
        d["event_id"],
        d["event_time"],
        d["received_time"],
        _REGISTRATION_ACTION[d["action"]],
        d["registration_id"],
        _traveller_from(d["traveller"]),
        _HOST_KIND[d["host_kind"]],
        d["host_id"],
        d["region"],
        d["address"],
        d["valid_from"],
        d["valid_until"],
        d["source_system"],
        d.get("source_record_id"),
    )


def _status_change_to(r: StatusChange) -> AvroDict:
    return {
        "event_id": r.event_id,
        "event_time": r.event_time,
        "received_time": r.received_time,
        "kind": r.kind,
        "traveller": _traveller_to(r.traveller),
        "authority": r.authority,
        "source_system": r.source_system,
        "valid_from": r.valid_from,
        "valid_until": r.valid_until,
        "reference": r.reference,
        "source_record_id": r.source_record_id,
        "new_document_number": r.new_document_number,
        "new_document_issuing_country": r.new_document_issuing_country,
    }


def _status_change_from(d: AvroDict) -> StatusChange:
    return StatusChange(
        d["event_id"],
        d["event_time"],
        d["received_time"],
        _STATUS_CHANGE_KIND[d["kind"]],
        _traveller_from(d["traveller"]),
        d["authority"],
        d["source_system"],
        d.get("valid_from"),
        d.get("valid_until"),
        d.get("reference"),
        d.get("source_record_id"),
        d.get("new_document_number"),
        d.get("new_document_issuing_country"),
    )


def _alert_to(r: Alert) -> AvroDict:
    return {
        "alert_id": r.alert_id,
        "action": r.action,
        "type": r.type,
        "severity": r.severity,
        "traveller_key": r.traveller_key,
        "nationality": r.nationality,
        "checkpoint_id": r.checkpoint_id,
        "evidence_event_ids": r.evidence_event_ids,
        "rule_id": r.rule_id,
        "rule_version": r.rule_version,
        "reason": r.reason,
        "due_time": r.due_time,
        "emitted_time": r.emitted_time,
        "days_overstayed": r.days_overstayed,
        "details": r.details,
        "revision": r.revision,
    }


def _alert_from(d: AvroDict) -> Alert:
    return Alert(
        d["alert_id"],
        _ALERT_ACTION[d["action"]],
        _ALERT_TYPE[d["type"]],
        _SEVERITY[d["severity"]],
        d["traveller_key"],
        d["nationality"],
        d.get("checkpoint_id"),
        d["evidence_event_ids"],
        d["rule_id"],
        d["rule_version"],
        d["reason"],
        d["due_time"],
        d["emitted_time"],
        d.get("days_overstayed"),
        d.get("details") or {},
        d.get("revision", 0),
    )


def _stay_to(r: Stay) -> AvroDict:
    return {
        "stay_id": r.stay_id,
        "revision": r.revision,
        "traveller_key": r.traveller_key,
        "nationality": r.nationality,
        "entry_basis": r.entry_basis,
        "purpose": r.purpose,
        "entry_event_id": r.entry_event_id,
        "exit_event_id": r.exit_event_id,
        "entry_time": r.entry_time,
        "exit_time": r.exit_time,
        "entry_checkpoint": r.entry_checkpoint,
        "exit_checkpoint": r.exit_checkpoint,
        "days": r.days,
        "allowed_days": r.allowed_days,
        "days_over": r.days_over,
        "rule_id": r.rule_id,
        "rule_version": r.rule_version,
        "anchor_time": r.anchor_time,
        "close_time": r.close_time,
    }


def _stay_from(d: AvroDict) -> Stay:
    return Stay(
        d["stay_id"],
        d["revision"],
        d["traveller_key"],
        d["nationality"],
        _ENTRY_BASIS_KIND[d["entry_basis"]],
        _PURPOSE[d["purpose"]],
        d.get("entry_event_id"),
        d.get("exit_event_id"),
        d.get("entry_time"),
        d.get("exit_time"),
        d.get("entry_checkpoint"),
        d.get("exit_checkpoint"),
        d["days"],
        d.get("allowed_days"),
        d["days_over"],
        d["rule_id"],
        d["rule_version"],
        d["anchor_time"],
        d.get("close_time"),
    )


def _dead_letter_to(r: DeadLetter) -> AvroDict:
    return {
        "source_topic": r.source_topic,
        "source_partition": r.source_partition,
        "source_offset": r.source_offset,
        "key": r.key,
        "value": r.value,
        "stage": r.stage,
        "reason": r.reason,
        "field": r.field,
        "rejected_time": r.rejected_time,
    }


def _dead_letter_from(d: AvroDict) -> DeadLetter:
    return DeadLetter(
        d["source_topic"],
        d.get("source_partition"),
        d.get("source_offset"),
        d.get("key"),
        d.get("value"),
        d["stage"],
        d["reason"],
        d.get("field"),
        d["rejected_time"],
    )


def _alert_triage_to(r: AlertTriage) -> AvroDict:
    return {
        "alert_id": r.alert_id,
        "status": r.status,
        "acknowledged_by": r.acknowledged_by,
        "acknowledged_time": r.acknowledged_time,
        "assignee": r.assignee,
        "notes": [{"author": n.author, "time": n.time, "text": n.text} for n in r.notes],
        "last_action": r.last_action,
        "updated_by": r.updated_by,
        "updated_time": r.updated_time,
        "revision": r.revision,
    }


def _alert_triage_from(d: AvroDict) -> AlertTriage:
    return AlertTriage(
        d["alert_id"],
        _TRIAGE_STATUS[d["status"]],
        d.get("acknowledged_by"),
        d.get("acknowledged_time"),
        d.get("assignee"),
        [TriageNote(n["author"], n["time"], n["text"]) for n in d["notes"]],
        _TRIAGE_ACTION[d["last_action"]],
        d["updated_by"],
        d["updated_time"],
        d["revision"],
    )


_TO: dict[type, Callable[[Any], AvroDict]] = {
    Crossing: _crossing_to,
    Registration: _registration_to,
    StatusChange: _status_change_to,
    Alert: _alert_to,
    Stay: _stay_to,
    DeadLetter: _dead_letter_to,
    AlertTriage: _alert_triage_to,
}
_FROM: dict[type, Callable[[AvroDict], Any]] = {
    Crossing: _crossing_from,
    Registration: _registration_from,
    StatusChange: _status_change_from,
    Alert: _alert_from,
    Stay: _stay_from,
    DeadLetter: _dead_letter_from,
    AlertTriage: _alert_triage_from,
}
RECORD_TYPES: dict[str, type] = {cls.__name__: cls for cls in _TO}
"""Record types by Avro record name (the dataclass name equals the Avro name)."""


def to_avro(record: Any) -> AvroDict:
    """The Avro dict of `record` (one of the record dataclasses), ready for fastavro."""
    try:
        conv = _TO[type(record)]
    except KeyError:
        raise TypeError(f"not a record type of the event contract: {type(record).__name__}") from None
    return conv(record)


def from_avro(cls: type[R], d: AvroDict) -> R:
    """The `cls` record built from an Avro dict shaped by the latest schema (as `Serde.decode_dict` returns)."""
    try:
        conv = _FROM[cls]
    except KeyError:
        raise TypeError(f"not a record type of the event contract: {cls.__name__}") from None
    try:
        return conv(d)
    except KeyError as exc:
        raise ValueError(f"{cls.__name__}: missing or unknown value {exc}") from exc
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"{cls.__name__}: malformed Avro dict: {exc}") from exc
