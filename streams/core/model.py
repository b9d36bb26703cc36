"""Compact, serialisable forms of a traveller's events and of the decisions derived from them.

The per-traveller state is stored after every batch, so it is made of plain tuples of ints and strings
(msgpack-friendly, cheap to copy and compare) rather than the record dataclasses. Times are integer
microseconds since the Unix epoch (UTC), local days are `date.toordinal()` of the Asia/Almaty calendar day.
A tuple event starts with (time, event_id), so tuples sort in the spec's history order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from schemas.records import AlertType, Crossing, Direction, Registration, RegistrationAction, StatusChange
from shekara.rules import RuleBook

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
NT = TypeVar("NT", bound=tuple[Any, ...])

Event = Crossing | Registration | StatusChange

# --- compact events ------------------------------------------------------------------------------
# Each starts with (t, event_id, kind, day): tuples of the three kinds sort together in history order.
# NamedTuples, so the stored msgpack arrays are the plain tuples they always were.
CROSSING, REGISTRATION, STATUS = 0, 1, 2
ENTRY, EXIT = 0, 1
REGISTERED, CANCELLED = 0, 1


class CrossingEvent(NamedTuple):
    """A border crossing, as the walk needs it."""

    t: int  # event time, microseconds since the epoch
    event_id: str
    kind: int  # CROSSING
    day: int  # local (Asia/Almaty) day ordinal
    direction: int  # ENTRY or EXIT
    checkpoint: str
    nationality: str
    basis: str  # EntryBasisKind value
    purpose: str  # Purpose value
    visa_expiry: int | None  # day ordinal
    destination: str | None  # declared (transit)
    planned_exit: str | None  # planned exit checkpoint (transit)


class RegistrationEvent(NamedTuple):
    """A registration at an address, or its cancellation."""

    t: int
    event_id: str
    kind: int  # REGISTRATION
    day: int
    action: int  # REGISTERED or CANCELLED
    registration_id: str
    nationality: str


class StatusEvent(NamedTuple):
    """A status change (visa extension, permit, ban, lost document...)."""

    t: int
    event_id: str
    kind: int  # STATUS
    day: int
    change: str  # StatusChangeKind value
    valid_from: int | None  # day ordinal
    valid_until: int | None  # day ordinal
    nationality: str


Compact = CrossingEvent | RegistrationEvent | StatusEvent
_EVENT_TYPES: tuple[type[Compact], ...] = (CrossingEvent, RegistrationEvent, StatusEvent)  # by kind
_new = tuple.__new__

if TYPE_CHECKING:

    def named(cls: type[NT], data: tuple[Any, ...]) -> NT:
        """`data` (a tuple as stored, or built in a hot path) as a `cls` NamedTuple."""
        ...

else:
    # tuple.__new__ itself: a NamedTuple's keyword constructor costs ~4x more, and a state load wraps many tuples
    named = _new


# An event as stored: the plain tuple a NamedTuple above packs to. A decoded traveller keeps its history so and
# names it only to walk it (a replay or a fold): the fast path reads only the time and id of retained events.
StoredEvent = tuple[Any, ...]
# The fields every event, stored or named, starts with (C accessors: as fast as indexing, and they read by name).
time_of: Callable[[StoredEvent], int] = itemgetter(0)
id_of: Callable[[StoredEvent], str] = itemgetter(1)
key_of: Callable[[StoredEvent], tuple[int, str]] = itemgetter(0, 1)  # its place in history order


def events_from(data: Iterable[StoredEvent]) -> list[Compact]:
    """Stored compact events, named by their kind (to walk them)."""
    return [_new(_EVENT_TYPES[e[2]], e) for e in data]  # e[2]: the kind, in the stored tuple


def to_us(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (float timestamps would round)."""
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _ord(d: date | None) -> int | None:
    return None if d is None else d.toordinal()


def compact(event: Event, rules: RuleBook) -> Compact:
    """The named-tuple form of one event, with its local (Asia/Almaty) day computed once."""
    t = to_us(event.event_time)
    day = rules.local_date(event.event_time).toordinal()
    if isinstance(event, Crossing):
        return named(  # the hottest constructor: every event of every replay
            CrossingEvent,
            (
                t,
                event.event_id,
                CROSSING,
                day,
                ENTRY if event.direction is Direction.ENTRY else EXIT,
                event.checkpoint.id,
                event.traveller.nationality,
                event.entry_basis.kind,  # a StrEnum: equal to, and stored as, its value
                event.purpose,
                _ord(event.entry_basis.visa_expiry),
                event.declared_destination,
                event.planned_exit_checkpoint,
            ),
        )
    if isinstance(event, Registration):
        return named(
            RegistrationEvent,
            (
                t,
                event.event_id,
                REGISTRATION,
                day,
                REGISTERED if event.action is RegistrationAction.REGISTERED else CANCELLED,
                event.registration_id,
                event.traveller.nationality,
            ),
        )
    if isinstance(event, StatusChange):
        return named(
            StatusEvent,
            (
                t,
                event.event_id,
                STATUS,
                day,
                event.kind,
                _ord(event.valid_from),
                _ord(event.valid_until),
                event.traveller.nationality,
            ),
        )
    raise TypeError(f"not a traveller event: {type(event).__name__}")


