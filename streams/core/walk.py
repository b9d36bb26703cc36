"""The walk over a traveller's ordered history (docs/alerts.md, Steps 1, 2 and 6).

A `Cursor` is everything the walk carries from one event to the next: the previous accepted crossing,
the watch-list and ban statuses in force, the latest work permit, recent registrations, the open stay and the
days present that a later rolling window can still see. Walking new events from a saved cursor gives exactly
what walking the whole history would, so in-order arrivals only pay for the new events; the cursor also
prunes itself to what a later event can look back at.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from schemas.records import AlertType, EntryBasisKind, StatusChangeKind
from streams.core.allowed import allowed_stay
from streams.core.context import Context
from streams.core.model import (
    CROSSING,
    DAY,
    DAY_US,
    ENTRY,
    HOUR_US,
    ID,
    KIND,
    REGISTRATION,
    S_FROM,
    S_KIND,
    S_UNTIL,
    X_BASIS,
    X_CP,
    X_DIR,
    X_NAT,
    Candidate,
    Compact,
    OpenStay,
    StayCandidate,
    T,
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


class Cursor:
    """The walk's state after some prefix of the ordered history."""

    __slots__ = ("bans", "lost", "open", "past", "permit", "prev", "recent_regs")

    def __init__(
        self,
        prev: tuple[int, str, str] | None = None,
        lost: tuple[int, str, str, int] | None = None,
        bans: tuple[tuple[int, int, str, int], ...] = (),
        permit: Compact | None = None,
        recent_regs: tuple[Compact, ...] = (),
        open: OpenStay | None = None,
        past: tuple[Interval, ...] = (),
    ) -> None:
        self.prev = prev  # previous accepted crossing: (time, checkpoint, event id)
        self.lost = lost  # DOCUMENT_LOST/STOLEN in force: (time, event id, kind, local day)
        self.bans = bans  # EXPELLED bans not yet over: (time, last banned day, event id, local day)
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

    @classmethod
    def unpack(cls, data: tuple[Any, ...]) -> Cursor:
        prev, lost, bans, permit, recent, open_, past = data
        return cls(prev, lost, bans, permit, recent, OpenStay.unpack(open_) if open_ is not None else None, past)


class Findings:
    """What a walk found: alert candidates, closed stays, and whether the open stay changed."""

    __slots__ = ("alerts", "open_touched", "stays")

    def __init__(self) -> None:
        self.alerts: list[Candidate] = []
        self.stays: list[StayCandidate] = []
        self.open_touched = False


def _ban_end(ctx: Context, s: Compact) -> int:
    if s[S_UNTIL] is not None:
        return int(s[S_UNTIL])
    start = date.fromordinal(int(s[S_FROM] if s[S_FROM] is not None else s[DAY]))
    years = ctx.rules.ban.default_ban_years
    try:
        end = start.replace(year=start.year + years)
    except ValueError:  # 29 February
        end = start.replace(year=start.year + years, day=28)
    return end.toordinal() - 1


def advance(ctx: Context, traveller_key: str, cur: Cursor, events: list[Compact], found: Findings) -> None:
    """Walk `events` (ordered, all after the cursor) from `cur`, updating it in place."""
    for e in events:
        kind = e[KIND]
        if kind == CROSSING:
            _crossing(ctx, traveller_key, cur, e, found)
        elif kind == REGISTRATION:
            cutoff = e[T] - DAY_US
            cur.recent_regs = (*(r for r in cur.recent_regs if r[T] >= cutoff), e)
            if cur.open is not None:
                cur.open.regs = (*cur.open.regs, e)
                found.open_touched = True
        else:
            _status(ctx, cur, e, found)


def _status(ctx: Context, cur: Cursor, e: Compact, found: Findings) -> None:
    k = e[S_KIND]
    if k in _LOST:
        cur.lost = (e[T], e[ID], k, e[DAY])
    elif k == _RECOVERED:
        cur.lost = None
    elif k == _EXPELLED:
        cur.bans = (*cur.bans, (e[T], _ban_end(ctx, e), e[ID], e[DAY]))
    if k == _WORK_PERMIT_ISSUED:
        cur.permit = e
    elif ctx.revoke.get(k) == _WORK_PERMIT_ISSUED:
        cur.permit = None
    if cur.open is not None and (k == _VISA_EXTENDED or k in ctx.extend_kinds or k in ctx.revoke):
        cur.open.statuses = (*cur.open.statuses, e)
        found.open_touched = True


