"""Steps 3-6 of docs/alerts.md for one stay: the alerts it implies and, once closed, its stay record.

Called for a stay when it closes (exit, or superseded by a new entry) and for the open stay after every
change to it (`open_stay` gives the open stay's own record, emitted once it is overdue). For an open stay the
deadline alerts are candidates with their due time: they are emitted only when the watermark passes it, and
vanish if the exit (or a registration) arrives first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import AlertType, Purpose
from shekara.rules import RegistrationRule
from streams.core.allowed import Allowed, allowed_stay
from streams.core.context import Context
from streams.core.model import (
    CANCELLED,
    DAY_US,
    HOUR_US,
    REGISTERED,
    TYPE_CODE,
    TYPE_NAME,
    AlertCandidate,
    Compact,
    CrossingEvent,
    OpenStay,
    RegistrationEvent,
    StayCandidate,
    named,
)
from streams.core.window import Interval, continues_episode, counted_segments, first_breach

_TRANSIT = Purpose.TRANSIT.value
# StayCandidate.gated: 0 emit now, 1 wait for the watermark to pass close_t (a superseded stay), OPEN: an open
# stay, emitted once the watermark passes its due time (the day after its last allowed day; close_t holds it)
CLOSED_NOW, CLOSED_GATED, OPEN = 0, 1, 2


def candidate(
    kind: AlertType,
    anchor: Compact,
    *,
    due: int,
    resolved: bool,
    evidence: list[str],
    checkpoint: str | None,
    nationality: str,
    rule_id: str,
    rule_version: str,
    days_overstayed: int | None = None,
    stay: str | None = None,
    params: dict[str, Any] | None = None,
) -> AlertCandidate:
    """An alert the history implies; `stay` names the entry of the stay it belongs to."""
    return named(  # not the keyword constructor: a replay builds many candidates
        AlertCandidate,
        (
            TYPE_CODE[kind] + anchor.event_id,
            TYPE_NAME[kind],
            anchor.t,
            anchor.event_id,
            due,
            1 if resolved else 0,
            tuple(evidence),
            checkpoint,
            nationality,
            rule_id,
            rule_version,
            days_overstayed,
            stay,
            params or {},
        ),
    )


@dataclass(slots=True)
class Outcome:
    alerts: list[AlertCandidate]
    stay: StayCandidate | None  # the closed stay's record (None while open: see open_stay)
    counted: list[Interval]  # days this stay adds to the traveller's rolling-window count


class Closing:
    """How a stay ended, as the alerts of Steps 3-6 read it: by an exit, or superseded by a new entry."""

    __slots__ = ("by_exit", "days", "event", "exit", "last_present")

    def __init__(self, event: CrossingEvent, by_exit: bool, first: int) -> None:
        self.event = event  # the exit or the superseding entry
        self.by_exit = by_exit
        self.exit = event if by_exit else None
        # days of the stay counted like the law does (both ends for an exit), and the last day present
        self.days = event.day - first + 1 if by_exit else event.day - first
        self.last_present = event.day if by_exit else event.day - 1

    # evidence and params only for the alerts a close resolves (most closes resolve none): built when read
    @property
    def evidence(self) -> list[str]:
        return [self.event.event_id]

    @property
    def params(self) -> dict[str, Any]:
        """What an alert resolved by this close says about it (records.describe)."""
        e = self.event
        return {"closed_by": "exit" if self.by_exit else "entry", "close_t": e.t, "close_cp": e.checkpoint}

    @classmethod
    def of(cls, exit_event: CrossingEvent | None, superseded_by: CrossingEvent | None, first: int) -> Closing | None:
        if exit_event is not None:
            return cls(exit_event, True, first)
        if superseded_by is not None:
            return cls(superseded_by, False, first)
        return None


def _registered(regs: tuple[RegistrationEvent, ...], start: int, due: int) -> bool:
    """A REGISTERED event in [start, due) whose registration was not cancelled before `due`."""
    found: list[str] = []
    cancelled: set[str] = set()
    for r in regs:
        t = r.t
        if r.action == REGISTERED:
            if start <= t < due:
                found.append(r.registration_id)
        elif t < due:
            cancelled.add(r.registration_id)
    if not cancelled:
        return bool(found)
    return any(rid not in cancelled for rid in found)


def stay_outcome(
    ctx: Context,
    stay: OpenStay,
    past: tuple[Interval, ...],
    *,
    exit_event: CrossingEvent | None = None,
    superseded_by: CrossingEvent | None = None,
    with_registration: bool = True,
    allowed: Allowed | None = None,
) -> Outcome:
    """The alerts of `stay` (open when neither an exit nor a superseding entry is given), and its record.

    `with_registration=False` leaves out Step 5, which only depends on the stay's registrations (the open
    stay caches the rest between registrations)."""
    entry = stay.entry
    closing = Closing.of(exit_event, superseded_by, entry.day)
    close_t = closing.event.t if closing is not None else None
    if allowed is None:
        allowed = allowed_stay(ctx, stay, close_t)
    out = _stay_limit_alerts(ctx, entry, allowed, closing)
    counted = _rolling_window(ctx, entry, allowed, closing, past, out)
    out.extend(_transit_alerts(ctx, entry, closing))
    if with_registration:
        out.extend(registration_alerts(ctx, stay, closing))
    record = _stay_record(ctx, entry, allowed, closing) if closing is not None else None
    return Outcome(out, record, counted)


def _stay_limit_alerts(
    ctx: Context, entry: CrossingEvent, allowed: Allowed, closing: Closing | None
) -> list[AlertCandidate]:
    """Step 3: past the last allowed day L while in the country (IN_COUNTRY_OVERSTAY, due the day after L,
    resolved by the close) and, once out, an exit after L (OUT_OF_COUNTRY_OVERSTAY)."""
    last = allowed.last_day
    if last is None:
        return []
    out: list[AlertCandidate] = []
    first, eid = entry.day, entry.event_id
    rule_id, rule_v = allowed.rule_id, allowed.rule_version(ctx.version)
    allowed_days = last - first + 1
    days = closing.days if closing is not None else None
    exit_event = closing.exit if closing is not None else None
    due = ctx.day_start_us(last + 1)
    if closing is None or closing.event.t >= due:
        out.append(
            candidate(
                AlertType.IN_COUNTRY_OVERSTAY,
                entry,
                due=due,
                resolved=closing is not None,
                evidence=[eid, *closing.evidence] if closing is not None else [eid],
                checkpoint=entry.checkpoint,
                nationality=entry.nationality,
                rule_id=rule_id,
                rule_version=rule_v,
                days_overstayed=exit_event.day - last if exit_event is not None else None,
                stay=eid,
                params={
                    "allowed": allowed_days,
                    "last": last,
                    "basis": entry.basis,
                    "days": days,
                    **(closing.params if closing is not None else {}),
                },
            )
        )
    if exit_event is not None and exit_event.day > last:
        out.append(
            candidate(
                AlertType.OUT_OF_COUNTRY_OVERSTAY,
                exit_event,
                due=exit_event.t,
                resolved=False,
                evidence=[eid, exit_event.event_id],
                checkpoint=exit_event.checkpoint,
                nationality=entry.nationality,
                rule_id=rule_id,
                rule_version=rule_v,
                days_overstayed=exit_event.day - last,
                stay=eid,
                params={"allowed": allowed_days, "last": last, "basis": entry.basis, "days": days},
            )
        )
    return out


def _rolling_window(
    ctx: Context,
    entry: CrossingEvent,
    allowed: Allowed,
    closing: Closing | None,
    past: tuple[Interval, ...],
    out: list[AlertCandidate],
) -> list[Interval]:
    """Step 4: a WINDOW_BREACH (into `out`) on the first day the row's rolling window is exceeded, unless the stay
    begins inside a breach episode an earlier stay was part of (one alert per episode); returns the days this
    stay adds to the count of later stays (once closed)."""
    row = allowed.row
    if row is None or row.window_days is None or row.window_limit_days is None:
        return []
    first, eid, last = entry.day, entry.event_id, allowed.last_day
    last_present = closing.last_present if closing is not None else None
    # cheap test first: with no earlier stays, a stay within the limit cannot breach the window
    top = None if last is None else last if last_present is None else min(last, last_present)
    if last is not None and top is not None and (past or top - first + 1 > row.window_limit_days):
        breach = first_breach(
            window_days=row.window_days,
            limit_days=row.window_limit_days,
            first=first,
            last_present=last_present if last_present is not None else last,
            last_allowed=last,
            covered=allowed.covered,
            past=past,
            anchor=eid,
        )
        if breach is not None and not continues_episode(
            window_days=row.window_days, limit_days=row.window_limit_days, first=first, past=past
        ):
            out.append(
                candidate(
                    AlertType.WINDOW_BREACH,
                    entry,
                    # the person is present from the day's start, or from the entry on the breach day itself
                    due=entry.t if breach.day == first else ctx.day_start_us(breach.day),
                    resolved=closing is not None,
                    evidence=breach.anchors,
                    checkpoint=entry.checkpoint,
                    nationality=entry.nationality,
                    rule_id=allowed.rule_id,
                    rule_version=allowed.rule_version(ctx.version),
                    stay=eid,
                    params={
                        "day": breach.day,
                        "count": breach.days_present,
                        "window": row.window_days,
                        "limit": row.window_limit_days,
                        "basis": entry.basis,
                        "entry_day": first,
                        "entry_cp": entry.checkpoint,
                        **(closing.params if closing is not None else {}),
                    },
                )
            )
    if last_present is None:
        return []
    return [named(Interval, (a, b, eid)) for a, b in counted_segments(first, last_present, allowed.covered)]


def _transit_alerts(ctx: Context, entry: CrossingEvent, closing: Closing | None) -> list[AlertCandidate]:
    """Step 6: a declared transit still in the country after its window (TRANSIT_OVERSTAY), or that left
    through a checkpoint not on a designated route (WRONG_ROUTE_EXIT)."""
    if entry.purpose != _TRANSIT:
        return []
    tr = ctx.transit(entry.day)
    if tr is None:
        return []
    out: list[AlertCandidate] = []
    eid = entry.event_id
    due = entry.t + tr.window_hours * HOUR_US
    if closing is None or closing.event.t >= due:
        out.append(
            candidate(
                AlertType.TRANSIT_OVERSTAY,
                entry,
                due=due,
                resolved=closing is not None,
                evidence=[eid, *closing.evidence] if closing is not None else [eid],
                checkpoint=entry.checkpoint,
                nationality=entry.nationality,
                rule_id=tr.id,
                rule_version=tr.version,
                stay=eid,
                params={
                    "hours": tr.window_hours,
                    "dest": entry.destination,
                    **(closing.params if closing is not None else {}),
                },
            )
        )
    exit_event = closing.exit if closing is not None else None
    if exit_event is not None:
        allowed_cps = set(tr.routes.get(entry.destination or "", ()))
        if entry.planned_exit:
            allowed_cps.add(entry.planned_exit)
        if allowed_cps and exit_event.checkpoint not in allowed_cps:
            out.append(
                candidate(
                    AlertType.WRONG_ROUTE_EXIT,
                    exit_event,
                    due=exit_event.t,
                    resolved=False,
                    evidence=[eid, exit_event.event_id],
                    checkpoint=exit_event.checkpoint,
                    nationality=entry.nationality,
                    rule_id=tr.id,
                    rule_version=tr.version,
                    stay=eid,
                    params={
                        "dest": entry.destination,
                        "planned": entry.planned_exit,
                        "allowed": ",".join(sorted(allowed_cps)),
                    },
                )
            )
    return out


def _stay_record(ctx: Context, entry: CrossingEvent, allowed: Allowed, closing: Closing) -> StayCandidate:
    """The closed stay, anchored at its entry; a superseded stay waits for the watermark, like DOUBLE_ENTRY."""
    eid = entry.event_id
    last = allowed.last_day
    allowed_days = None if last is None else last - entry.day + 1
    exit_event = closing.exit
    return StayCandidate(
        id=eid,
        anchor_t=entry.t,
        anchor=eid,
        gated=CLOSED_NOW if closing.by_exit else CLOSED_GATED,
        close_t=closing.event.t,
        nationality=entry.nationality,
        basis=entry.basis,
        purpose=entry.purpose,
        entry_id=eid,
        exit_id=exit_event.event_id if exit_event is not None else None,
        entry_t=entry.t,
        exit_t=exit_event.t if exit_event is not None else None,
        entry_checkpoint=entry.checkpoint,
        exit_checkpoint=exit_event.checkpoint if exit_event is not None else None,
        days=closing.days,
        allowed_days=allowed_days,
        days_over=max(0, closing.days - allowed_days) if allowed_days is not None else 0,
        rule_id=allowed.rule_id,
        rule_version=allowed.rule_version(ctx.version),
    )


def open_stay(ctx: Context, stay: OpenStay) -> StayCandidate | None:
    """The open stay's record, to emit once it passes its last allowed day L (none without a limit: it cannot
    become overdue). Fixed while the stay is open unless a status change moves L, so it is re-emitted only then;
    the close replaces it (same id, next revision). `days` is 0 while open: the days present are still counting."""
    memo = stay.memo
    allowed = memo.allowed if memo is not None and memo.statuses == len(stay.statuses) else None
    if allowed is None:
        allowed = allowed_stay(ctx, stay, None)
    last = allowed.last_day
    if last is None:
        return None
    entry = stay.entry
    eid = entry.event_id
    return StayCandidate(
        id=eid,
        anchor_t=entry.t,
        anchor=eid,
        gated=OPEN,
        close_t=ctx.day_start_us(last + 1),  # when it becomes overdue, as IN_COUNTRY_OVERSTAY
        nationality=entry.nationality,
        basis=entry.basis,
        purpose=entry.purpose,
        entry_id=eid,
        exit_id=None,
        entry_t=entry.t,
        exit_t=None,
        entry_checkpoint=entry.checkpoint,
        exit_checkpoint=None,
        days=0,
        allowed_days=last - entry.day + 1,
        days_over=0,
        rule_id=allowed.rule_id,
        rule_version=allowed.rule_version(ctx.version),
    )


def registration_alerts(ctx: Context, stay: OpenStay, closing: Closing | None) -> list[AlertCandidate]:
    """Step 5: UNREGISTERED_STAY for the stay's deadline and, where the rule has it, after cancellations."""
    entry = stay.entry
    reg = ctx.registration(entry.nationality, entry.basis, entry.purpose, entry.day)
    if reg is None:
        return []
    rule, deadline = reg
    close_t = closing.event.t if closing is not None else None
    regs = stay.regs if close_t is None else tuple(r for r in stay.regs if r.t < close_t)
    out: list[AlertCandidate] = []
    missed = _unregistered_by_deadline(ctx, entry, rule, deadline, regs, closing)
    if missed is not None:
        out.append(missed)
    if rule.reregister_working_days:
        out.extend(_unregistered_after_cancellations(ctx, entry, rule, rule.reregister_working_days, regs, closing))
    return out


