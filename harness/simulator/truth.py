"""Ground truth: the alerts docs/alerts.md yields for a traveller's history, computed independently of `streams`.

The processors and this module both implement docs/alerts.md over the same rules file and checkpoint
catalogue, and never import each other; evaluation compares their alert ids. Everything here is a pure
function of an ordered history and the end of the simulated period (alerts due later are not expected).

Follows the precise readings docs/alerts.md gives (close times, permit extensions, what counts towards the
rolling window); the generator also keeps normal traffic away from the remaining corners (equal event times,
crossings exactly at a deadline), so the truth never hangs on a tie.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from harness.simulator.plan import Planned, PlannedCrossing, PlannedRegistration, PlannedStatus, order_key
from schemas.ids import alert_id
from schemas.records import (
    AlertType,
    CheckpointKind,
    Direction,
    EntryBasisKind,
    Purpose,
    RegistrationAction,
    StatusChangeKind,
)
from shekara.pseudonym import pseudonymise
from shekara.reference import distance_km
from shekara.rules import ImpossibleTravelRule, RuleBook

ONE_DAY = timedelta(days=1)
_NOT_WORD = re.compile(r"[\W_]+")
_EXIT_WITHOUT_ENTRY_EXEMPT = (EntryBasisKind.CITIZEN, EntryBasisKind.RESIDENCE_PERMIT)
_WATCH = (StatusChangeKind.DOCUMENT_LOST, StatusChangeKind.DOCUMENT_STOLEN)


@dataclass(frozen=True, slots=True)
class Expected:
    """One line of the ground truth: an alert that must be raised, or a payload that must be rejected."""

    kind: str  # "alert" | "malformed"
    alert_id: str | None
    type: str | None
    traveller_key: str | None
    anchor_event_id: str | None
    evidence_event_ids: list[str]
    due_time: datetime | None
    reason: str  # for malformed: why it must be rejected
    anomaly: str | None = None  # the injected anomaly (or malformed sort) that caused it; None = normal traffic
    checkpoint_id: str | None = None
    days_overstayed: int | None = None
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "alert_id": self.alert_id,
            "type": self.type,
            "traveller_key": self.traveller_key,
            "anchor_event_id": self.anchor_event_id,
            "evidence_event_ids": list(self.evidence_event_ids),
            "due_time": None if self.due_time is None else self.due_time.isoformat(),
            "reason": self.reason,
            "anomaly": self.anomaly,
            "checkpoint_id": self.checkpoint_id,
            "days_overstayed": self.days_overstayed,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Expected:
        due = d.get("due_time")
        return cls(
            d["kind"],
            d.get("alert_id"),
            d.get("type"),
            d.get("traveller_key"),
            d.get("anchor_event_id"),
            list(d.get("evidence_event_ids") or []),
            None if due is None else datetime.fromisoformat(due),
            d.get("reason", ""),
            d.get("anomaly"),
            d.get("checkpoint_id"),
            d.get("days_overstayed"),
            dict(d.get("details") or {}),
        )


# --- geometry ------------------------------------------------------------------------------------------------


def impossible(prev: PlannedCrossing, cur: PlannedCrossing, rule: ImpossibleTravelRule) -> bool:
    """Step 1: `cur` at a different checkpoint faster than the fastest plausible trip from `prev`."""
    a, b = prev.checkpoint, cur.checkpoint
    if a.id == b.id:
        return False
    hours = (cur.time - prev.time).total_seconds() / 3600.0
    dist = distance_km(a, b)
    if a.kind == CheckpointKind.AIR or b.kind == CheckpointKind.AIR:
        hours -= rule.air_overhead_minutes / 60.0
        return hours <= 0 or dist / hours > rule.air_kmh
    return hours <= 0 or dist / hours > rule.ground_kmh


# --- addresses -----------------------------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    """Upper-case, punctuation and runs of whitespace collapsed to one space."""
    return _NOT_WORD.sub(" ", address.upper()).strip()


def address_key(region: str, address: str, key: bytes) -> str:
    return pseudonymise(f"{region}|{normalise_address(address)}", key, "address")


# --- one traveller -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stay:
    entry: PlannedCrossing | None
    exit: PlannedCrossing | None = None
    closed_at: datetime | None = None  # exit time, or the superseding entry's time; None = still open
    superseded_by: PlannedCrossing | None = None


@dataclass(slots=True)
class _Extension:
    kind: str  # the permit's StatusChangeKind
    start: date
    until: date


@dataclass(slots=True)
class _Judged:
    """A stay with its allowed last day and the days it is present (for the rolling window)."""

    stay: _Stay
    first: date
    last: date  # last day present (open stays: the last day of the period)
    allowed_last: date | None
    covered: set[date]  # days covered by a permit extension: not counted in the window
    windowed: bool  # the stay's own limit row has a rolling window (only such stays use up the allowance)


class _Ctx:
    def __init__(self, key: str, rules: RuleBook, end: datetime, anomaly: str | None) -> None:
        self.key = key
        self.rules = rules
        self.end = end
        # Alerts due at `end` itself still count, so an open stay is followed up to the day starting at `end`.
        self.end_day = rules.local_date(end)
        self.anomaly = anomaly
        self.out: list[Expected] = []

    def local(self, t: datetime) -> date:
        return self.rules.local_date(t)

    def alert(
        self,
        t: AlertType,
        anchor: str,
        evidence: list[str],
        due: datetime,
        reason: str,
        checkpoint: str | None = None,
        days: int | None = None,
        subject: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        if due > self.end:
            return
        self.out.append(
            Expected(
                "alert",
                alert_id(t.value, subject or self.key, anchor),
                t.value,
                self.key,
                anchor,
                evidence,
                due,
                reason,
                self.anomaly,
                checkpoint,
                days,
                details or {},
            )
        )


def traveller_truth(
    history: Iterable[Planned], *, traveller_key: str, rules: RuleBook, end: datetime, anomaly: str | None = None
) -> list[Expected]:
    """The alerts of docs/alerts.md Steps 1-6 for one traveller, due at or before `end`."""
    seen: dict[str, Planned] = {}
    for e in history:
        seen.setdefault(e.event_id, e)  # duplicates count once
    events = sorted(seen.values(), key=order_key)
    crossings = [e for e in events if isinstance(e, PlannedCrossing)]
    statuses = [e for e in events if isinstance(e, PlannedStatus)]
    registrations = [e for e in events if isinstance(e, PlannedRegistration)]
    ctx = _Ctx(traveller_key, rules, end, anomaly)

    accepted = _suspects(ctx, crossings)
    _watch_lists(ctx, crossings, statuses)
    stays = _stays(ctx, accepted)
    judged = [_judge(ctx, s, statuses) for s in stays if s.entry is not None]
    for j in judged:
        _overstay(ctx, j)
        _window(ctx, j, judged)
        _registration(ctx, j, registrations)
        _transit(ctx, j)
    return ctx.out


def _suspects(ctx: _Ctx, crossings: Sequence[PlannedCrossing]) -> list[PlannedCrossing]:
    """Step 1: flag impossible crossings; the rest are accepted for stay matching."""
    rule = ctx.rules.impossible_travel
    accepted: list[PlannedCrossing] = []
    prev: PlannedCrossing | None = None
    for c in crossings:
        if prev is not None and impossible(prev, c, rule):
            km = distance_km(prev.checkpoint, c.checkpoint)
            minutes = (c.time - prev.time).total_seconds() / 60
            ctx.alert(
                AlertType.IMPOSSIBLE_TRAVEL,
                c.event_id,
                [prev.event_id, c.event_id],
                c.time,
                f"same document at {prev.checkpoint.id} and {c.checkpoint.id}: {km:.0f} km in {minutes:.0f} min",
                c.checkpoint.id,
            )
            continue
        accepted.append(c)
        prev = c
    return accepted


def _watch_lists(ctx: _Ctx, crossings: Sequence[PlannedCrossing], statuses: Sequence[PlannedStatus]) -> None:
    """Step 6: banned entries and crossings on a document reported lost or stolen."""
    for c in crossings:
        ck = order_key(c)
        if c.direction == Direction.ENTRY and c.basis.kind != EntryBasisKind.CITIZEN:
            day = ctx.local(c.time)
            ban: tuple[PlannedStatus, date] | None = None
            for s in statuses:
                if order_key(s) >= ck:
                    break
                if s.kind == StatusChangeKind.EXPELLED:
                    # an order without an end date bans for the rules' default years from its start
                    until = s.valid_until or ctx.rules.ban.last_day(s.valid_from or ctx.local(s.time))
                    if day <= until:
                        ban = (s, until)
            if ban is not None:
                ctx.alert(
                    AlertType.BANNED_ENTRY,
                    c.event_id,
                    [ban[0].event_id, c.event_id],
                    c.time,
                    f"entry during an entry ban until {ban[1].isoformat()}",
                    c.checkpoint.id,
                )
        last: PlannedStatus | None = None
        for s in statuses:
            if order_key(s) >= ck:
                break
            if s.kind in _WATCH or s.kind == StatusChangeKind.DOCUMENT_RECOVERED:
                last = s
        if last is not None and last.kind in _WATCH:
            ctx.alert(
                AlertType.LOST_STOLEN_DOCUMENT,
                c.event_id,
                [last.event_id, c.event_id],
                c.time,
                f"{c.direction.value.lower()} on a document reported {last.kind.value.split('_')[1].lower()}",
                c.checkpoint.id,
            )


def _stays(ctx: _Ctx, accepted: Sequence[PlannedCrossing]) -> list[_Stay]:
    """Step 2: match entries and exits of a foreigner into stays (at most one open)."""
    stays: list[_Stay] = []
    open_: _Stay | None = None
    for c in accepted:
        if c.basis.kind == EntryBasisKind.CITIZEN:
            continue
        if c.direction == Direction.ENTRY:
            if open_ is not None:
                assert open_.entry is not None
                first = open_.entry
                gap = (c.time - first.time).total_seconds()
                why = (
                    "missing exit record (data gap)"
                    if first.checkpoint.id != c.checkpoint.id or gap > 3600
                    else "duplicate entry scan"
                )
                ctx.alert(
                    AlertType.DOUBLE_ENTRY,
                    c.event_id,
                    [first.event_id, c.event_id],
                    c.time,
                    f"second entry while a stay is open: {why}",
                    c.checkpoint.id,
                )
                open_.closed_at = c.time
                open_.superseded_by = c
                stays.append(open_)
            open_ = _Stay(c)
        elif open_ is not None:
            open_.exit = c
            open_.closed_at = c.time
            stays.append(open_)
            open_ = None
        else:
            if c.basis.kind not in _EXIT_WITHOUT_ENTRY_EXEMPT:
                ctx.alert(
                    AlertType.EXIT_WITHOUT_ENTRY,
                    c.event_id,
                    [c.event_id],
                    c.time,
                    "exit with no open stay (no entry recorded)",
                    c.checkpoint.id,
                )
            stays.append(_Stay(None, c, c.time))
    if open_ is not None:
        stays.append(open_)
    return stays


def _judge(ctx: _Ctx, stay: _Stay, statuses: Sequence[PlannedStatus]) -> _Judged:
    """Step 3: the last allowed day L of a stay, with permits and visa extensions applied."""
    rules = ctx.rules
    entry = stay.entry
    assert entry is not None
    first = ctx.local(entry.time)
    if stay.exit is not None:
        last = ctx.local(stay.exit.time)
    elif stay.superseded_by is not None:
        last = ctx.local(stay.superseded_by.time) - ONE_DAY
    else:
        last = ctx.end_day
    row = rules.stay_limit(entry.person.nationality, entry.basis.kind, first)
    covered: set[date] = set()
    if row.unlimited:
        return _Judged(stay, first, last, None, covered, row.has_window)

    def during(s: PlannedStatus) -> bool:
        """A status change belongs to the stay: event time in [entry time, close time)."""
        return s.time >= entry.time and (stay.closed_at is None or s.time < stay.closed_at)

    allowed: date
    if row.per_entry_from == "visa_expiry" and entry.basis.visa_expiry is not None:
        allowed = entry.basis.visa_expiry
        if entry.basis.kind == EntryBasisKind.VISA:
            for s in statuses:
                extends = s.kind == StatusChangeKind.VISA_EXTENDED and during(s) and s.valid_until is not None
                if extends and s.time <= rules.day_start(allowed + ONE_DAY):
                    assert s.valid_until is not None
                    allowed = s.valid_until
    else:
        allowed = first + timedelta(days=(row.per_entry_days or 1) - 1)

    original = allowed
    permits_rule = rules.permits
    extensions: list[_Extension] = []
    if row.per_entry_from == "permit_end":
        # The latest work permit issued before the entry (and not revoked before it) counts as issued at entry.
        held: PlannedStatus | None = None
        for s in statuses:
            if s.time >= entry.time:
                break
            if s.kind == StatusChangeKind.WORK_PERMIT_ISSUED:
                held = s
            elif permits_rule.revoke.get(s.kind.value) == StatusChangeKind.WORK_PERMIT_ISSUED.value:
                held = None
        if held is not None and held.valid_until is not None:
            extensions.append(_Extension(held.kind.value, held.valid_from or ctx.local(held.time), held.valid_until))
            allowed = max(allowed, held.valid_until)
    for s in statuses:
        if not during(s):
            continue
        kind = s.kind.value
        if kind in permits_rule.extend_stay and s.time <= rules.day_start(allowed + ONE_DAY):
            start = s.valid_from or ctx.local(s.time)
            until = s.valid_until
            if until is None and s.kind == StatusChangeKind.REFUGEE_GRANTED:
                until = start + timedelta(days=permits_rule.refugee_default_days - 1)
            if until is not None:
                extensions.append(_Extension(kind, start, until))
                allowed = max(allowed, until)
        elif kind in permits_rule.revoke:
            # The holder may stay `grace_days` after a revocation, but never less than the original stay.
            ends = ctx.local(s.time) + timedelta(days=permits_rule.grace_days)
            for ext in extensions:
                if ext.kind == permits_rule.revoke[kind] and ends < ext.until:
                    ext.until = ends
            allowed = max([original, *(ext.until for ext in extensions)])
    for ext in extensions:
        d = max(ext.start, first)
        while d <= min(ext.until, last):
            covered.add(d)
            d += ONE_DAY
    return _Judged(stay, first, last, allowed, covered, row.has_window)


def _overstay(ctx: _Ctx, j: _Judged) -> None:
    """Step 3 alerts: still inside after the last allowed day, or left after it."""
    if j.allowed_last is None:
        return
    stay, entry = j.stay, j.stay.entry
    assert entry is not None
    due = ctx.rules.day_start(j.allowed_last + ONE_DAY)
    if stay.closed_at is None or stay.closed_at >= due:
        ctx.alert(
            AlertType.IN_COUNTRY_OVERSTAY,
            entry.event_id,
            [entry.event_id],
            due,
            f"allowed stay ended on {j.allowed_last.isoformat()} and no exit has been seen",
            entry.checkpoint.id,
        )
    if stay.exit is not None:
        exit_day = ctx.local(stay.exit.time)
        if exit_day > j.allowed_last:
            over = (exit_day - j.allowed_last).days
            ctx.alert(
                AlertType.OUT_OF_COUNTRY_OVERSTAY,
                stay.exit.event_id,
                [entry.event_id, stay.exit.event_id],
                stay.exit.time,
                f"left {over} day(s) after the allowed stay ended on {j.allowed_last.isoformat()}",
                stay.exit.checkpoint.id,
                over,
            )


def _window(ctx: _Ctx, j: _Judged, judged: Sequence[_Judged]) -> None:
    """Step 4: the first day of the stay on which days present in the rolling window exceed the limit."""
    entry = j.stay.entry
    assert entry is not None
    if j.allowed_last is None:
        return
    row = ctx.rules.stay_limit(entry.person.nationality, entry.basis.kind, j.first)
    if not row.has_window:
        return
    assert row.window_days is not None and row.window_limit_days is not None
    present: dict[date, _Judged] = {}
    for other in judged:
        if not other.windowed:
            continue
        d = other.first
        while d <= other.last:
            if d not in other.covered:
                present.setdefault(d, other)
            d += ONE_DAY
    width = timedelta(days=row.window_days - 1)

    def count(day: date) -> int:
        return sum(1 for x in present if day - width <= x <= day)

    # One alert per episode (consecutive days over the limit): none for a stay that begins inside an episode an
    # earlier stay was part of - present the day before over the limit, or an earlier stay present on day 1 too.
    earlier_same_day = any(
        o is not j and o.windowed and o.first <= j.first <= o.last and j.first not in o.covered
        for o in judged
        if o.stay.entry is not None and o.stay.entry.time < entry.time
    )
    if count(j.first - ONE_DAY) > row.window_limit_days or (
        earlier_same_day and count(j.first) > row.window_limit_days
    ):
        return
    d = j.first
    last = min(j.last, j.allowed_last)
    while d <= last:
        lo = d - width
        days = [x for x in present if lo <= x <= d]
        if len(days) > row.window_limit_days:
            contributors = sorted({id(present[x]): present[x] for x in days}.values(), key=lambda o: o.first)
            evidence = [o.stay.entry.event_id for o in contributors if o.stay.entry is not None]
            # due when the person is present that day: its start, or the entry on the stay's first day
            due = entry.time if d == j.first else ctx.rules.day_start(d)
            ctx.alert(
                AlertType.WINDOW_BREACH,
                entry.event_id,
                evidence,
                due,
                f"{len(days)} days present in the {row.window_days} days to {d.isoformat()} "
                f"(limit {row.window_limit_days}); first day of the breach",
                entry.checkpoint.id,
            )
            return
        d += ONE_DAY


def _registration(ctx: _Ctx, j: _Judged, registrations: Sequence[PlannedRegistration]) -> None:
    """Step 5: no registration by the deadline (and no re-registration after a cancellation)."""
    rules = ctx.rules
    stay, entry = j.stay, j.stay.entry
    assert entry is not None
    rule = rules.registration_rule(entry.person.nationality, entry.basis.kind, entry.purpose, j.first)
    if rule is None:
        return
    cal = rules.calendar
    if rule.deadline_working_days is not None:
        n = rule.deadline_working_days
        base = j.first + timedelta(days=rule.exempt_days - 1) if rule.exempt_days > 0 else j.first
        deadline = cal.nth_working_day_after(base, n)
    else:
        assert rule.deadline_calendar_day is not None
        deadline = j.first + timedelta(days=rule.deadline_calendar_day - 1)
    due = rules.day_start(deadline + ONE_DAY)
    if stay.closed_at is None or stay.closed_at >= due:
        earliest = entry.time - ONE_DAY
        cancelled = {
            r.registration_id for r in registrations if r.action == RegistrationAction.CANCELLED and r.time < due
        }
        satisfied = any(
            r.action == RegistrationAction.REGISTERED
            and earliest <= r.time < due
            and r.registration_id not in cancelled
            for r in registrations
        )
        if not satisfied:
            ctx.alert(
                AlertType.UNREGISTERED_STAY,
                entry.event_id,
                [entry.event_id],
                due,
                f"not registered by {deadline.isoformat()} ({rule.id})",
                entry.checkpoint.id,
            )
    if not rule.reregister_working_days:
        return
    for c in registrations:
        if c.action != RegistrationAction.CANCELLED or order_key(c) <= order_key(entry):
            continue
        if stay.closed_at is not None and c.time >= stay.closed_at:
            continue
        redo_by = cal.nth_working_day_after(ctx.local(c.time), rule.reregister_working_days)
        due2 = rules.day_start(redo_by + ONE_DAY)
        if stay.closed_at is not None and stay.closed_at < due2:
            continue
        if any(
            r.action == RegistrationAction.REGISTERED and order_key(r) > order_key(c) and r.time < due2
            for r in registrations
        ):
            continue
        ctx.alert(
            AlertType.UNREGISTERED_STAY,
            c.event_id,
            [entry.event_id, c.event_id],
            due2,
            f"registration cancelled and not renewed by {redo_by.isoformat()} ({rule.id})",
            entry.checkpoint.id,
        )


def _transit(ctx: _Ctx, j: _Judged) -> None:
    """Step 6: a declared transit that lasts too long or leaves through the wrong checkpoint."""
    stay, entry = j.stay, j.stay.entry
    assert entry is not None
    if entry.purpose != Purpose.TRANSIT:
        return
    rule = ctx.rules.transit_rule(j.first)
    if rule is None:
        return
    due = entry.time + timedelta(hours=rule.window_hours)
    if stay.closed_at is None or stay.closed_at >= due:
        ctx.alert(
            AlertType.TRANSIT_OVERSTAY,
            entry.event_id,
            [entry.event_id],
            due,
            f"declared transit still inside after {rule.window_hours} h",
            entry.checkpoint.id,
        )
    if stay.exit is not None:
        allowed = set(rule.routes.get(entry.declared_destination or "", frozenset()))
        if entry.planned_exit_checkpoint:
            allowed.add(entry.planned_exit_checkpoint)
        if allowed and stay.exit.checkpoint.id not in allowed:  # nothing to compare with: no alert
            ctx.alert(
                AlertType.WRONG_ROUTE_EXIT,
                stay.exit.event_id,
                [entry.event_id, stay.exit.event_id],
                stay.exit.time,
                f"transit to {entry.declared_destination} left through {stay.exit.checkpoint.id}, not on its route",
                stay.exit.checkpoint.id,
            )


# --- one address (Step 7) ------------------------------------------------------------------------------------


def address_truth(
    registrations: Iterable[PlannedRegistration],
    *,
    rules: RuleBook,
    pseudonym_key: bytes,
    end: datetime,
    anomaly: str | None = None,
) -> list[Expected]:
    """FICTITIOUS_ADDRESS alerts over every registration at any number of addresses, due at or before `end`."""
    by_address: dict[str, list[PlannedRegistration]] = {}
    seen: set[str] = set()
    exempt = rules.address.exempt_host_kinds
    for r in registrations:
        if r.event_id in seen or r.host_kind.value in exempt:
            continue
        seen.add(r.event_id)
        by_address.setdefault(address_key(r.region, r.address, pseudonym_key), []).append(r)
    out: list[Expected] = []
    for key, regs in by_address.items():
        ctx = _Ctx("", rules, end, anomaly)
        active: dict[str, PlannedRegistration] = {}
        above = False
        for r in sorted(regs, key=order_key):
            if r.action == RegistrationAction.CANCELLED:
                active.pop(r.registration_id, None)
                continue
            active[r.registration_id] = r
            threshold = rules.address.threshold.get(r.host_kind.value)
            if threshold is None:
                continue
            day = r.valid_from
            count = len({a.person.key for a in active.values() if a.valid_from <= day <= a.valid_until})
            if count > threshold and not above:
                ctx.key = r.person.key
                ctx.alert(
                    AlertType.FICTITIOUS_ADDRESS,
                    r.event_id,
                    [a.event_id for a in sorted(active.values(), key=order_key)],
                    r.time,
                    f"{count} foreigners registered at one address on {day.isoformat()} (limit {threshold})",
                    subject=key,
                    details={"address_key": key, "count": str(count)},
                )
            above = count > threshold
        out.extend(ctx.out)
    return out


# --- the analysts' figures -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What the warehouse must report for a run (docs/warehouse.md, "Overstay figures"), each figure a mapping
    from its key to its value; `shekara evaluate` compares them with the warehouse's, exactly.

    Overstays are judged as of the start (00:00 Asia/Almaty) of a day D: a stay is overdue when its last allowed
    day L is before D; the person is in the country when neither an exit nor a superseding entry came before D
    00:00; an exit before then on a day after L is an out-of-country overstay.
    """

    flows: dict[tuple[date, str, str], int]  # (day, checkpoint, ENTRY/EXIT) -> crossings
    open_overstays: dict[date, int]  # as-of day -> travellers in the country past their last allowed day
    overstay_rates: dict[tuple[date, str], tuple[int, int, int]]  # (month of L, nationality) -> (due, out, in)
    rates_as_of: date | None  # the day the overstay rates are judged at
    registrations: dict[tuple[date, str, str], tuple[int, int, int, int]]  # (month filed, region, host kind) ->
    # (registrations, on time, late, no deadline)

    def sizes(self) -> dict[str, int]:
        return {
            "daily entries/exits per checkpoint": len(self.flows),
            "open overstays per day": len(self.open_overstays),
            "overstay rates per month and nationality": len(self.overstay_rates),
            "registration compliance per month, region and host kind": len(self.registrations),
        }