def _crossing(ctx: Context, key: str, cur: Cursor, e: Compact, found: Findings) -> None:
    t: int = e[T]
    cp: str = e[X_CP]
    nat: str = e[X_NAT]
    foreign = e[X_BASIS] != _CITIZEN
    entering = e[X_DIR] == ENTRY

    # Step 1: a crossing faster than the distance allows is probably a cloned document
    impossible = None
    prev = cur.prev
    if prev is not None and prev[1] != cp:
        impossible = ctx.impossible(prev[1], cp, t - prev[0])
        if impossible is not None:
            km, hours, limit, air = impossible
            rule = ctx.rules.impossible_travel
            found.alerts.append(
                candidate(
                    AlertType.IMPOSSIBLE_TRAVEL,
                    e,
                    due=t,
                    resolved=False,
                    evidence=[prev[2], e[ID]],
                    checkpoint=cp,
                    nationality=nat,
                    rule_id=rule.id,
                    rule_version=rule.version,
                    params={
                        "km": round(km, 1),
                        "hours": round(hours, 2),
                        "limit_kmh": limit,
                        "mode": "air" if air else "ground",
                        "prev_cp": prev[1],
                        "prev_t": prev[0],
                    },
                )
            )

    # Step 6: watch lists, for accepted and impossible crossings alike
    if foreign and entering and cur.bans:
        cur.bans = tuple(b for b in cur.bans if b[1] >= e[DAY])
        ban = cur.bans[-1] if cur.bans else None  # the latest ban still in force (all come before, in order)
        if ban is not None:
            found.alerts.append(
                candidate(
                    AlertType.BANNED_ENTRY,
                    e,
                    due=t,
                    resolved=False,
                    evidence=[ban[2], e[ID]],
                    checkpoint=cp,
                    nationality=nat,
                    rule_id=ctx.rules.ban.id,
                    rule_version=ctx.rules.ban.version,
                    params={"until": ban[1], "expelled_day": ban[3]},
                )
            )
    if cur.lost is not None:
        lost = cur.lost
        found.alerts.append(
            candidate(
                AlertType.LOST_STOLEN_DOCUMENT,
                e,
                due=t,
                resolved=False,
                evidence=[lost[1], e[ID]],
                checkpoint=cp,
                nationality=nat,
                rule_id=WATCH_RULE,
                rule_version=ctx.version,
                params={"status": lost[2], "lost_day": lost[3], "direction": "ENTRY" if entering else "EXIT"},
            )
        )

    if impossible is not None:
        return  # excluded from matching; not the previous accepted crossing either
    cur.prev = (t, cp, e[ID])
    if not foreign:
        return

    # Step 2: stays
    if entering:
        if cur.open is not None:
            old = cur.open.entry
            gap = old[X_CP] != cp or t - old[T] > HOUR_US
            found.alerts.append(
                candidate(
                    AlertType.DOUBLE_ENTRY,
                    e,
                    due=t,
                    resolved=False,
                    evidence=[old[ID], e[ID]],
                    checkpoint=cp,
                    nationality=nat,
                    rule_id=MATCHING_RULE,
                    rule_version=ctx.version,
                    params={"likely": "data_gap" if gap else "duplicate_scan", "prev_cp": old[X_CP], "prev_t": old[T]},
                )
            )
            _close(ctx, key, cur, found, superseded_by=e)
        row = ctx.stay_limit(nat, e[X_BASIS], e[DAY])
        cutoff = t - DAY_US
        cur.open = OpenStay(
            e,
            row.id if row is not None else None,
            cur.permit if e[X_BASIS] == _WORK_PERMIT else None,
            (),
            tuple(r for r in cur.recent_regs if r[T] >= cutoff) if cur.recent_regs else (),
        )
        found.open_touched = True
    elif cur.open is not None:
        _close(ctx, key, cur, found, exit_event=e)
    else:
        if e[X_BASIS] not in _NO_EWE_ALERT:
            found.alerts.append(
                candidate(
                    AlertType.EXIT_WITHOUT_ENTRY,
                    e,
                    due=t,
                    resolved=False,
                    evidence=[e[ID]],
                    checkpoint=cp,
                    nationality=nat,
                    rule_id=MATCHING_RULE,
                    rule_version=ctx.version,
                    params={},
                )
            )
        found.stays.append(exit_without_entry_stay(ctx, key, e))


def _close(
    ctx: Context,
    key: str,
    cur: Cursor,
    found: Findings,
    *,
    exit_event: Compact | None = None,
    superseded_by: Compact | None = None,
) -> None:
    stay = cur.open
    assert stay is not None
    closer = exit_event if exit_event is not None else superseded_by
    assert closer is not None
    memo = stay.memo
    allowed = None
    if memo is not None and memo[0] == len(stay.statuses) and (not stay.statuses or stay.statuses[-1][T] < closer[T]):
        allowed = memo[2]  # every status change of the stay came before its close: L is what it was while open
    result = stay_outcome(ctx, key, stay, cur.past, exit_event=exit_event, superseded_by=superseded_by, allowed=allowed)
    found.alerts.extend(result.alerts)
    if result.stay is not None:
        found.stays.append(result.stay)
    _remember(ctx, cur, result.counted, closer[DAY])
    cur.open = None
    found.open_touched = True


def _remember(ctx: Context, cur: Cursor, counted: list[Interval], today: int) -> None:
    """Add a closed stay's counted days; forget days no window starting today or later can reach."""
    horizon = today - ctx.max_window_days
    past = cur.past
    if past and past[0][1] < horizon:
        past = tuple(i for i in past if i[1] >= horizon)
    if counted:
        past = (*past, *counted)
    cur.past = past


def open_alerts(ctx: Context, traveller_key: str, cur: Cursor) -> list[Candidate]:
    """Deadline candidates of the open stay as it stands (none without an open stay)."""
    stay = cur.open
    if stay is None:
        return []
    memo = stay.memo
    if memo is None or memo[0] != len(stay.statuses):
        allowed = allowed_stay(ctx, stay, None)
        limits = stay_outcome(ctx, traveller_key, stay, cur.past, with_registration=False, allowed=allowed).alerts
        stay.memo = memo = (len(stay.statuses), tuple(limits), allowed)
    return [*memo[1], *registration_alerts(ctx, stay, None, [], {})]
