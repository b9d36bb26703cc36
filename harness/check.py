"""`shekara check FILE [--as-of DAY]`: one traveller's events in; stays, allowed days, deadlines and alerts out.

It answers "why was this person flagged" the way the processors would: the events go through the same pure core
(`streams.core.step`) with the watermark at the end of the as-of day, so every alert, stay and deadline shown is
one the processors raise, emit or wait for, with the rule row that decided it and the processors' own reason.
No broker, no warehouse. The file is read and validated exactly as `shekara publish` reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from producers.publish import Rejection, read_events
from schemas.records import Alert, AlertAction, AlertType, Crossing, Stay
from schemas.validation import ValidationError
from shekara.pseudonym import partition_key, traveller_key_of
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from streams.core import Event, Retention, TravellerState, step
from streams.core.allowed import allowed_stay
from streams.core.context import Context, context_for
from streams.core.identity import person_keys
from streams.core.model import AlertCandidate, OpenStay, from_us
from streams.core.records import VOID_RULE
from streams.core.window import counted_segments

# Everything in one step, never folded: a checked file is one person's history, and folding changes nothing.
_WHOLE = Retention(reorder_seconds=100 * 365 * 24 * 3600, max_events=1 << 30)
_UNLESS = {  # what stops a pending deadline alert, in the words of docs/alerts.md
    AlertType.IN_COUNTRY_OVERSTAY.value: "unless an exit is recorded before then",
    AlertType.UNREGISTERED_STAY.value: "unless a registration or an exit is recorded before then",
    AlertType.WINDOW_BREACH.value: "unless an exit is recorded before then",
    AlertType.TRANSIT_OVERSTAY.value: "unless an exit is recorded before then",
}


@dataclass(frozen=True, slots=True)
class Deadline:
    """An alert the history implies that is not due yet at the end of the as-of day."""

    type: str
    due: datetime
    rule_id: str
    rule_version: str
    unless: str


@dataclass(frozen=True, slots=True)
class OpenStayView:
    """The stay still open at the end of the as-of day, as the core sees it."""

    entry_event_id: str
    entry_time: datetime
    entry_checkpoint: str
    basis: str
    purpose: str
    day: int  # day of the stay on the as-of day (day of entry = day 1)
    allowed_days: int | None  # None: no limit
    last_allowed_day: date | None
    rule_id: str
    rule_version: str
    registration_rule: str | None  # None: exempt
    registration_deadline: date | None
    registration: str  # exempt, registered, due, missed


@dataclass(frozen=True, slots=True)
class WindowView:
    """Days present in the rolling window ending on the as-of day (the EU calculator's question)."""

    rule_id: str
    window_days: int
    limit_days: int
    present: int

    @property
    def left(self) -> int:
        return max(0, self.limit_days - self.present)


@dataclass
class TravellerCheck:
    document: str  # "PASSPORT UZB N1234567"
    nationality: str
    traveller_key: str
    events: int
    stays: list[Stay] = field(default_factory=list)  # closed stays (and superseded ones), last revision
    open_stay: OpenStayView | None = None
    window: WindowView | None = None
    alerts: list[Alert] = field(default_factory=list)  # last record of each alert raised by the as-of day
    deadlines: list[Deadline] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # events the core could not apply, with why


@dataclass
class CheckReport:
    as_of: date
    read: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    after_as_of: int = 0  # valid events later than the as-of day: left out
    travellers: list[TravellerCheck] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return self.read - len(self.rejections)


def check_file(
    path: Path,
    *,
    as_of: date,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
    key: bytes,
    now: datetime | None = None,
) -> CheckReport:
    """Read `path` as `shekara publish` does, then judge each traveller's valid events up to the as-of day."""
    report = CheckReport(as_of)
    events: list[Event] = []
    end = rules.day_start(as_of + timedelta(days=1))
    for item in read_events(path, now=now):
        report.read += 1
        if isinstance(item.result, ValidationError):
            report.rejections.append(Rejection.of(item.line, item.result))
        elif item.result.event_time >= end:  # type: ignore[union-attr]
            report.after_as_of += 1
        else:
            events.append(item.result)  # type: ignore[arg-type]
    report.travellers = check_events(events, as_of=as_of, rules=rules, checkpoints=checkpoints, key=key, now=now)
    return report


def check_events(
    events: Sequence[Event],
    *,
    as_of: date,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
    key: bytes,
    now: datetime | None = None,
) -> list[TravellerCheck]:
    """Each traveller's (by document, as the processors key them) stays, alerts and deadlines at the end of
    the as-of day."""
    by_key: dict[str, list[Event]] = {}
    person = person_keys(events)  # a renewed document goes on with its first document's key, as the processors
    for ev in events:
        doc = ev.traveller.document
        by_key.setdefault(traveller_key_of(person(partition_key(doc.issuing_country, doc.number)), key), []).append(ev)
    ctx = context_for(rules, checkpoints)
    # The watermark at the last instant of the as-of day: what is due by then has fired, what is due at
    # midnight after it (a last allowed day ending) is still a deadline.
    watermark = rules.day_start(as_of + timedelta(days=1)) - timedelta(microseconds=1)
    emitted = now or datetime.now(UTC)
    out = []
    for tk, evs in by_key.items():
        result = step(
            TravellerState.empty(tk),
            evs,
            watermark=watermark,
            emitted_time=emitted,
            rules=rules,
            checkpoints=checkpoints,
            retention=_WHOLE,
        )
        doc = evs[0].traveller.document
        check = TravellerCheck(
            document=f"{doc.type} {doc.issuing_country} {doc.number}",
            nationality=evs[0].traveller.nationality,
            traveller_key=tk,
            events=len(evs),
            stays=_last_revisions(result.stays),
            alerts=_last_records(result.alerts),
            deadlines=sorted(
                (_deadline(c) for c in result.state.pending.values() if c.type in _UNLESS), key=lambda d: d.due
            ),
            refused=[f"{ev.event_id}: {why}" for ev, why in result.rejected],
        )
        stay = result.state.cursor.open
        if stay is not None:
            check.open_stay = _open_view(ctx, stay, as_of, result.state.pending, check.alerts)
        check.window = _window(ctx, result.state, as_of, evs)
        out.append(check)
    return out


def _last_revisions(stays: Iterable[Stay]) -> list[Stay]:
    last: dict[str, Stay] = {}
    for s in stays:
        if s.stay_id not in last or s.revision > last[s.stay_id].revision:
            last[s.stay_id] = s
    # an open stay's record (emitted once overdue, no close yet) is shown as the open stay, not as a stay
    live = [s for s in last.values() if s.rule_id != VOID_RULE and s.close_time is not None]
    return sorted(live, key=lambda s: s.anchor_time)


def _last_records(alerts: Iterable[Alert]) -> list[Alert]:
    """The last record of each alert id; alerts retracted in the end are left out (they were never due)."""
    last: dict[str, Alert] = {}
    for a in alerts:
        last[a.alert_id] = a
    return sorted((a for a in last.values() if a.action != AlertAction.RETRACTED), key=lambda a: a.due_time)


def _deadline(c: AlertCandidate) -> Deadline:
    return Deadline(c.type, from_us(c.due), c.rule_id, c.rule_version, _UNLESS[c.type])


def _open_view(
    ctx: Context, stay: OpenStay, as_of: date, pending: Mapping[str, AlertCandidate], alerts: Sequence[Alert]
) -> OpenStayView:
    entry = stay.entry
    allowed = allowed_stay(ctx, stay, None)
    first = date.fromordinal(entry.day)
    last = date.fromordinal(allowed.last_day) if allowed.last_day is not None else None
    reg = ctx.registration(entry.nationality, entry.basis, entry.purpose, entry.day)
    if reg is None:
        reg_rule, reg_day, reg_state = None, None, "exempt"
    else:
        reg_rule, reg_day = reg[0].id, date.fromordinal(reg[1])
        if any(c.type == AlertType.UNREGISTERED_STAY.value and c.stay == entry.event_id for c in pending.values()):
            reg_state = "due"
        elif any(a.type == AlertType.UNREGISTERED_STAY and entry.event_id in a.evidence_event_ids for a in alerts):
            reg_state = "missed"
        else:
            reg_state = "registered"
    return OpenStayView(
        entry_event_id=entry.event_id,
        entry_time=from_us(entry.t),
        entry_checkpoint=entry.checkpoint,
        basis=entry.basis,
        purpose=entry.purpose,
        day=(as_of - first).days + 1,
        allowed_days=(last - first).days + 1 if last is not None else None,
        last_allowed_day=last,
        rule_id=allowed.rule_id,
        rule_version=allowed.rule_version(ctx.version),
        registration_rule=reg_rule,
        registration_deadline=reg_day,
        registration=reg_state,
    )


def _window(ctx: Context, state: TravellerState, as_of: date, events: Sequence[Event]) -> WindowView | None:
    """Days present in the rolling window to the as-of day under the row that governs the traveller now: the
    open stay's row, else the row a new entry on their last crossing's basis would get on the as-of day."""
    stay = state.cursor.open
    crossings = [e for e in events if isinstance(e, Crossing)]
    if stay is not None:
        allowed = allowed_stay(ctx, stay, None)
        row, first, covered = allowed.row, stay.entry.day, allowed.covered
    elif crossings and crossings[-1].entry_basis.kind != "CITIZEN":
        last = crossings[-1]  # what the basis they last travelled on would give them today
        row, first, covered = (
            ctx.stay_limit(last.traveller.nationality, last.entry_basis.kind, as_of.toordinal()),
            0,
            (),
        )
    else:
        return None
    if row is None or row.window_days is None or row.window_limit_days is None:
        return None
    today = as_of.toordinal()
    lo = today - row.window_days + 1
    days: set[int] = set()
    for a, b, _ in state.cursor.past:  # earlier windowed stays (the walk keeps them for the window)
        days.update(range(max(a, lo), min(b, today) + 1))
    if stay is not None:
        for a, b in counted_segments(first, today, covered):
            days.update(range(max(a, lo), b + 1))
    return WindowView(row.id, row.window_days, row.window_limit_days, len(days))


# --- output -----------------------------------------------------------------------------------------------


def _local(moment: datetime | None, rules: RuleBook) -> str:
    return "-" if moment is None else moment.astimezone(rules.timezone).strftime("%Y-%m-%d %H:%M")


def text_lines(report: CheckReport, rules: RuleBook) -> Iterable[str]:
    """The report for a person to read: times are local (Asia/Almaty)."""
    for r in report.rejections:
        yield str(r)
    left = f", {report.after_as_of} after the as-of day left out" if report.after_as_of else ""
    yield (
        f"as of the end of {report.as_of} (Asia/Almaty): read {report.read}, valid {report.valid}, "
        f"rejected {len(report.rejections)}{left}"
    )
    for t in report.travellers:
        yield ""
        yield f"{t.document} (nationality {t.nationality}): {t.events} event{'s' if t.events != 1 else ''}"
        if not (t.stays or t.open_stay or t.alerts or t.deadlines):
            yield "  no stay, alert or deadline"
        if t.stays:
            yield "  stays"
            for s in t.stays:
                allowed = f"allowed {s.allowed_days}" if s.allowed_days is not None else "no limit"
                over = f", {s.days_over} days over" if s.days_over else ""
                place = f"{s.entry_checkpoint or '?'} -> {s.exit_checkpoint or 'no exit recorded'}"
                yield (
                    f"    {_local(s.entry_time, rules)} -> {_local(s.exit_time, rules)}  {place}  "
                    f"{s.days} days, {allowed}{over} ({s.entry_basis}; rule {s.rule_id} {s.rule_version})"
                )
        o = t.open_stay
        if o is not None:
            yield "  open stay"
            limit = (
                f"allowed {o.allowed_days} days, last allowed day {o.last_allowed_day}"
                if o.allowed_days is not None
                else "no limit"
            )
            yield (
                f"    entered {_local(o.entry_time, rules)} at {o.entry_checkpoint} ({o.basis}, {o.purpose}); "
                f"day {o.day}; {limit} (rule {o.rule_id} {o.rule_version})"
            )
            if o.registration_rule is None:
                yield "    registration: exempt"
            else:
                yield f"    registration: {o.registration} (rule {o.registration_rule}, by {o.registration_deadline})"
        if t.window is not None:
            w = t.window
            yield (
                f"  {w.limit_days}/{w.window_days}: {w.present} days present in the {w.window_days} days to "
                f"{report.as_of}, {w.left} left (rule {w.rule_id})"
            )
        if t.alerts:
            yield "  alerts"
            for a in t.alerts:
                due = _local(a.due_time, rules)
                yield f"    {a.action:9} {a.type} {a.severity}, due {due} (rule {a.rule_id} {a.rule_version})"
                yield f"              {a.reason}"
        if t.deadlines:
            yield "  deadlines"
            for d in t.deadlines:
                yield f"    {_local(d.due, rules)}  {d.type} {d.unless} (rule {d.rule_id} {d.rule_version})"
        for line in t.refused:
            yield f"  refused by the core: {line}"


def json_lines(report: CheckReport) -> Iterable[str]:
    """One JSON object a line, each with `record`: rejected, summary, stay, open_stay, window, alert, deadline."""
    for r in report.rejections:
        yield _dump({"record": "rejected", "line": r.line, "field": r.field, "reason": r.message})
    yield _dump(
        {
            "record": "summary",
            "as_of": report.as_of,
            "read": report.read,
            "valid": report.valid,
            "rejected": len(report.rejections),
            "after_as_of": report.after_as_of,
            "travellers": len(report.travellers),
        }
    )
    for t in report.travellers:
        who = {"document": t.document, "traveller_key": t.traveller_key}
        for s in t.stays:
            yield _dump({"record": "stay", **who, **_fields(s)})
        if t.open_stay is not None:
            yield _dump({"record": "open_stay", **who, **_fields(t.open_stay)})
        if t.window is not None:
            yield _dump({"record": "window", **who, **_fields(t.window), "left": t.window.left})
        for a in t.alerts:
            yield _dump({"record": "alert", **who, **_fields(a)})
        for d in t.deadlines:
            yield _dump({"record": "deadline", **who, **_fields(d)})
        for line in t.refused:
            yield _dump({"record": "refused", **who, "reason": line})


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__ if not name.startswith("_")}


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


