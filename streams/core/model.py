"""Compact, serialisable forms of a traveller's events and of the decisions derived from them.

The per-traveller state is stored after every batch, so it is made of plain tuples of ints and strings
(msgpack-friendly, cheap to copy and compare) rather than the record dataclasses. Times are integer
microseconds since the Unix epoch (UTC), local days are `date.toordinal()` of the Asia/Almaty calendar day.
A tuple event starts with (time, event_id), so tuples sort in the spec's history order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.records import AlertType, Crossing, Direction, Registration, RegistrationAction, StatusChange
from shekara.rules import RuleBook

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

Event = Crossing | Registration | StatusChange

# --- compact events: (t, id, kind, local_day, ...) ------------------------------------------------
T, ID, KIND, DAY = 0, 1, 2, 3
CROSSING, REGISTRATION, STATUS = 0, 1, 2
# crossing fields
X_DIR, X_CP, X_NAT, X_BASIS, X_PURPOSE, X_VISA, X_DEST, X_PLANNED = 4, 5, 6, 7, 8, 9, 10, 11
ENTRY, EXIT = 0, 1
# registration fields
R_ACTION, R_REG_ID, R_NAT = 4, 5, 6
REGISTERED, CANCELLED = 0, 1
# status change fields
S_KIND, S_FROM, S_UNTIL, S_NAT = 4, 5, 6, 7

Compact = tuple[Any, ...]


def to_us(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (float timestamps would round)."""
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _ord(d: date | None) -> int | None:
    return None if d is None else d.toordinal()


def compact(event: Event, rules: RuleBook) -> Compact:
    """The tuple form of one event, with its local (Asia/Almaty) day computed once."""
    t = to_us(event.event_time)
    day = rules.local_date(event.event_time).toordinal()
    if isinstance(event, Crossing):
        return (
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
        )
    if isinstance(event, Registration):
        return (
            t,
            event.event_id,
            REGISTRATION,
            day,
            REGISTERED if event.action is RegistrationAction.REGISTERED else CANCELLED,
            event.registration_id,
            event.traveller.nationality,
        )
    if isinstance(event, StatusChange):
        return (
            t,
            event.event_id,
            STATUS,
            day,
            event.kind,
            _ord(event.valid_from),
            _ord(event.valid_until),
            event.traveller.nationality,
        )
    raise TypeError(f"not a traveller event: {type(event).__name__}")


def nationality_of(e: Compact) -> str:
    kind = e[KIND]
    if kind == CROSSING:
        return str(e[X_NAT])
    if kind == REGISTRATION:
        return str(e[R_NAT])
    return str(e[S_NAT])


# --- alert candidates ------------------------------------------------------------------------------
# An alert the history implies, whether or not it is due yet. Emitted as an Alert record when due.
# C_ID is a local key (type code + anchor event id), unique per subject; the public alert id (a sha256,
# schemas.ids.alert_id) is only computed for records actually emitted.
TYPE_CODE = {t: chr(ord("a") + i) for i, t in enumerate(AlertType)}
TYPE_NAME = {t: str(t.value) for t in AlertType}
(
    C_ID,
    C_TYPE,
    C_ANCHOR_T,
    C_ANCHOR,
    C_DUE,
    C_RESOLVED,
    C_EVIDENCE,
    C_CP,
    C_NAT,
    C_RULE,
    C_RULE_V,
    C_DAYS,
    C_STAY,
    C_PARAMS,
) = range(14)
Candidate = tuple[Any, ...]

# --- stay candidates -------------------------------------------------------------------------------
(
    ST_ID,
    ST_ANCHOR_T,
    ST_ANCHOR,
    ST_GATED,
    ST_CLOSE_T,
    ST_NAT,
    ST_BASIS,
    ST_PURPOSE,
    ST_ENTRY_ID,
    ST_EXIT_ID,
    ST_ENTRY_T,
    ST_EXIT_T,
    ST_ENTRY_CP,
    ST_EXIT_CP,
    ST_DAYS,
    ST_ALLOWED,
    ST_OVER,
    ST_RULE,
    ST_RULE_V,
) = range(19)
StayCandidate = tuple[Any, ...]


class OpenStay:
    """A stay without a close yet: its entry and the events that belong to it (docs/alerts.md, Step 2)."""

    __slots__ = ("entry", "memo", "permit", "regs", "row_id", "statuses")

    def __init__(
        self,
        entry: Compact,
        row_id: str | None,
        permit: Compact | None,
        statuses: tuple[Compact, ...] = (),
        regs: tuple[Compact, ...] = (),
    ) -> None:
        self.entry = entry  # the ENTRY crossing
        self.row_id = row_id  # stay-limit row in force on the entry day (None: no row covers it)
        self.permit = permit  # latest WORK_PERMIT_ISSUED before the entry, not revoked (permit_end basis)
        self.statuses = statuses  # status changes during the stay that can move its last allowed day
        self.regs = regs  # registrations from 24 h before the entry on
        # not stored: (number of statuses, the candidates of Steps 3, 4 and 6, the allowed stay) - they
        # only change with the statuses, so registrations (Step 5) and the close do not recompute them
        self.memo: tuple[int, tuple[tuple[Any, ...], ...], Any] | None = None

    def copy(self) -> OpenStay:
        other = OpenStay(self.entry, self.row_id, self.permit, self.statuses, self.regs)
        other.memo = self.memo
        return other

    def pack(self) -> tuple[Any, ...]:
        return (self.entry, self.row_id, self.permit, self.statuses, self.regs)

    @classmethod
    def unpack(cls, data: tuple[Any, ...]) -> OpenStay:
        return cls(*data)