def figures(events: Iterable[Planned], *, rules: RuleBook, end: datetime, as_of: Sequence[date]) -> Figures:
    """The figures of a run's valid events (duplicates count once), as the rules read them: flows of every
    crossing; open overstays at each day of `as_of`; overstay rates at its last day; registration compliance."""
    seen: dict[str, Planned] = {}
    for e in events:
        seen.setdefault(e.event_id, e)
    flows: dict[tuple[date, str, str], int] = {}
    by_person: dict[str, list[Planned]] = {}
    person = _first_documents(seen.values())
    regs: dict[tuple[date, str, str], list[int]] = {}
    for e in seen.values():
        by_person.setdefault(person.get(e.person.key, e.person.key), []).append(e)
        if isinstance(e, PlannedCrossing):
            k = (rules.local_date(e.time), e.checkpoint.id, e.direction.value)
            flows[k] = flows.get(k, 0) + 1
        elif isinstance(e, PlannedRegistration) and e.action == RegistrationAction.REGISTERED:
            filed = rules.local_date(e.time)
            row = regs.setdefault((filed.replace(day=1), e.region, e.host_kind.value), [0, 0, 0, 0])
            deadline = _filing_deadline(rules, e)
            row[0] += 1
            if deadline is None:
                row[3] += 1
            elif filed > deadline:
                row[2] += 1
            else:
                row[1] += 1
    judged: list[tuple[str, _Judged]] = []
    for key, history in by_person.items():
        ordered = sorted(history, key=order_key)
        ctx = _Ctx(key, rules, end, None)
        accepted = _suspects(ctx, [e for e in ordered if isinstance(e, PlannedCrossing)])
        statuses = [e for e in ordered if isinstance(e, PlannedStatus)]
        for s in _stays(ctx, accepted):
            if s.entry is not None:
                j = _judge(ctx, s, statuses)
                if j.allowed_last is not None:
                    judged.append((key, j))
    open_overstays = {d: len({k for k, j in judged if _in_country(rules, j, d)}) for d in as_of}
    rates: dict[tuple[date, str], tuple[int, int, int]] = {}
    last = max(as_of) if as_of else None
    if last is not None:
        start = rules.day_start(last)
        for _, j in judged:
            assert j.allowed_last is not None and j.stay.entry is not None
            if j.allowed_last >= last:
                continue
            ex = j.stay.exit
            late = ex is not None and ex.time <= start and rules.local_date(ex.time) > j.allowed_last
            k2 = (j.allowed_last.replace(day=1), j.stay.entry.person.nationality)
            due, out, inside = rates.get(k2, (0, 0, 0))
            rates[k2] = (due + 1, out + int(late), inside + int(_in_country(rules, j, last)))
    return Figures(
        flows,
        open_overstays,
        rates,
        last,
        {k: (v[0], v[1], v[2], v[3]) for k, v in regs.items()},
    )


