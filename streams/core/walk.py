"""The walk over a traveller's ordered history (docs/alerts.md, Steps 1, 2 and 6).

A `Cursor` is everything the walk carries from one event to the next: the previous accepted crossing,
the watch-list and ban statuses in force, the latest work permit, recent registrations, the open stay and the
days present that a later rolling window can still see. Walking new events from a saved cursor gives exactly
what walking the whole history would, so in-order arrivals only pay for the new events; the cursor also
prunes itself to what a later event can look back at.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, NamedTuple

from schemas.records import AlertType, EntryBasisKind, StatusChangeKind
from streams.core.allowed import allowed_stay
from streams.core.context import Context, ImpossibleTravel
from streams.core.model import (
    DAY_US,
    ENTRY,
    HOUR_US,
    AlertCandidate,
    Compact,
    CrossingEvent,
    OpenStay,
    RegistrationEvent,
    StatusEvent,
    StayCandidate,
    StayMemo,
    named,
)
from streams.core.outcome import candidate, exit_without_entry_stay, registration_alerts, stay_outcome
from streams.core.window import Interval

_CITIZEN = EntryBasisKind.CITIZEN.value
_WORK_PERMIT = EntryBasisKind.WORK_PERMIT.value
_NO_EWE_ALERT = frozenset({EntryBasisKind.CITIZEN.value, EntryBasisKind.RESIDENCE_PERMIT.value})
_LOST = frozenset({StatusChangeKind.DOCUMENT_LOST.value, StatusChangeKind.DOCUMENT_STOLEN.value})
_RECOVERED = StatusChangeKind.DOCUMENT_RECOVERED.value
_EXPELLED = StatusChangeKind.EXPELLED.value
_VISA_EXTENDED = StatusChangeKind.VISA_EXTENDED.value
_WORK_PERMIT_ISSUED = StatusChangeKind.WORK_PERMIT_ISSUED.value
WATCH_RULE = "document-watch-list"  # no rules-file row: any report of loss or theft puts a document on it
MATCHING_RULE = "stay-matching"  # exit without entry / double entry follow from matching, not from a rules row


class PrevCrossing(NamedTuple):
    """The previous accepted crossing (impossible travel is measured from it)."""

    t: int
    checkpoint: str
    event_id: str


class LostDocument(NamedTuple):
    """A DOCUMENT_LOST/STOLEN report in force: every crossing on the document raises an alert."""

    t: int
    event_id: str
    change: str  # DOCUMENT_LOST or DOCUMENT_STOLEN
    day: int


class Ban(NamedTuple):
    """An entry ban after EXPELLED, until its last banned day."""

    t: int
    last_day: int
    event_id: str
    day: int  # the day of the expulsion


class Cursor:
    """The walk's state after some prefix of the ordered history."""

    __slots__ = ("bans", "lost", "open", "past", "permit", "prev", "recent_regs")

    def __init__(
        self,
        prev: PrevCrossing | None = None,
        lost: LostDocument | None = None,
        bans: tuple[Ban, ...] = (),
        permit: StatusEvent | None = None,
        recent_regs: tuple[RegistrationEvent, ...] = (),
        open: OpenStay | None = None,
        past: tuple[Interval, ...] = (),
    ) -> None:
        self.prev = prev
        self.lost = lost
        self.bans = bans  # bans not yet over
        self.permit = permit  # latest WORK_PERMIT_ISSUED not revoked
        self.recent_regs = recent_regs  # registrations of the last 24 h (an entry counts them)
        self.open = open
        self.past = past  # counted days of earlier windowed stays still inside the longest window

    def copy(self) -> Cursor:
        return Cursor(
            self.prev,
            self.lost,
            self.bans,
            self.permit,
            self.recent_regs,
            self.open.copy() if self.open is not None else None,
            self.past,
        )

    def pack(self) -> tuple[Any, ...]:
        return (
            self.prev,
            self.lost,
            self.bans,
            self.permit,
            self.recent_regs,
            self.open.pack() if self.open is not None else None,
            self.past,
        )

    @staticmethod
    def unpack(data: tuple[Any, ...]) -> Cursor:
        """The cursor `pack` stored (its tuples are named when a field is first read)."""
        return StoredCursor(data)


