"""Steps 3-6 of docs/alerts.md for one stay: the alerts it implies and, once closed, its stay record.

Called for a stay when it closes (exit, or superseded by a new entry) and for the open stay after every
change to it. For an open stay the deadline alerts are candidates with their due time: they are emitted only
when the watermark passes it, and vanish if the exit (or a registration) arrives first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import AlertType, Purpose
from streams.core.allowed import Allowed, allowed_stay
from streams.core.context import Context
from streams.core.model import (
    CANCELLED,
    DAY,
    DAY_US,
    HOUR_US,
    ID,
    R_ACTION,
    R_REG_ID,
    REGISTERED,
    TYPE_CODE,
    TYPE_NAME,
    X_BASIS,
    X_CP,
    X_DEST,
    X_NAT,
    X_PLANNED,
    X_PURPOSE,
    Candidate,
    Compact,
    OpenStay,
    StayCandidate,
    T,
)
from streams.core.window import Interval, counted_segments, first_breach

_TRANSIT = Purpose.TRANSIT.value


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
) -> Candidate:
    """An alert the history implies (model.C_* layout); `stay` names the entry of the stay it belongs to."""
    return (
        TYPE_CODE[kind] + anchor[ID],
        TYPE_NAME[kind],
        anchor[T],
        anchor[ID],
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
    )


@dataclass(slots=True)
class Outcome:
    alerts: list[Candidate]
    stay: StayCandidate | None  # the closed stay's record (None while open)
    counted: list[Interval]  # days this stay adds to the traveller's rolling-window count


def _registered(regs: tuple[Compact, ...], start: int, due: int) -> bool:
    """A REGISTERED event in [start, due) whose registration was not cancelled before `due`."""
    found: list[str] = []
    cancelled: set[str] = set()
    for r in regs:
        t = r[T]
        if r[R_ACTION] == REGISTERED:
            if start <= t < due:
                found.append(r[R_REG_ID])
        elif t < due:
            cancelled.add(r[R_REG_ID])
    if not cancelled:
        return bool(found)
    return any(rid not in cancelled for rid in found)


def stay_outcome(
    ctx: Context,
    traveller_key: str,
    stay: OpenStay,
    past: tuple[Interval, ...],
    *,
    exit_event: Compact | None = None,
    superseded_by: Compact | None = None,
    with_registration: bool = True,
    allowed: Allowed | None = None,
) -> Outcome:
    """The alerts of `stay` (open when neither an exit nor a superseding entry is given), and its record.

    `with_registration=False` leaves out Step 5, which only depends on the stay's registrations (the open
    stay caches the rest between registrations)."""
    entry = stay.entry
    first: int = entry[DAY]
    eid: str = entry[ID]
    entry_t: int = entry[T]
    nat: str = entry[X_NAT]
    closer = exit_event if exit_event is not None else superseded_by
    close_t: int | None = closer[T] if closer is not None else None
    if allowed is None:
        allowed = allowed_stay(ctx, stay, close_t)
    last = allowed.last_day
    rule_id, rule_v = allowed.rule_id, allowed.rule_version(ctx.version)
    out: list[Candidate] = []
    ev_close = [closer[ID]] if closer is not None else []
    close_params: dict[str, Any] = {}
    if closer is not None:
        close_params = {"closed_by": "exit" if exit_event is not None else "entry", "close_t": close_t}
        close_params["close_cp"] = closer[X_CP]

    if exit_event is not None:
        days: int | None = exit_event[DAY] - first + 1
        last_present: int | None = exit_event[DAY]
    elif superseded_by is not None:
        days = superseded_by[DAY] - first
        last_present = superseded_by[DAY] - 1
    else:
        days, last_present = None, None

    # Step 3: per-entry limit
    if last is not None:
        allowed_days = last - first + 1
        due = ctx.day_start_us(last + 1)
        if close_t is None or close_t >= due:
            over = exit_event[DAY] - last if exit_event is not None else None
            out.append(
                candidate(
                    AlertType.IN_COUNTRY_OVERSTAY,
                    entry,
                    due=due,
                    resolved=close_t is not None,
                    evidence=[eid, *ev_close],
                    checkpoint=entry[X_CP],
                    nationality=nat,
                    rule_id=rule_id,
                    rule_version=rule_v,
                    days_overstayed=over,
                    stay=eid,
                    params={
                        "allowed": allowed_days,
                        "last": last,
                        "basis": entry[X_BASIS],
                        "days": days,
                        **close_params,
                    },
                )
            )
        if exit_event is not None and exit_event[DAY] > last:
            out.append(
                candidate(
                    AlertType.OUT_OF_COUNTRY_OVERSTAY,
                    exit_event,
                    due=exit_event[T],
                    resolved=False,
                    evidence=[eid, exit_event[ID]],
                    checkpoint=exit_event[X_CP],
                    nationality=nat,
                    rule_id=rule_id,
                    rule_version=rule_v,
                    days_overstayed=exit_event[DAY] - last,
                    stay=eid,
                    params={"allowed": allowed_days, "last": last, "basis": entry[X_BASIS], "days": days},
                )
            )

    # Step 4: rolling window
    row = allowed.row
    counted: list[Interval] = []
    if row is not None and row.window_days is not None and row.window_limit_days is not None:
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
            if breach is not None:
                day, count, anchors = breach
                out.append(
                    candidate(
                        AlertType.WINDOW_BREACH,
                        entry,
                        due=ctx.day_start_us(day),
                        resolved=close_t is not None,
                        evidence=anchors,
                        checkpoint=entry[X_CP],
                        nationality=nat,
                        rule_id=rule_id,
                        rule_version=rule_v,
                        stay=eid,
                        params={
                            "day": day,
                            "count": count,
                            "window": row.window_days,
                            "limit": row.window_limit_days,
                            "basis": entry[X_BASIS],
                            **close_params,
                        },
                    )
                )
        if last_present is not None:
            counted = [(a, b, eid) for a, b in counted_segments(first, last_present, allowed.covered)]

    # Step 6: transit
    if entry[X_PURPOSE] == _TRANSIT:
        tr = ctx.transit(first)
        if tr is not None:
            due = entry_t + tr.window_hours * HOUR_US
            if close_t is None or close_t >= due:
                out.append(
                    candidate(
                        AlertType.TRANSIT_OVERSTAY,
                        entry,
                        due=due,
                        resolved=close_t is not None,
                        evidence=[eid, *ev_close],
                        checkpoint=entry[X_CP],
                        nationality=nat,
                        rule_id=tr.id,
                        rule_version=tr.version,
                        stay=eid,
                        params={"hours": tr.window_hours, "dest": entry[X_DEST], **close_params},
                    )
                )
            if exit_event is not None:
                allowed_cps = set(tr.routes.get(entry[X_DEST] or "", ()))
                if entry[X_PLANNED]:
                    allowed_cps.add(entry[X_PLANNED])
                if allowed_cps and exit_event[X_CP] not in allowed_cps:
                    out.append(
                        candidate(
                            AlertType.WRONG_ROUTE_EXIT,
                            exit_event,
                            due=exit_event[T],
                            resolved=False,
                            evidence=[eid, exit_event[ID]],
                            checkpoint=exit_event[X_CP],
                            nationality=nat,
                            rule_id=tr.id,
                            rule_version=tr.version,
                            stay=eid,
                            params={
                                "dest": entry[X_DEST],
                                "planned": entry[X_PLANNED],
                                "allowed": ",".join(sorted(allowed_cps)),
                            },
                        )
                    )

    if with_registration:
        out.extend(registration_alerts(ctx, stay, close_t, ev_close, close_params))
    record: StayCandidate | None = None
    if closer is not None and days is not None:
        allowed_days_or_none = None if last is None else last - first + 1
        record = (
            eid,  # local key; the public stay id is derived when the record is emitted
            entry_t,
            eid,
            1 if superseded_by is not None else 0,  # superseded stays wait for the watermark, like DOUBLE_ENTRY
            close_t,
            nat,
            entry[X_BASIS],
            entry[X_PURPOSE],
            eid,
            exit_event[ID] if exit_event is not None else None,
            entry_t,
            exit_event[T] if exit_event is not None else None,
            entry[X_CP],
            exit_event[X_CP] if exit_event is not None else None,
            days,
            allowed_days_or_none,
            max(0, days - allowed_days_or_none) if allowed_days_or_none is not None else 0,
            rule_id,
            rule_v,
        )
    return Outcome(out, record, counted)


def registration_alerts(
    ctx: Context,
    stay: OpenStay,
    close_t: int | None,
    ev_close: list[str],
    close_params: dict[str, Any],
) -> list[Candidate]:
    """Step 5: UNREGISTERED_STAY for the stay's deadline and, where the rule has it, after cancellations."""
    entry = stay.entry
    first: int = entry[DAY]
    eid: str = entry[ID]
    entry_t: int = entry[T]
    nat: str = entry[X_NAT]
    out: list[Candidate] = []
    reg = ctx.registration(nat, entry[X_BASIS], entry[X_PURPOSE], first)
    if reg is not None:
        rule, deadline = reg
        regs = stay.regs if close_t is None else tuple(r for r in stay.regs if r[T] < close_t)
        due = ctx.day_start_us(deadline + 1)
        if (close_t is None or close_t >= due) and not _registered(regs, entry_t - DAY_US, due):
            late = next((r for r in regs if r[R_ACTION] == REGISTERED and r[T] >= due), None)
            resolver = [late[ID]] if late is not None else ev_close
            out.append(
                candidate(
                    AlertType.UNREGISTERED_STAY,
                    entry,
                    due=due,
                    resolved=close_t is not None or late is not None,
                    evidence=[eid, *resolver],
                    checkpoint=entry[X_CP],
                    nationality=nat,
                    rule_id=rule.id,
                    rule_version=rule.version,
                    stay=eid,
                    params={
                        "deadline": deadline,
                        "working_days": rule.deadline_working_days,
                        "exempt_days": rule.exempt_days,
                        "calendar_day": rule.deadline_calendar_day,
                        "late_t": late[T] if late is not None else None,
                        **close_params,
                    },
                )
            )
        m = rule.reregister_working_days
        if m:
            for i, c in enumerate(regs):
                if c[R_ACTION] != CANCELLED or c[T] < entry_t:
                    continue
                deadline_c = ctx.nth_working_day_after(c[DAY], m)
                due_c = ctx.day_start_us(deadline_c + 1)
                if close_t is not None and close_t < due_c:
                    continue
                after = [r for r in regs[i + 1 :] if r[R_ACTION] == REGISTERED]
                if any(r[T] < due_c for r in after):
                    continue
                late = next((r for r in after if r[T] >= due_c), None)
                resolver = [late[ID]] if late is not None else ev_close
                out.append(
                    candidate(
                        AlertType.UNREGISTERED_STAY,
                        c,
                        due=due_c,
                        resolved=close_t is not None or late is not None,
                        evidence=[eid, c[ID], *resolver],
                        checkpoint=entry[X_CP],
                        nationality=nat,
                        rule_id=rule.id,
                        rule_version=rule.version,
                        stay=eid,
                        params={
                            "deadline": deadline_c,
                            "reregister_days": m,
                            "cancelled_day": c[DAY],
                            "late_t": late[T] if late is not None else None,
                            **close_params,
                        },
                    )
                )

    return out


def exit_without_entry_stay(ctx: Context, traveller_key: str, exit_event: Compact) -> StayCandidate:
    """The stay record of an exit with no open stay (docs/alerts.md, Step 2). It counts no days towards a rolling
    window: when the person came in is unknown."""
    row = ctx.stay_limit(exit_event[X_NAT], exit_event[X_BASIS], exit_event[DAY])
    record = (
        exit_event[ID],
        exit_event[T],
        exit_event[ID],
        1,
        exit_event[T],
        exit_event[X_NAT],
        exit_event[X_BASIS],
        exit_event[X_PURPOSE],
        None,
        exit_event[ID],
        None,
        exit_event[T],
        None,
        exit_event[X_CP],
        1,
        None,
        0,
        row.id if row is not None else "none",
        row.version if row is not None else ctx.version,
    )
    return record
