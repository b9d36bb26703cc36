"""The ops console's alert lines: which alerts to show and how one reads on a terminal.

Pure functions over `schemas.records.Alert`; the consumer that feeds them is `harness.ops_cli`. A line answers,
in this order: since when (due time, local, then when the processors raised it), what (action, severity, type),
who (nationality and the whole pseudonymous traveller key, as `shekara sql` and `travel_history` take it:
document numbers never reach the console), where (checkpoint), why (the rule's reason), the evidence (event
ids), the alert id (what `shekara alerts ack` takes) and the officers' triage so far (`streams.triage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from rich.text import Text

from schemas.records import Alert, AlertAction, AlertTriage, AlertType, Severity
from shekara.reference import CheckpointInfo
from streams import triage

SEVERITY_ORDER: tuple[Severity, ...] = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)

SEVERITY_STYLE: Mapping[Severity, str] = {
    Severity.LOW: "cyan",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
    Severity.CRITICAL: "bold white on red",
}

# Closed alerts stay visible but quiet: ops act on RAISED lines.
ACTION_STYLE: Mapping[AlertAction, str] = {
    AlertAction.RAISED: "bold",
    AlertAction.RESOLVED: "green",
    AlertAction.RETRACTED: "dim",
}

EVIDENCE_SHOWN = 3
# Fixed widths keep the "who" column aligned from one line to the next.
ACTION_WIDTH = max(len(a.value) for a in AlertAction) + 1
SEVERITY_WIDTH = max(len(s.value) for s in Severity) + 1
TYPE_WIDTH = max(len(t.value) for t in AlertType)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts to show; an empty set means "any"."""

    types: frozenset[AlertType] = frozenset()
    severities: frozenset[Severity] = frozenset()
    checkpoints: frozenset[str] = frozenset()

    def matches(self, alert: Alert) -> bool:
        if self.types and alert.type not in self.types:
            return False
        if self.severities and alert.severity not in self.severities:
            return False
        return not self.checkpoints or alert.checkpoint_id in self.checkpoints


