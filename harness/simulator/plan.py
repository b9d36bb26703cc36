"""A traveller's planned events: the compact form the generator keeps until an event is due.

A journey is planned in full when it starts (so its expected alerts can be computed at once), but the
source records are built only when an event is emitted: the received time depends on when it is uploaded.
The ground-truth module reads the same planned events, and `from_record` turns emitted records back into
them, so tests can recompute the truth from the event stream alone.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

from schemas.records import (
    Conveyance,
    Crossing,
    Direction,
    Document,
    DocumentType,
    EntryBasis,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    Sex,
    StatusChange,
    StatusChangeKind,
    Traveller,
)
from shekara.pseudonym import partition_key
from shekara.reference import CheckpointInfo


@dataclass(slots=True, eq=False)
class Person:
    """One travel document and its holder (a cloned document is the same Person used by someone else)."""

    avro: dict[str, Any]  # the Avro form of the traveller, built once and shared by all its events
    key: str  # traveller key (keyed hash of the document): what the ground truth's alerts carry
    nationality: str
    partition: str  # public partition key of the document: the Kafka message key
    _traveller: Traveller | None = None

    @property
    def key_bytes(self) -> bytes:
        """The Kafka key: the public partition key, as a producer computes it (no secret)."""
        return self.partition.encode()

    @property
    def traveller(self) -> Traveller:
        """The record form, built on first use (writing files never needs it)."""
        if self._traveller is None:
            a, d = self.avro, self.avro["document"]
            self._traveller = Traveller(
                Document(d["type"], d["number"], d["issuing_country"]), a["nationality"], a["birth_date"], a["sex"]
            )
        return self._traveller


class TravellerKeys:
    """(partition key, traveller key) of a document, as `shekara.pseudonym` computes them, with the keyed hash
    set up once (the key's pads are reused). Tooling: the simulator's ground truth needs the keyed traveller key."""

    def __init__(self, pseudonym_key: bytes) -> None:
        self._base = hmac.new(pseudonym_key, digestmod=hashlib.sha256)

    def __call__(self, issuing_country: str, document_number: str) -> tuple[str, str]:
        partition = partition_key(issuing_country, document_number)
        h = self._base.copy()
        h.update(partition.encode())
        return partition, h.hexdigest()[:32]


_KEYS: dict[bytes, TravellerKeys] = {}


def new_person(
    doc_type: DocumentType,
    number: str,
    issuing_country: str,
    nationality: str,
    birth_date: date,
    sex: Sex,
    pseudonym_key: bytes,
) -> Person:
    keys = _KEYS.get(pseudonym_key)
    if keys is None:
        keys = _KEYS[pseudonym_key] = TravellerKeys(pseudonym_key)
    partition, key = keys(issuing_country, number)
    avro = {
        "document": {"type": doc_type, "number": number, "issuing_country": issuing_country},
        "nationality": nationality,
        "birth_date": birth_date,
        "sex": sex,
    }
    return Person(avro, key, nationality, partition)


def make_person(traveller: Traveller, pseudonym_key: bytes) -> Person:
    doc = traveller.document
    p = new_person(
        doc.type,
        doc.number,
        doc.issuing_country,
        traveller.nationality,
        traveller.birth_date,
        traveller.sex,
        pseudonym_key,
    )
    p._traveller = traveller
    return p


@dataclass(slots=True, eq=False)
class PlannedCrossing:
    KIND: ClassVar[str] = "crossing"
    time: datetime
    event_id: str
    person: Person
    checkpoint: CheckpointInfo
    direction: Direction
    purpose: Purpose
    basis: EntryBasis
    declared_destination: str | None = None
    planned_exit_checkpoint: str | None = None
    migration_card_number: str | None = None
    conveyance: Conveyance | None = None
    source_record_id: str | None = None


@dataclass(slots=True, eq=False)
class PlannedRegistration:
    KIND: ClassVar[str] = "registration"
    time: datetime
    event_id: str
    person: Person
    action: RegistrationAction
    registration_id: str
    host_kind: HostKind
    host_id: str
    region: str
    address: str
    valid_from: date
    valid_until: date
    source_system: str
    source_record_id: str | None = None


@dataclass(slots=True, eq=False)
class PlannedStatus:
    KIND: ClassVar[str] = "status_change"
    time: datetime
    event_id: str
    person: Person
    kind: StatusChangeKind
    authority: str
    source_system: str
    valid_from: date | None = None
    valid_until: date | None = None
    reference: str | None = None
    source_record_id: str | None = None
    new_person: Person | None = None  # DOCUMENT_REPLACED: the same holder on the new document


Planned = PlannedCrossing | PlannedRegistration | PlannedStatus


def order_key(e: Planned) -> tuple[datetime, str]:
    """The event order of docs/alerts.md: event time, then event id."""
    return (e.time, e.event_id)


def from_record(
    record: Crossing | Registration | StatusChange, person: Person, checkpoints: dict[str, CheckpointInfo]
) -> Planned:
    """The planned-event view of an emitted record (for recomputing the truth from the stream)."""
    if isinstance(record, Crossing):
        return PlannedCrossing(
            record.event_time,
            record.event_id,
            person,
            checkpoints[record.checkpoint.id],
            record.direction,
            record.purpose,
            record.entry_basis,
            record.declared_destination,
            record.planned_exit_checkpoint,
            record.migration_card_number,
            record.conveyance,
            record.source_record_id,
        )
    if isinstance(record, Registration):
        return PlannedRegistration(
            record.event_time,
            record.event_id,
            person,
            record.action,
            record.registration_id,
            record.host_kind,
            record.host_id,
            record.region,
            record.address,
            record.valid_from,
            record.valid_until,
            record.source_system,
            record.source_record_id,
        )
    return PlannedStatus(
        record.event_time,
        record.event_id,
        person,
        record.kind,
        record.authority,
        record.source_system,
        record.valid_from,
        record.valid_until,
        record.reference,
        record.source_record_id,
    )
