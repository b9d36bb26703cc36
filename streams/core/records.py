"""Alert and Stay records from candidates: severity from the rules, a reason a person can act on, details.

Only called when something is emitted, so the cost of formatting falls on the few anomalies, not on every
event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from schemas.ids import alert_id, stay_id
from schemas.records import Alert, AlertAction, AlertType, EntryBasisKind, Purpose, Stay
from streams.core.context import Context
from streams.core.model import AlertCandidate, EmittedStay, StayCandidate, from_us
from streams.core.outcome import OPEN

_BASES = {b.value: b for b in EntryBasisKind}
_PURPOSES = {p.value: p for p in Purpose}
VOID_RULE = "void"  # rule id of a stay revision that late data showed never existed
_DAY_PARAMS = frozenset({"last", "deadline", "day", "cancelled_day", "until", "expelled_day", "lost_day", "entry_day"})
_TIME_PARAMS = frozenset({"close_t", "late_t", "prev_t"})
_BASIS = {
    "VISA_FREE": "visa-free",
    "VISA": "visa",
    "WORK_PERMIT": "work permit",
    "RESIDENCE_PERMIT": "residence permit",
    "REFUGEE": "refugee",
    "DIPLOMATIC": "diplomatic",
    "CITIZEN": "citizen",
}


def _day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _local(ctx: Context, us: int) -> str:
    return from_us(us).astimezone(ctx.rules.timezone).strftime("%Y-%m-%d %H:%M")


def _closing(ctx: Context, p: dict[str, Any]) -> str:
    if p.get("close_t") is None:
        return ""
    what = "exit" if p.get("closed_by") == "exit" else "a new entry"
    return f"{what} recorded at {p.get('close_cp')} {_local(ctx, p['close_t'])} Asia/Almaty"


@dataclass(frozen=True, slots=True)
class _Told:
    """What every reason is written from: the candidate, its parameters and the common phrases."""

    ctx: Context
    c: AlertCandidate
    action: AlertAction
    p: dict[str, Any]
    nat: str
    due: str  # the due time, local
    basis: str  # the entry basis, in words

    @property
    def resolved(self) -> bool:
        return self.action == AlertAction.RESOLVED

    def closing(self) -> str:
        return _closing(self.ctx, self.p)


def _in_country_overstay(w: _Told) -> str:
    p, allowed = w.p, w.p["allowed"]
    if p.get("days") is not None:
        head = f"Stayed {p['days']} days against a {allowed}-day limit ({w.basis}, {w.nat})"
    else:
        head = f"Still in the country past a {allowed}-day limit ({w.basis}, {w.nat})"
    text = f"{head}; day {allowed + 1} began {w.due} Asia/Almaty with no exit recorded"
    end = w.closing()
    return f"{text}; resolved: {end}" if w.resolved and end else text


def _out_of_country_overstay(w: _Told) -> str:
    return (
        f"Left on day {w.p['days']} against a {w.p['allowed']}-day limit ({w.basis}, {w.nat}): "
        f"{w.c.days_overstayed} days overstayed; exit at {w.c.checkpoint} {w.due} Asia/Almaty"
    )


def _window_breach(w: _Told) -> str:
    p = w.p
    day = _day(p["day"])
    text = (
        f"{p['count']} days present in the {p['window']} days to {day} against a limit of {p['limit']} "
        f"({w.basis}, {w.nat})"
    )
    if p.get("entry_day") == p["day"]:
        text += f"; entered at {p.get('entry_cp')} {w.due} Asia/Almaty that day"
    elif p.get("entry_day") is not None:
        text += (
            f"; in the country since the entry at {p.get('entry_cp')} on {_day(p['entry_day'])}, "
            f"so present when {day} began {w.due} Asia/Almaty"
        )
    text += "; one alert while the count stays above the limit"
    return f"{text}; resolved: {w.closing()}" if w.resolved and p.get("close_t") is not None else text


def _unregistered_stay(w: _Told) -> str:
    p, nat = w.p, w.nat
    if p.get("reregister_days"):
        text = (
            f"Registration cancelled on {_day(p['cancelled_day'])} and no new one within "
            f"{p['reregister_days']} working days (by {_day(p['deadline'])}) while still in the country ({nat})"
        )
    elif p.get("calendar_day"):
        text = f"Not registered by day {p['calendar_day']} of the stay ({_day(p['deadline'])}; {nat})"
    else:
        exempt = f" after a {p['exempt_days']}-day exemption" if p.get("exempt_days") else ""
        text = (
            f"Not registered within {p['working_days']} working days of arrival{exempt} "
            f"(deadline {_day(p['deadline'])}; {nat})"
        )
    text += f"; deadline passed {w.due} Asia/Almaty with no exit recorded"
    if w.resolved:
        if p.get("late_t") is not None:
            text += f"; resolved: registration recorded {_local(w.ctx, p['late_t'])} Asia/Almaty"
        elif p.get("close_t") is not None:
            text += f"; resolved: {w.closing()}"
    return text


def _transit_overstay(w: _Told) -> str:
    text = (
        f"Declared transit to {w.p.get('dest')}: no exit within the {w.p['hours']}-hour transit window, "
        f"which ended {w.due} Asia/Almaty"
    )
    return f"{text}; resolved: {w.closing()}" if w.resolved and w.p.get("close_t") is not None else text


def _wrong_route_exit(w: _Told) -> str:
    return (
        f"Declared transit to {w.p.get('dest')} (planned exit {w.p.get('planned') or 'none'}): left through "
        f"{w.c.checkpoint} at {w.due} Asia/Almaty, not a designated exit ({w.p['allowed']})"
    )


def _exit_without_entry(w: _Told) -> str:
    return f"Exit at {w.c.checkpoint} {w.due} Asia/Almaty with no recorded entry (no open stay)"


def _double_entry(w: _Told) -> str:
    p = w.p
    likely = "missing exit record (data gap)" if p["likely"] == "data_gap" else "duplicate entry scan"
    return (
        f"Entry at {w.c.checkpoint} {w.due} Asia/Almaty while the stay entered at {p['prev_cp']} "
        f"{_local(w.ctx, p['prev_t'])} was still open: {likely}"
    )


def _duration(minutes: int) -> str:
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _impossible_travel(w: _Told) -> str:
    p = w.p
    km, limit, overhead = p["km"], p["limit_kmh"], p.get("overhead_min") or 0
    # elapsed rounded down and the time needed rounded up, so the words never show the two as equal
    elapsed = (w.c.anchor_t - p["prev_t"]) // 60_000_000
    needed = p.get("needed_min") or math.ceil(km / limit * 60 + overhead)
    by = (
        f"{km:.0f} km at {limit:.0f} km/h by air plus {overhead:.0f} min for boarding and checks"
        if p["mode"] == "air"
        else f"{km:.0f} km at {limit:.0f} km/h by road or rail"
    )
    return (
        f"{km:.0f} km from {p['prev_cp']} to {w.c.checkpoint} in {_duration(elapsed)}; the fastest plausible "
        f"trip takes {_duration(needed)} ({by}); probably a cloned document, so the crossing is excluded from matching"
    )


def _banned_entry(w: _Told) -> str:
    return (
        f"Entry at {w.c.checkpoint} {w.due} Asia/Almaty under an entry ban until {_day(w.p['until'])} "
        f"(expelled {_day(w.p['expelled_day'])})"
    )


def _lost_stolen_document(w: _Told) -> str:
    p = w.p
    status = "stolen" if p["status"] == "DOCUMENT_STOLEN" else "lost"
    return (
        f"{p['direction'].capitalize()} at {w.c.checkpoint} {w.due} Asia/Almaty on a document reported {status} "
        f"on {_day(p['lost_day'])}"
    )


def _fictitious_address(w: _Told) -> str:
    p = w.p
    return (
        f"{p['count']} distinct foreigners registered at one {p['host_kind'].lower().replace('_', ' ')} "
        f"address valid on {_day(p['day'])}, above the threshold of {p['threshold']}"
    )


_REASONS: dict[str, Callable[[_Told], str]] = {
    AlertType.IN_COUNTRY_OVERSTAY.value: _in_country_overstay,
    AlertType.OUT_OF_COUNTRY_OVERSTAY.value: _out_of_country_overstay,
    AlertType.WINDOW_BREACH.value: _window_breach,
    AlertType.UNREGISTERED_STAY.value: _unregistered_stay,
    AlertType.TRANSIT_OVERSTAY.value: _transit_overstay,
    AlertType.WRONG_ROUTE_EXIT.value: _wrong_route_exit,
    AlertType.EXIT_WITHOUT_ENTRY.value: _exit_without_entry,
    AlertType.DOUBLE_ENTRY.value: _double_entry,
    AlertType.IMPOSSIBLE_TRAVEL.value: _impossible_travel,
    AlertType.BANNED_ENTRY.value: _banned_entry,
    AlertType.LOST_STOLEN_DOCUMENT.value: _lost_stolen_document,
    AlertType.FICTITIOUS_ADDRESS.value: _fictitious_address,
}


def describe(ctx: Context, c: AlertCandidate, action: AlertAction) -> str:
    """One sentence on why the alert exists (and, for RESOLVED/RETRACTED, what changed)."""
    p: dict[str, Any] = c.params
    basis = _BASIS.get(str(p.get("basis")), str(p.get("basis")).lower())
    told = _Told(ctx, c, action, p, c.nationality, _local(ctx, c.due), basis)
    reason = _REASONS.get(c.type)
    text = reason(told) if reason is not None else c.type
    if action == AlertAction.RETRACTED:
        return f"Retracted: later data shows this was never due ({text})"
    return text


def details(ctx: Context, c: AlertCandidate) -> dict[str, str]:
    out = {"rules_version": ctx.version, "anchor_event_id": str(c.anchor)}
    for k, v in c.params.items():
        if v is None:
            continue
        if k in _DAY_PARAMS:
            out[k] = _day(v)
        elif k in _TIME_PARAMS:
            out[k] = from_us(v).isoformat()
        else:
            out[k] = str(v)
    return out


def alert_record(
    ctx: Context,
    traveller_key: str,
    c: AlertCandidate,
    action: AlertAction,
    emitted_time: datetime,
    subject_key: str | None = None,
    *,
    revision: int,
) -> Alert:
    """The record for `c`; its id is derived from the subject (the traveller, or the address for
    FICTITIOUS_ADDRESS), the type and the anchor event. `revision` is the next of that id (model.next_revision):
    the warehouse keeps every record and reads the alert's state from its highest revision."""
    return Alert(
        alert_id=alert_id(c.type, subject_key or traveller_key, c.anchor),
        action=action,
        type=AlertType(c.type),
        severity=ctx.severity[c.type],
        traveller_key=traveller_key,
        nationality=c.nationality,
        checkpoint_id=c.checkpoint,
        evidence_event_ids=list(c.evidence),
        rule_id=c.rule_id,
        rule_version=c.rule_version,
        reason=describe(ctx, c, action),
        due_time=from_us(c.due),
        emitted_time=emitted_time,
        days_overstayed=c.days_overstayed,
        details=details(ctx, c),
        revision=revision,
    )


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def stay_record(traveller_key: str, s: StayCandidate, revision: int) -> Stay:
    return Stay(
        stay_id=stay_id(traveller_key, s.anchor),
        revision=revision,
        traveller_key=traveller_key,
        nationality=s.nationality,
        entry_basis=_BASES[s.basis],
        purpose=_PURPOSES[s.purpose],
        entry_event_id=s.entry_id,
        exit_event_id=s.exit_id,
        entry_time=_opt_time(s.entry_t),
        exit_time=_opt_time(s.exit_t),
        entry_checkpoint=s.entry_checkpoint,
        exit_checkpoint=s.exit_checkpoint,
        days=s.days,
        allowed_days=s.allowed_days,
        days_over=s.days_over,
        rule_id=s.rule_id,
        rule_version=s.rule_version,
        anchor_time=from_us(s.anchor_t),
        close_time=None if s.gated == OPEN else from_us(s.close_t),
    )


def void_stay_record(ctx: Context, traveller_key: str, anchor: str, revision: int, last: EmittedStay) -> Stay:
    """A stay that late data showed never existed: same id and anchor time, next revision, no events, no days."""
    return Stay(
        stay_id=stay_id(traveller_key, anchor),
        revision=revision,
        traveller_key=traveller_key,
        nationality=last.nationality,
        entry_basis=_BASES[last.basis],
        purpose=_PURPOSES[last.purpose],
        entry_event_id=None,
        exit_event_id=None,
        entry_time=None,
        exit_time=None,
        entry_checkpoint=None,
        exit_checkpoint=None,
        days=0,
        allowed_days=None,
        days_over=0,
        rule_id=VOID_RULE,
        rule_version=ctx.version,
        anchor_time=from_us(last.anchor_t),
    )