def _unregistered_by_deadline(
    ctx: Context,
    entry: CrossingEvent,
    rule: RegistrationRule,
    deadline: int,
    regs: tuple[RegistrationEvent, ...],
    closing: Closing | None,
) -> AlertCandidate | None:
    """No registration in force from 24 h before the entry to the end of deadline day R (and the person still
    in the country then); resolved by a late registration or by the close."""
    eid = entry.event_id
    due = ctx.day_start_us(deadline + 1)
    if (closing is not None and closing.event.t < due) or _registered(regs, entry.t - DAY_US, due):
        return None
    late = next((r for r in regs if r.action == REGISTERED and r.t >= due), None)
    resolver = [late.event_id] if late is not None else closing.evidence if closing is not None else []
    return candidate(
        AlertType.UNREGISTERED_STAY,
        entry,
        due=due,
        resolved=closing is not None or late is not None,
        evidence=[eid, *resolver],
        checkpoint=entry.checkpoint,
        nationality=entry.nationality,
        rule_id=rule.id,
        rule_version=rule.version,
        stay=eid,
        params={
            "deadline": deadline,
            "working_days": rule.deadline_working_days,
            "exempt_days": rule.exempt_days,
            "calendar_day": rule.deadline_calendar_day,
            "late_t": late.t if late is not None else None,
            **(closing.params if closing is not None else {}),
        },
    )