def _first_documents(events: Iterable[Planned]) -> dict[str, str]:
    """Traveller key of a renewed document -> that of the holder's first document (DOCUMENT_REPLACED, followed
    back through chains): one person's stays whichever passport each crossing was on (docs/alerts.md)."""
    before = {
        e.new_person.key: e.person.key
        for e in events
        if isinstance(e, PlannedStatus) and e.kind == StatusChangeKind.DOCUMENT_REPLACED and e.new_person is not None
    }
    out: dict[str, str] = {}
    for key in before:
        first, seen = key, {key}
        while first in before and before[first] not in seen:
            first = before[first]
            seen.add(first)
        out[key] = first
    return out


def _in_country(rules: RuleBook, j: _Judged, d: date) -> bool:
    """Past the last allowed day at the start of `d`, with no exit or new entry before then."""
    assert j.allowed_last is not None
    closed = j.stay.closed_at
    return j.allowed_last < d and (closed is None or closed > rules.day_start(d))


def _filing_deadline(rules: RuleBook, r: PlannedRegistration) -> date | None:
    """The last day to file for an arrival at the address on `valid_from`, by the rule for the traveller's
    nationality (a registration does not say on what basis the person came: the general reading applies)."""
    rule = rules.registration_rule(r.person.nationality, EntryBasisKind.VISA_FREE, Purpose.TOURISM, r.valid_from)
    if rule is None:
        return None
    if rule.deadline_calendar_day is not None:
        return r.valid_from + timedelta(days=rule.deadline_calendar_day - 1)
    assert rule.deadline_working_days is not None
    base = r.valid_from + timedelta(days=rule.exempt_days - 1) if rule.exempt_days > 0 else r.valid_from
    return rules.calendar.nth_working_day_after(base, rule.deadline_working_days)