# --- alert candidates ------------------------------------------------------------------------------
TYPE_CODE = {t: chr(ord("a") + i) for i, t in enumerate(AlertType)}
TYPE_NAME = {t: str(t.value) for t in AlertType}


class AlertCandidate(NamedTuple):
    """An alert the history implies, whether or not it is due yet; emitted as an Alert record when due.

    `id` is a local key (type code + anchor event id), unique per subject; the public alert id (a sha256,
    schemas.ids.alert_id) is only computed for records actually emitted."""

    id: str
    type: str  # AlertType value
    anchor_t: int  # time of the anchor event
    anchor: str  # anchor event id
    due: int  # microseconds: when the alert is due (the watermark must pass it)
    resolved: int  # 1: the stay that implied it has ended
    evidence: tuple[str, ...]  # event ids
    checkpoint: str | None
    nationality: str
    rule_id: str
    rule_version: str
    days_overstayed: int | None
    stay: str | None  # entry event id of the stay it belongs to
    params: dict[str, Any]  # what the reason and the details are written from


class EmittedAlert(NamedTuple):
    """The last record emitted for an alert id."""

    action: str  # AlertAction value
    alert: AlertCandidate
    # the record's revision; state written before alert revisions (format 1) reads as 0, the revision every
    # record of that time carries in the warehouse, so the next record (1) supersedes all of them
    revision: int


def next_revision(prior: EmittedAlert | None) -> int:
    """The revision of the next record of an alert id: 0 for its first, then one more than the last emitted."""
    return 0 if prior is None else prior.revision + 1


def emitted_alert(stored: tuple[Any, ...]) -> EmittedAlert:
    """An EmittedAlert as stored: (action, candidate, revision), or (action, candidate) by format-1 code."""
    return named(EmittedAlert, (stored[0], named(AlertCandidate, stored[1]), stored[2] if len(stored) > 2 else 0))


# --- stay candidates -------------------------------------------------------------------------------
class StayCandidate(NamedTuple):
    """A closed stay, as the Stay record will carry it (the public stay id is derived when emitted)."""

    id: str  # local key: the anchor event id
    anchor_t: int
    anchor: str  # entry event id (exit event id for an exit without entry)
    gated: int  # 1: wait for the watermark to pass close_t (superseded stays, like DOUBLE_ENTRY)
    close_t: int
    nationality: str
    basis: str
    purpose: str
    entry_id: str | None
    exit_id: str | None
    entry_t: int | None
    exit_t: int | None
    entry_checkpoint: str | None
    exit_checkpoint: str | None
    days: int
    allowed_days: int | None
    days_over: int
    rule_id: str
    rule_version: str


class EmittedStay(NamedTuple):
    """What is kept of an emitted stay: enough to tell a changed stay and to void it."""

    revision: int
    fingerprint: int  # of its fields (traveller._fingerprint)
    live: int  # 0: voided
    anchor_t: int
    nationality: str
    basis: str
    purpose: str


class StayMemo(NamedTuple):
    """The open stay's deadline alerts of Steps 3, 4 and 6 and its allowed stay, valid for `statuses` status
    changes: they only change with those, so registrations and the close do not recompute them."""

    statuses: int
    alerts: tuple[AlertCandidate, ...]
    allowed: Any  # allowed.Allowed (not imported here: allowed imports this module)


class OpenStay:
    """A stay without a close yet: its entry and the events that belong to it (docs/alerts.md, Step 2)."""

    __slots__ = ("entry", "memo", "permit", "regs", "row_id", "statuses")

    def __init__(
        self,
        entry: CrossingEvent,
        row_id: str | None,
        permit: StatusEvent | None,
        statuses: tuple[StatusEvent, ...] = (),
        regs: tuple[RegistrationEvent, ...] = (),
    ) -> None:
        self.entry = entry  # the ENTRY crossing
        self.row_id = row_id  # stay-limit row in force on the entry day (None: no row covers it)
        self.permit = permit  # latest WORK_PERMIT_ISSUED before the entry, not revoked (permit_end basis)
        self.statuses = statuses  # status changes during the stay that can move its last allowed day
        self.regs = regs  # registrations from 24 h before the entry on
        self.memo: StayMemo | None = None  # not stored

    def copy(self) -> OpenStay:
        other = OpenStay(self.entry, self.row_id, self.permit, self.statuses, self.regs)
        other.memo = self.memo
        return other

    def pack(self) -> tuple[Any, ...]:
        return (self.entry, self.row_id, self.permit, self.statuses, self.regs)

    @classmethod
    def unpack(cls, data: tuple[Any, ...]) -> OpenStay:
        entry, row_id, permit, statuses, regs = data
        return cls(
            named(CrossingEvent, entry),
            row_id,
            named(StatusEvent, permit) if permit is not None else None,
            tuple([named(StatusEvent, s) for s in statuses]) if statuses else (),
            tuple([named(RegistrationEvent, r) for r in regs]) if regs else (),
        )