def _split(values: Iterable[str]) -> list[str]:
    """Options may be repeated or comma-separated: ``-t A -t B`` or ``-t A,B``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_severities(values: Iterable[str]) -> frozenset[Severity]:
    """Severity names, case-insensitive; ``HIGH+`` means HIGH and everything above it."""
    out: set[Severity] = set()
    for raw in _split(values):
        name, at_least = (raw[:-1], True) if raw.endswith("+") else (raw, False)
        try:
            severity = Severity(name.upper())
        except ValueError:
            valid = ", ".join(s.value for s in SEVERITY_ORDER)
            raise ValueError(
                f"--severity: unknown severity {raw!r}; use one of {valid} (add + for 'and above')"
            ) from None
        out.update(SEVERITY_ORDER[SEVERITY_ORDER.index(severity) :] if at_least else (severity,))
    return frozenset(out)


def parse_types(values: Iterable[str]) -> frozenset[AlertType]:
    out: set[AlertType] = set()
    for raw in _split(values):
        try:
            out.add(AlertType(raw.upper().replace("-", "_")))
        except ValueError:
            valid = ", ".join(t.value for t in AlertType)
            raise ValueError(f"--type: unknown alert type {raw!r}; use one of {valid}") from None
    return frozenset(out)


def parse_filter(
    types: Sequence[str] = (), severities: Sequence[str] = (), checkpoints: Sequence[str] = ()
) -> AlertFilter:
    """The filter from command-line values; raises ValueError naming the option and the bad value."""
    return AlertFilter(
        types=parse_types(types),
        severities=parse_severities(severities),
        checkpoints=frozenset(c.upper() for c in _split(checkpoints)),
    )


def local_time(t: datetime, tz: tzinfo) -> str:
    """Minutes are enough for ops; the UTC offset is shown because Kazakhstan changed zones in 2024."""
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M %z")


def where(checkpoint_id: str | None, checkpoints: Mapping[str, CheckpointInfo]) -> str:
    if checkpoint_id is None:
        return "-"
    info = checkpoints.get(checkpoint_id)
    return f"{info.name} [{checkpoint_id}]" if info else checkpoint_id


def evidence(event_ids: Sequence[str], shown: int = EVIDENCE_SHOWN) -> str:
    if not event_ids:
        return "-"
    more = len(event_ids) - shown
    return ", ".join(event_ids[:shown]) + (f" (+{more} more)" if more > 0 else "")


def why(alert: Alert) -> str:
    if alert.days_overstayed is not None and str(alert.days_overstayed) not in alert.reason:
        return f"{alert.reason} ({alert.days_overstayed} days overstayed)"
    return alert.reason


def format_alert(
    alert: Alert,
    *,
    tz: tzinfo,
    checkpoints: Mapping[str, CheckpointInfo] | None = None,
    triaged: AlertTriage | None = None,
) -> Text:
    """One coloured console line for an alert record (with its triage state, when the caller has the board)."""
    line = Text()
    line.append(local_time(alert.due_time, tz), style="bold blue")
    line.append(f"  {RAISED_WORD[alert.action]} ", style="dim")
    line.append(local_time(alert.emitted_time, tz), style="blue")
    line.append("  ")
    line.append(alert.action.value, style=ACTION_STYLE[alert.action])
    line.append(" " * (ACTION_WIDTH - len(alert.action.value)))
    line.append(alert.severity.value, style=SEVERITY_STYLE[alert.severity])
    line.append(" " * (SEVERITY_WIDTH - len(alert.severity.value)))
    line.append(alert.type.value, style="bold magenta" if alert.action is AlertAction.RAISED else "magenta")
    line.append(" " * (TYPE_WIDTH - len(alert.type.value)))
    line.append("  who ", style="dim")
    line.append(f"{alert.nationality} {alert.traveller_key}")
    line.append("  at ", style="dim")
    line.append(where(alert.checkpoint_id, checkpoints or {}))
    line.append("  why ", style="dim")
    line.append(why(alert))
    line.append("  evidence ", style="dim")
    line.append(evidence(alert.evidence_event_ids))
    line.append(f"  [{alert.rule_id} {alert.rule_version}] id {alert.alert_id}", style="dim")
    if alert.action is AlertAction.RAISED:
        line.append("  triage ", style="dim")
        line.append(triage.summary(triaged), style="bold yellow" if triaged is None else "")
    return line


# The record's emitted time is when the processors raised, resolved or retracted it (wall clock).
RAISED_WORD: Mapping[AlertAction, str] = {
    AlertAction.RAISED: "raised",
    AlertAction.RESOLVED: "resolved",
    AlertAction.RETRACTED: "retracted",
}


def alert_json(
    alert: Alert, checkpoints: Mapping[str, CheckpointInfo], triaged: AlertTriage | None = None
) -> dict[str, Any]:
    """An alert as plain JSON: one line of `shekara alerts --json`, one row of the ops page.

    ``emitted_time`` is when the processors emitted this record: for a RAISED one, when the alert was raised.
    """
    info = checkpoints.get(alert.checkpoint_id) if alert.checkpoint_id else None
    return {
        "alert_id": alert.alert_id,
        "action": alert.action.value,
        "type": alert.type.value,
        "severity": alert.severity.value,
        "traveller_key": alert.traveller_key,
        "nationality": alert.nationality,
        "checkpoint_id": alert.checkpoint_id,
        "checkpoint_name": info.name if info else None,
        "reason": alert.reason,
        "due_time": alert.due_time.isoformat(),
        "emitted_time": alert.emitted_time.isoformat(),
        "days_overstayed": alert.days_overstayed,
        "evidence_event_ids": list(alert.evidence_event_ids),
        "rule_id": alert.rule_id,
        "rule_version": alert.rule_version,
        "triage": triage.as_json(triaged),
    }


def format_rejected(partition: int, offset: int, reason: str) -> Text:
    """A record on the alerts topic the console cannot read: say where it is and why, then carry on."""
    return Text(f"unreadable record at partition {partition} offset {offset}: {reason}", style="red")