_CURSOR_FIELDS = frozenset(Cursor.__slots__)


class StoredCursor(Cursor):
    """A cursor as read from storage: it names its tuples when a field is first read, and packs back as stored
    until then. The base snapshot is only walked by a replay or a fold, so most steps never pay for it. Read-only:
    the walk advances a `copy()`, a plain Cursor (which keeps attribute reads fast: no `__getattr__`)."""

    __slots__ = ("_stored",)

    def __init__(self, data: tuple[Any, ...]) -> None:  # the fields stay unset until first read
        self._stored: tuple[Any, ...] | None = data

    def pack(self) -> tuple[Any, ...]:
        return self._stored if self._stored is not None else super().pack()

    def copy(self) -> Cursor:
        """A plain cursor named straight from the stored tuples (nothing named twice, no copy of a copy)."""
        return _named_cursor(self._stored) if self._stored is not None else super().copy()

    def __getattr__(self, name: str) -> Any:
        """Only reached for a field not set yet: the first read names all the stored tuples."""
        stored = self._stored
        if stored is None or name not in _CURSOR_FIELDS:
            raise AttributeError(name)
        c = _named_cursor(stored)
        self.prev, self.lost, self.bans, self.permit = c.prev, c.lost, c.bans, c.permit
        self.recent_regs, self.open, self.past = c.recent_regs, c.open, c.past
        self._stored = None
        return getattr(self, name)


def _named_cursor(stored: tuple[Any, ...]) -> Cursor:
    """The cursor `Cursor.pack` stored, its tuples named."""
    prev, lost, bans, permit, recent, open_, past = stored
    return Cursor(
        named(PrevCrossing, prev) if prev is not None else None,
        named(LostDocument, lost) if lost is not None else None,
        tuple([named(Ban, b) for b in bans]) if bans else (),
        named(StatusEvent, permit) if permit is not None else None,
        tuple([named(RegistrationEvent, r) for r in recent]) if recent else (),
        OpenStay.unpack(open_) if open_ is not None else None,
        tuple([named(Interval, i) for i in past]) if past else (),
    )


class Findings:
    """What a walk found: alert candidates, closed stays, and whether the open stay changed."""

    __slots__ = ("alerts", "open_touched", "stays")

    def __init__(self) -> None:
        self.alerts: list[AlertCandidate] = []
        self.stays: list[StayCandidate] = []
        self.open_touched = False


def _ban_end(ctx: Context, s: StatusEvent) -> int:
    """The last banned day: the order's end, or the rules' default years from its start."""
    if s.valid_until is not None:
        return int(s.valid_until)
    start = date.fromordinal(int(s.valid_from if s.valid_from is not None else s.day))
    return ctx.rules.ban.last_day(start).toordinal()


def advance(ctx: Context, traveller_key: str, cur: Cursor, events: list[Compact], found: Findings) -> None:
    """Walk `events` (ordered, all after the cursor) from `cur`, updating it in place."""
    for e in events:
        if isinstance(e, CrossingEvent):
            _crossing(ctx, traveller_key, cur, e, found)
        elif isinstance(e, RegistrationEvent):
            cutoff = e.t - DAY_US
            cur.recent_regs = (*(r for r in cur.recent_regs if r.t >= cutoff), e)
            if cur.open is not None:
                cur.open.regs = (*cur.open.regs, e)
                found.open_touched = True
        else:
            _status(ctx, cur, e, found)


def _status(ctx: Context, cur: Cursor, e: StatusEvent, found: Findings) -> None:
    k = e.change
    if k in _LOST:
        cur.lost = LostDocument(e.t, e.event_id, k, e.day)
    elif k == _RECOVERED:
        cur.lost = None
    elif k == _EXPELLED:
        cur.bans = (*cur.bans, Ban(e.t, _ban_end(ctx, e), e.event_id, e.day))
    if k == _WORK_PERMIT_ISSUED:
        cur.permit = e
    elif ctx.revoke.get(k) == _WORK_PERMIT_ISSUED:
        cur.permit = None
    if cur.open is not None and (k == _VISA_EXTENDED or k in ctx.extend_kinds or k in ctx.revoke):
        cur.open.statuses = (*cur.open.statuses, e)
        found.open_touched = True


