"""Typed records of the event contract.

Each dataclass mirrors one Avro record in ``schemas/avro/`` field for field (names, order, optionality);
``tests/schemas/test_schemas.py`` keeps the two in step. Times are timezone-aware UTC datetimes; calendar dates
(birth, visa expiry, registration validity) are plain dates. Country codes are ISO 3166-1 alpha-3, as on
travel documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

# Re-exported: the foundation's rules and reference data need these codes, and the foundation imports nothing above it.
from shekara.codes import AlertType as AlertType
from shekara.codes import CheckpointKind as CheckpointKind
from shekara.codes import EntryBasisKind as EntryBasisKind
from shekara.codes import Purpose as Purpose
from shekara.codes import Severity as Severity


class Direction(StrEnum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"


class DocumentType(StrEnum):
    PASSPORT = "PASSPORT"
    ID_CARD = "ID_CARD"
    DIPLOMATIC_PASSPORT = "DIPLOMATIC_PASSPORT"
    SERVICE_PASSPORT = "SERVICE_PASSPORT"
    SEAMAN_BOOK = "SEAMAN_BOOK"
    TRAVEL_DOCUMENT = "TRAVEL_DOCUMENT"  # refugee / stateless travel document
    RESIDENCE_CARD = "RESIDENCE_CARD"


class Sex(StrEnum):
    M = "M"
    F = "F"
    X = "X"


class ConveyanceKind(StrEnum):
    FOOT = "FOOT"
    CAR = "CAR"
    BUS = "BUS"
    TRUCK = "TRUCK"
    TRAIN = "TRAIN"
    FLIGHT = "FLIGHT"
    SHIP = "SHIP"


class RegistrationAction(StrEnum):
    REGISTERED = "REGISTERED"
    CANCELLED = "CANCELLED"


class HostKind(StrEnum):
    HOTEL = "HOTEL"
    PRIVATE_HOST = "PRIVATE_HOST"
    EMPLOYER = "EMPLOYER"
    SELF = "SELF"  # self-registration (90-day nationals from 1 Jul 2026)
    STATION = "STATION"  # railway station or road checkpoint registration desk


class StatusChangeKind(StrEnum):
    VISA_EXTENDED = "VISA_EXTENDED"
    WORK_PERMIT_ISSUED = "WORK_PERMIT_ISSUED"
    WORK_PERMIT_REVOKED = "WORK_PERMIT_REVOKED"
    RESIDENCE_PERMIT_ISSUED = "RESIDENCE_PERMIT_ISSUED"
    RESIDENCE_PERMIT_REVOKED = "RESIDENCE_PERMIT_REVOKED"
    REFUGEE_GRANTED = "REFUGEE_GRANTED"
    REFUGEE_ENDED = "REFUGEE_ENDED"
    EXPELLED = "EXPELLED"  # with an entry ban until `valid_until`
    DOCUMENT_LOST = "DOCUMENT_LOST"
    DOCUMENT_STOLEN = "DOCUMENT_STOLEN"
    DOCUMENT_RECOVERED = "DOCUMENT_RECOVERED"  # takes a document off the watch list
    DOCUMENT_REPLACED = "DOCUMENT_REPLACED"  # v3: new_document_* replaces traveller.document (same person)


class AlertAction(StrEnum):
    RAISED = "RAISED"
    RESOLVED = "RESOLVED"  # the condition ended (e.g. the late exit arrived)
    RETRACTED = "RETRACTED"  # late data showed the alert was never due


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    kind: CheckpointKind
    border_country: str | None  # None for airports (no land neighbour)


@dataclass(frozen=True, slots=True)
class Document:
    type: DocumentType
    number: str
    issuing_country: str


@dataclass(frozen=True, slots=True)
class Traveller:
    document: Document
    nationality: str
    birth_date: date
    sex: Sex


@dataclass(frozen=True, slots=True)
class EntryBasis:
    kind: EntryBasisKind
    visa_expiry: date | None = None  # for VISA: last day of permitted stay
    permit_number: str | None = None  # visa, permit or refugee certificate number


@dataclass(frozen=True, slots=True)
class Conveyance:
    kind: ConveyanceKind
    identifier: str | None = None  # plate, flight number, train number, vessel name


@dataclass(frozen=True, slots=True)
class Crossing:
    event_id: str
    event_time: datetime
    received_time: datetime
    checkpoint: Checkpoint
    direction: Direction
    traveller: Traveller
    purpose: Purpose
    entry_basis: EntryBasis
    source_system: str
    declared_destination: str | None = None  # transit: country of onward travel
    planned_exit_checkpoint: str | None = None  # transit: declared exit checkpoint id
    migration_card_number: str | None = None
    conveyance: Conveyance | None = None
    source_record_id: str | None = None  # the source system's own record id (schema v2)


@dataclass(frozen=True, slots=True)
class Registration:
    event_id: str
    event_time: datetime
    received_time: datetime
    action: RegistrationAction
    registration_id: str  # a CANCELLED event names the registration it cancels
    traveller: Traveller
    host_kind: HostKind
    host_id: str
    region: str  # ISO 3166-2:KZ code, e.g. KZ-75 (Almaty city)
    address: str
    valid_from: date
    valid_until: date
    source_system: str
    source_record_id: str | None = None  # the source system's own record id (schema v2)


@dataclass(frozen=True, slots=True)
class StatusChange:
    event_id: str
    event_time: datetime
    received_time: datetime
    kind: StatusChangeKind
    traveller: Traveller
    authority: str
    source_system: str
    valid_from: date | None = None
    valid_until: date | None = None  # new visa expiry, permit end, ban end
    reference: str | None = None  # decision, permit or police report number
    source_record_id: str | None = None  # the source system's own record id (schema v2)
    new_document_number: str | None = None  # DOCUMENT_REPLACED (schema v3): the renewed document
    new_document_issuing_country: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str  # stable: derived from type, traveller key and the causing event ids
    action: AlertAction
    type: AlertType
    severity: Severity
    traveller_key: str
    nationality: str
    checkpoint_id: str | None
    evidence_event_ids: list[str]
    rule_id: str
    rule_version: str
    reason: str
    due_time: datetime  # event time at which the alert became due
    emitted_time: datetime  # wall-clock time the processor emitted this record
    days_overstayed: int | None = None
    details: dict[str, str] = field(default_factory=dict)
    revision: int = 0  # increases with each record of this alert id; the highest is its current state (schema v2)


@dataclass(frozen=True, slots=True)
class Stay:
    stay_id: str  # derived from the entry event id (or exit event id for an exit without entry)
    revision: int  # increases when late data changes a stay already emitted
    traveller_key: str
    nationality: str
    entry_basis: EntryBasisKind
    purpose: Purpose
    entry_event_id: str | None
    exit_event_id: str | None
    entry_time: datetime | None
    exit_time: datetime | None
    entry_checkpoint: str | None
    exit_checkpoint: str | None
    days: int  # calendar days present, crossing days counted, Asia/Almaty
    allowed_days: int | None  # None: no limit applies (citizens, permits, diplomats)
    days_over: int
    rule_id: str  # "void" on a revision that late data showed never existed (no events, no days)
    rule_version: str
    anchor_time: datetime  # event time of the anchoring entry (or exit without entry); fixed for a stay
    close_time: datetime | None = None  # the exit or the superseding entry; None while open (schema v2)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    value: bytes | None
    stage: str  # which step rejected it: "validate", "decode", "process", "sink"
    reason: str
    field: str | None
    rejected_time: datetime


class TriageStatus(StrEnum):
    NEW = "NEW"
    ACKNOWLEDGED = "ACKNOWLEDGED"


class TriageAction(StrEnum):
    ACKNOWLEDGE = "ACKNOWLEDGE"
    ASSIGN = "ASSIGN"
    NOTE = "NOTE"


@dataclass(frozen=True, slots=True)
class TriageNote:
    author: str
    time: datetime
    text: str


@dataclass(frozen=True, slots=True)
class AlertTriage:
    """An alert's latest triage state (streams/triage.py): one record per alert on a compacted topic."""

    alert_id: str
    status: TriageStatus
    acknowledged_by: str | None
    acknowledged_time: datetime | None
    assignee: str | None
    notes: list[TriageNote]
    last_action: TriageAction
    updated_by: str
    updated_time: datetime
    revision: int