# --- command ----------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)


def check_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON lines or .avro file")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Judge as at the end of this day, YYYY-MM-DD (default: today)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of text")] = False,
) -> None:
    """A traveller's events in; stays, allowed days, deadlines and alerts out, each with its rule and reason.

    The same core as the processors, no broker. Each bad line prints `line N: FIELD: REASON` (as `shekara
    publish` reads it). Exit code: 0 something valid was judged, 1 no valid event, 2 the file cannot be read.
    """
    from shekara.reference import load_checkpoints
    from shekara.rules import load_rules
    from shekara.settings import get_settings

    settings = get_settings()
    rules = load_rules(settings.rules_file)
    if as_of is None:
        day = rules.local_date(datetime.now(UTC))
    else:
        try:
            day = date.fromisoformat(as_of)
        except ValueError:
            typer.secho(f"error: --as-of must be a day YYYY-MM-DD; got {as_of!r}", fg="red", err=True)
            raise typer.Exit(2) from None
    try:
        report = check_file(
            file, as_of=day, rules=rules, checkpoints=load_checkpoints(), key=settings.pseudonym_key_bytes
        )
    except (ValidationError, ValueError, OSError) as exc:
        typer.secho(f"error: {file}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    for line in json_lines(report) if as_json else text_lines(report, rules):
        typer.echo(line)
    if report.valid == 0:
        raise typer.Exit(1)