def _crossing(ctx: Context, key: str, cur: Cursor, e: CrossingEvent, found: Findings) -> None:
    """Steps 1, 6 and 2 for one crossing, in that order: an impossible crossing still meets the watch lists
    but is excluded from matching; a citizen's crossing opens and closes no stay."""
    prev = cur.prev
    impossible = (
        _impossible_travel(ctx, prev, e, found) if prev is not None and prev.checkpoint != e.checkpoint else None
    )
    if cur.lost is not None or cur.bans:
        _watch_lists(ctx, cur, e, found)
    if impossible is not None:
        return  # excluded from matching; not the previous accepted crossing either
    cur.prev = named(PrevCrossing, (e.t, e.checkpoint, e.event_id))  # named(): per crossing, the cheap way
    if e.basis == _CITIZEN:
        return
    if e.direction == ENTRY:
        _enter(ctx, key, cur, e, found)
    elif cur.open is not None:
        _close(ctx, cur, found, exit_event=e)
    else:
        _exit_without_entry(ctx, e, found)


def _impossible_travel(ctx: Context, prev: PrevCrossing, e: CrossingEvent, found: Findings) -> ImpossibleTravel | None:
    """Step 1: a crossing faster than the distance from the previous one allows is probably a cloned document."""
    impossible = ctx.impossible(prev.checkpoint, e.checkpoint, e.t - prev.t)
    if impossible is None:
        return None
    rule = ctx.rules.impossible_travel
    overhead = rule.air_overhead_minutes if impossible.air else 0
    found.alerts.append(
        candidate(
            AlertType.IMPOSSIBLE_TRAVEL,
            e,
            due=e.t,
            resolved=False,
            evidence=[prev.event_id, e.event_id],
            checkpoint=e.checkpoint,
            nationality=e.nationality,
            rule_id=rule.id,
            rule_version=rule.version,
            params={
                "km": round(impossible.km, 1),
                "hours": round(impossible.hours, 2),
                "limit_kmh": impossible.limit_kmh,
                "mode": "air" if impossible.air else "ground",
                # what makes it impossible: the fastest plausible trip (minutes, rounded up), air overhead included
                "overhead_min": round(overhead),
                "needed_min": math.ceil(impossible.km / impossible.limit_kmh * 60 + overhead),
                "prev_cp": prev.checkpoint,
                "prev_t": prev.t,
            },
        )
    )
    return impossible


def _watch_lists(ctx: Context, cur: Cursor, e: CrossingEvent, found: Findings) -> None:
    """Step 6: a foreigner entering under a ban in force (BANNED_ENTRY); any crossing on a document reported
    lost or stolen (LOST_STOLEN_DOCUMENT). For accepted and impossible crossings alike."""
    entering = e.direction == ENTRY
    if entering and cur.bans and e.basis != _CITIZEN:
        cur.bans = tuple(b for b in cur.bans if b.last_day >= e.day)
        ban = cur.bans[-1] if cur.bans else None  # the latest ban still in force (all come before, in order)
        if ban is not None:
            found.alerts.append(
                candidate(
                    AlertType.BANNED_ENTRY,
                    e,
                    due=e.t,
                    resolved=False,
                    evidence=[ban.event_id, e.event_id],
                    checkpoint=e.checkpoint,
                    nationality=e.nationality,
                    rule_id=ctx.rules.ban.id,
                    rule_version=ctx.rules.ban.version,
                    params={"until": ban.last_day, "expelled_day": ban.day},
                )
            )
    lost = cur.lost
    if lost is not None:
        found.alerts.append(
            candidate(
                AlertType.LOST_STOLEN_DOCUMENT,
                e,
                due=e.t,
                resolved=False,
                evidence=[lost.event_id, e.event_id],
                checkpoint=e.checkpoint,
                nationality=e.nationality,
                rule_id=WATCH_RULE,
                rule_version=ctx.version,
                params={"status": lost.change, "lost_day": lost.day, "direction": "ENTRY" if entering else "EXIT"},
            )
        )


