"""Alert and Stay records from candidates: severity from the rules, a reason a person can act on, details.

Only called when something is emitted, so the cost of formatting falls on the few anomalies, not on every
event.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from schemas.ids import alert_id, stay_id
from schemas.records import Alert, AlertAction, AlertType, EntryBasisKind, Purpose, Stay
from streams.core.context import Context
from streams.core.model import (
    C_ANCHOR,
    C_CP,
    C_DAYS,
    C_DUE,
    C_EVIDENCE,
    C_NAT,
    C_PARAMS,
    C_RULE,
    C_RULE_V,
    C_TYPE,
    ST_ALLOWED,
    ST_ANCHOR,
    ST_ANCHOR_T,
    ST_BASIS,
    ST_DAYS,
    ST_ENTRY_CP,
    ST_ENTRY_ID,
    ST_ENTRY_T,
    ST_EXIT_CP,
    ST_EXIT_ID,
    ST_EXIT_T,
    ST_NAT,
    ST_OVER,
    ST_PURPOSE,
    ST_RULE,
    ST_RULE_V,
    Candidate,
    StayCandidate,
    from_us,
)

_BASES = {b.value: b for b in EntryBasisKind}
_PURPOSES = {p.value: p for p in Purpose}
VOID_RULE = "void"  # rule id of a stay revision that late data showed never existed
_DAY_PARAMS = frozenset({"last", "deadline", "day", "cancelled_day", "until", "expelled_day", "lost_day"})
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


def describe(ctx: Context, c: Candidate, action: AlertAction) -> str:
    """One sentence on why the alert exists (and, for RESOLVED/RETRACTED, what changed)."""
    p: dict[str, Any] = c[C_PARAMS]
    kind = c[C_TYPE]
    nat = c[C_NAT]
    due = _local(ctx, c[C_DUE])
    basis = _BASIS.get(str(p.get("basis")), str(p.get("basis")).lower())
    if kind == AlertType.IN_COUNTRY_OVERSTAY:
        allowed = p["allowed"]
        if p.get("days") is not None:
            head = f"Stayed {p['days']} days against a {allowed}-day limit ({basis}, {nat})"
        else:
            head = f"Still in the country past a {allowed}-day limit ({basis}, {nat})"
        text = f"{head}; day {allowed + 1} began {due} Asia/Almaty with no exit recorded"
        end = _closing(ctx, p)
        if action == AlertAction.RESOLVED and end:
            text += f"; resolved: {end}"
    elif kind == AlertType.OUT_OF_COUNTRY_OVERSTAY:
        text = (
            f"Left on day {p['days']} against a {p['allowed']}-day limit ({basis}, {nat}): "
            f"{c[C_DAYS]} days overstayed; exit at {c[C_CP]} {due} Asia/Almaty"
        )
    elif kind == AlertType.WINDOW_BREACH:
        text = (
            f"{p['count']} days present in the {p['window']} days to {_day(p['day'])} against a limit of "
            f"{p['limit']} ({basis}, {nat}); day {_day(p['day'])} began {due} Asia/Almaty with the person present"
        )
        if action == AlertAction.RESOLVED and p.get("close_t") is not None:
            text += f"; resolved: {_closing(ctx, p)}"
    elif kind == AlertType.UNREGISTERED_STAY:
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
        text += f"; deadline passed {due} Asia/Almaty with no exit recorded"
        if action == AlertAction.RESOLVED:
            if p.get("late_t") is not None:
                text += f"; resolved: registration recorded {_local(ctx, p['late_t'])} Asia/Almaty"
            elif p.get("close_t") is not None:
                text += f"; resolved: {_closing(ctx, p)}"
    elif kind == AlertType.TRANSIT_OVERSTAY:
        text = (
            f"Declared transit to {p.get('dest')}: no exit within the {p['hours']}-hour transit window, "
            f"which ended {due} Asia/Almaty"
        )
        if action == AlertAction.RESOLVED and p.get("close_t") is not None:
            text += f"; resolved: {_closing(ctx, p)}"
    elif kind == AlertType.WRONG_ROUTE_EXIT:
        text = (
            f"Declared transit to {p.get('dest')} (planned exit {p.get('planned') or 'none'}): left through "
            f"{c[C_CP]} at {due} Asia/Almaty, not a designated exit ({p['allowed']})"
        )
    elif kind == AlertType.EXIT_WITHOUT_ENTRY:
        text = f"Exit at {c[C_CP]} {due} Asia/Almaty with no recorded entry (no open stay)"
    elif kind == AlertType.DOUBLE_ENTRY:
        likely = "missing exit record (data gap)" if p["likely"] == "data_gap" else "duplicate entry scan"
        text = (
            f"Entry at {c[C_CP]} {due} Asia/Almaty while the stay entered at {p['prev_cp']} "
            f"{_local(ctx, p['prev_t'])} was still open: {likely}"
        )
    elif kind == AlertType.IMPOSSIBLE_TRAVEL:
        speed = p["km"] / p["hours"] if p["hours"] > 0 else float("inf")
        text = (
            f"{p['km']:.0f} km from {p['prev_cp']} to {c[C_CP]} in {p['hours']:.2f} h ({speed:.0f} km/h, "
            f"{p['mode']} limit {p['limit_kmh']:.0f} km/h); probably a cloned document, "
            "so the crossing is excluded from matching"
        )
    elif kind == AlertType.BANNED_ENTRY:
        text = (
            f"Entry at {c[C_CP]} {due} Asia/Almaty under an entry ban until {_day(p['until'])} "
            f"(expelled {_day(p['expelled_day'])})"
        )
    elif kind == AlertType.LOST_STOLEN_DOCUMENT:
        status = "stolen" if p["status"] == "DOCUMENT_STOLEN" else "lost"
        text = (
            f"{p['direction'].capitalize()} at {c[C_CP]} {due} Asia/Almaty on a document reported {status} "
            f"on {_day(p['lost_day'])}"
        )
    elif kind == AlertType.FICTITIOUS_ADDRESS:
        text = (
            f"{p['count']} distinct foreigners registered at one {p['host_kind'].lower().replace('_', ' ')} "
            f"address valid on {_day(p['day'])}, above the threshold of {p['threshold']}"
        )
    else:  # pragma: no cover - every AlertType is handled above
        text = kind
    if action == AlertAction.RETRACTED:
        return f"Retracted: later data shows this was never due ({text})"
    return text


def details(ctx: Context, c: Candidate) -> dict[str, str]:
    out = {"rules_version": ctx.version, "anchor_event_id": str(c[C_ANCHOR])}
    for k, v in c[C_PARAMS].items():
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
    c: Candidate,
    action: AlertAction,
    emitted_time: datetime,
    subject_key: str | None = None,
) -> Alert:
    """The record for `c`; its id is derived from the subject (the traveller, or the address for
    FICTITIOUS_ADDRESS), the type and the anchor event."""
    return Alert(
        alert_id=alert_id(c[C_TYPE], subject_key or traveller_key, c[C_ANCHOR]),
        action=action,
        type=AlertType(c[C_TYPE]),
        severity=ctx.severity[c[C_TYPE]],
        traveller_key=traveller_key,
        nationality=c[C_NAT],
        checkpoint_id=c[C_CP],
        evidence_event_ids=list(c[C_EVIDENCE]),
        rule_id=c[C_RULE],
        rule_version=c[C_RULE_V],
        reason=describe(ctx, c, action),
        due_time=from_us(c[C_DUE]),
        emitted_time=emitted_time,
        days_overstayed=c[C_DAYS],
        details=details(ctx, c),
    )


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def stay_record(traveller_key: str, s: StayCandidate, revision: int) -> Stay:
    return Stay(
        stay_id=stay_id(traveller_key, s[ST_ANCHOR]),
        revision=revision,
        traveller_key=traveller_key,
        nationality=s[ST_NAT],
        entry_basis=_BASES[s[ST_BASIS]],
        purpose=_PURPOSES[s[ST_PURPOSE]],
        entry_event_id=s[ST_ENTRY_ID],
        exit_event_id=s[ST_EXIT_ID],
        entry_time=_opt_time(s[ST_ENTRY_T]),
        exit_time=_opt_time(s[ST_EXIT_T]),
        entry_checkpoint=s[ST_ENTRY_CP],
        exit_checkpoint=s[ST_EXIT_CP],
        days=s[ST_DAYS],
        allowed_days=s[ST_ALLOWED],
        days_over=s[ST_OVER],
        rule_id=s[ST_RULE],
        rule_version=s[ST_RULE_V],
        anchor_time=from_us(s[ST_ANCHOR_T]),
    )


def void_stay_record(
    ctx: Context,
    traveller_key: str,
    anchor: str,
    anchor_time: int,
    nationality: str,
    basis: str,
    purpose: str,
    revision: int,
) -> Stay:
    """A stay that late data showed never existed: same id and anchor time, next revision, no events, no days."""
    return Stay(
        stay_id=stay_id(traveller_key, anchor),
        revision=revision,
        traveller_key=traveller_key,
        nationality=nationality,
        entry_basis=_BASES[basis],
        purpose=_PURPOSES[purpose],
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
        anchor_time=from_us(anchor_time),
    )
