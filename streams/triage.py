"""Officers' triage of alerts: acknowledge, assign, annotate. Pure state logic; the shells are the ops page
(`streams.web`) and the console (`harness.ops_cli`).

Each alert has one triage state (`schemas.records.AlertTriage`), kept as the latest record of its alert id on
the compacted ``alert-actions`` topic. An action reads the current state, `apply` derives the next one (notes
are appended, never rewritten) and the whole new state is published under the alert id: compaction then keeps
only the latest, and a reader that consumes the topic from the beginning (`TriageBoard`) ends with every alert's
state. Two officers acting on one alert at the same instant from two replicas: the later record wins (a note
of the earlier one can be lost); triage is a human-paced activity, so this is accepted rather than locked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from schemas.records import AlertTriage, TriageAction, TriageNote, TriageStatus
from shekara.settings import Limits

ACTIONS: Mapping[str, TriageAction] = {
    "ack": TriageAction.ACKNOWLEDGE,
    "assign": TriageAction.ASSIGN,
    "note": TriageAction.NOTE,
}


class TriageError(ValueError):
    """An action that cannot be applied; the message is one line for the officer."""


@dataclass(frozen=True, slots=True)
class TriageRequest:
    """What an officer asks: `action` on `alert_id`, by `who`, with a note and/or an assignee."""

    alert_id: str
    action: TriageAction
    who: str
    note: str | None = None
    assignee: str | None = None


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def validate(request: TriageRequest, limits: Limits) -> TriageRequest:
    """The request with its texts trimmed, or TriageError naming what is wrong (size limits from settings)."""
    who, note, assignee = _clean(request.who), _clean(request.note), _clean(request.assignee)
    if not request.alert_id.strip():
        raise TriageError("an alert id is required")
    if who is None:
        raise TriageError("who is acting is unknown: give a name (--as)")
    if len(who) > limits.max_name_chars:
        raise TriageError(f"the officer's name is {len(who)} characters; at most {limits.max_name_chars}")
    if request.action is TriageAction.ASSIGN:
        if assignee is None:
            raise TriageError("assign needs the officer to assign to (--to NAME)")
        if len(assignee) > limits.max_name_chars or any(c in assignee for c in "\r\n"):
            raise TriageError(f"the assignee must be one line of at most {limits.max_name_chars} characters")
    if request.action is TriageAction.NOTE and note is None:
        raise TriageError("a note is required (--note TEXT)")
    if note is not None and len(note) > limits.max_note_chars:
        raise TriageError(f"the note is {len(note)} characters; at most {limits.max_note_chars}")
    return replace(request, who=who, note=note, assignee=assignee)


def apply(previous: AlertTriage | None, request: TriageRequest, now: datetime) -> AlertTriage:
    """The state after `request` (already validated) at `now`: acknowledging twice keeps the first one's who/when."""
    state = previous or AlertTriage(
        alert_id=request.alert_id,
        status=TriageStatus.NEW,
        acknowledged_by=None,
        acknowledged_time=None,
        assignee=None,
        notes=[],
        last_action=request.action,
        updated_by=request.who,
        updated_time=now,
        revision=0,
    )
    if state.alert_id != request.alert_id:
        raise TriageError(f"state of {state.alert_id} given for {request.alert_id}")
    notes = list(state.notes)
    if request.note is not None:
        notes.append(TriageNote(author=request.who, time=now, text=request.note))
    status, acked_by, acked_time = state.status, state.acknowledged_by, state.acknowledged_time
    if request.action is TriageAction.ACKNOWLEDGE and status is not TriageStatus.ACKNOWLEDGED:
        status, acked_by, acked_time = TriageStatus.ACKNOWLEDGED, request.who, now
    assignee = request.assignee if request.action is TriageAction.ASSIGN else state.assignee
    return replace(
        state,
        status=status,
        acknowledged_by=acked_by,
        acknowledged_time=acked_time,
        assignee=assignee,
        notes=notes,
        last_action=request.action,
        updated_by=request.who,
        updated_time=now,
        revision=state.revision + 1,
    )


def as_json(state: AlertTriage | None) -> dict[str, Any] | None:
    """The state as plain JSON (ISO times) for the page and `shekara alerts --json`; None: never triaged."""
    if state is None:
        return None
    return {
        "status": state.status.value,
        "acknowledged_by": state.acknowledged_by,
        "acknowledged_time": state.acknowledged_time.isoformat() if state.acknowledged_time else None,
        "assignee": state.assignee,
        "notes": [{"author": n.author, "time": n.time.isoformat(), "text": n.text} for n in state.notes],
        "last_action": state.last_action.value,
        "updated_by": state.updated_by,
        "updated_time": state.updated_time.isoformat(),
        "revision": state.revision,
    }


def summary(state: AlertTriage | None) -> str:
    """A few words for a console line: "ack by ana, assigned to bek, 2 notes"; "new" when never triaged."""
    if state is None:
        return "new"
    parts = [f"ack by {state.acknowledged_by}" if state.status is TriageStatus.ACKNOWLEDGED else "not acked"]
    if state.assignee:
        parts.append(f"assigned to {state.assignee}")
    if state.notes:
        parts.append(f"{len(state.notes)} note{'s' if len(state.notes) > 1 else ''}")
    return ", ".join(parts)


class TriageBoard:
    """Every alert's latest triage state, fed in topic order (a reader thread) and read by request handlers."""

    def __init__(self) -> None:
        self._states: dict[str, AlertTriage] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set once the reader caught up with the topic's end

    def put(self, state: AlertTriage) -> None:
        """A record from the topic: it replaces an older revision, never a newer one (a replica's late echo)."""
        with self._lock:
            held = self._states.get(state.alert_id)
            if held is None or (state.updated_time, state.revision) >= (held.updated_time, held.revision):
                self._states[state.alert_id] = state

    def remove(self, alert_id: str) -> None:
        """A tombstone (null value) for the alert id."""
        with self._lock:
            self._states.pop(alert_id, None)

    def get(self, alert_id: str) -> AlertTriage | None:
        with self._lock:
            return self._states.get(alert_id)

    def states(self, alert_ids: Iterable[str]) -> dict[str, AlertTriage]:
        with self._lock:
            return {a: s for a in alert_ids if (s := self._states.get(a)) is not None}

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