def _enter(ctx: Context, key: str, cur: Cursor, e: CrossingEvent, found: Findings) -> None:
    """Step 2: an entry opens a stay; one still open is closed by it (DOUBLE_ENTRY: a missing exit record when
    far or long apart, else a duplicate scan). The new stay takes the stay-limit row in force today, the
    work permit it rests on and the registrations of the last 24 h."""
    old = cur.open.entry if cur.open is not None else None
    if old is not None:
        gap = old.checkpoint != e.checkpoint or e.t - old.t > HOUR_US
        found.alerts.append(
            candidate(
                AlertType.DOUBLE_ENTRY,
                e,
                due=e.t,
                resolved=False,
                evidence=[old.event_id, e.event_id],
                checkpoint=e.checkpoint,
                nationality=e.nationality,
                rule_id=MATCHING_RULE,
                rule_version=ctx.version,
                params={"likely": "data_gap" if gap else "duplicate_scan", "prev_cp": old.checkpoint, "prev_t": old.t},
            )
        )
        _close(ctx, cur, found, superseded_by=e)
    row = ctx.stay_limit(e.nationality, e.basis, e.day)
    cutoff = e.t - DAY_US
    cur.open = OpenStay(
        e,
        row.id if row is not None else None,
        cur.permit if e.basis == _WORK_PERMIT else None,
        (),
        tuple(r for r in cur.recent_regs if r.t >= cutoff) if cur.recent_regs else (),
    )
    found.open_touched = True


def _exit_without_entry(ctx: Context, e: CrossingEvent, found: Findings) -> None:
    """Step 2: an exit with no open stay: a one-day stay record, and an alert unless residents and citizens."""
    if e.basis not in _NO_EWE_ALERT:
        found.alerts.append(
            candidate(
                AlertType.EXIT_WITHOUT_ENTRY,
                e,
                due=e.t,
                resolved=False,
                evidence=[e.event_id],
                checkpoint=e.checkpoint,
                nationality=e.nationality,
                rule_id=MATCHING_RULE,
                rule_version=ctx.version,
                params={},
            )
        )
    found.stays.append(exit_without_entry_stay(ctx, e))


def _close(
    ctx: Context,
    cur: Cursor,
    found: Findings,
    *,
    exit_event: CrossingEvent | None = None,
    superseded_by: CrossingEvent | None = None,
) -> None:
    stay = cur.open
    assert stay is not None
    closer = exit_event if exit_event is not None else superseded_by
    assert closer is not None
    memo = stay.memo
    allowed = None
    if (
        memo is not None
        and memo.statuses == len(stay.statuses)
        and (not stay.statuses or stay.statuses[-1].t < closer.t)
    ):
        allowed = memo.allowed  # every status change of the stay came before its close: L is what it was while open
    result = stay_outcome(ctx, stay, cur.past, exit_event=exit_event, superseded_by=superseded_by, allowed=allowed)
    found.alerts.extend(result.alerts)
    if result.stay is not None:
        found.stays.append(result.stay)
    _remember(ctx, cur, result.counted, closer.day)
    cur.open = None
    found.open_touched = True


def _remember(ctx: Context, cur: Cursor, counted: list[Interval], today: int) -> None:
    """Add a closed stay's counted days; forget days no window starting today or later can reach."""
    horizon = today - ctx.max_window_days
    past = cur.past
    if past and past[0].last < horizon:
        past = tuple(i for i in past if i.last >= horizon)
    if counted:
        past = (*past, *counted)
    cur.past = past


def open_alerts(ctx: Context, cur: Cursor) -> list[AlertCandidate]:
    """Deadline candidates of the open stay as it stands (none without an open stay)."""
    stay = cur.open
    if stay is None:
        return []
    memo = stay.memo
    if memo is None or memo.statuses != len(stay.statuses):
        allowed = allowed_stay(ctx, stay, None)
        limits = stay_outcome(ctx, stay, cur.past, with_registration=False, allowed=allowed).alerts
        stay.memo = memo = named(StayMemo, (len(stay.statuses), tuple(limits), allowed))
    return [*memo.alerts, *registration_alerts(ctx, stay, None)]