def _unregistered_after_cancellations(
    ctx: Context,
    entry: CrossingEvent,
    rule: RegistrationRule,
    m: int,
    regs: tuple[RegistrationEvent, ...],
    closing: Closing | None,
) -> list[AlertCandidate]:
    """A registration cancelled during the stay and no new one within the rule's working days, anchored at
    the cancellation (`m`: the rule's working days); resolved by a late registration or by the close."""
    out: list[AlertCandidate] = []
    eid = entry.event_id
    for i, c in enumerate(regs):
        if c.action != CANCELLED or c.t < entry.t:
            continue
        deadline = ctx.nth_working_day_after(c.day, m)
        due = ctx.day_start_us(deadline + 1)
        if closing is not None and closing.event.t < due:
            continue
        after = [r for r in regs[i + 1 :] if r.action == REGISTERED]
        if any(r.t < due for r in after):
            continue
        late = next((r for r in after if r.t >= due), None)
        resolver = [late.event_id] if late is not None else closing.evidence if closing is not None else []
        out.append(
            candidate(
                AlertType.UNREGISTERED_STAY,
                c,
                due=due,
                resolved=closing is not None or late is not None,
                evidence=[eid, c.event_id, *resolver],
                checkpoint=entry.checkpoint,
                nationality=entry.nationality,
                rule_id=rule.id,
                rule_version=rule.version,
                stay=eid,
                params={
                    "deadline": deadline,
                    "reregister_days": m,
                    "cancelled_day": c.day,
                    "late_t": late.t if late is not None else None,
                    **(closing.params if closing is not None else {}),
                },
            )
        )
    return out


def exit_without_entry_stay(ctx: Context, exit_event: CrossingEvent) -> StayCandidate:
    """The stay record of an exit with no open stay (docs/alerts.md, Step 2). It counts no days towards a rolling
    window: when the person came in is unknown."""
    row = ctx.stay_limit(exit_event.nationality, exit_event.basis, exit_event.day)
    return StayCandidate(
        id=exit_event.event_id,
        anchor_t=exit_event.t,
        anchor=exit_event.event_id,
        gated=CLOSED_GATED,
        close_t=exit_event.t,
        nationality=exit_event.nationality,
        basis=exit_event.basis,
        purpose=exit_event.purpose,
        entry_id=None,
        exit_id=exit_event.event_id,
        entry_t=None,
        exit_t=exit_event.t,
        entry_checkpoint=None,
        exit_checkpoint=exit_event.checkpoint,
        days=1,
        allowed_days=None,
        days_over=0,
        rule_id=row.id if row is not None else "none",
        rule_version=row.version if row is not None else ctx.version,
    )
