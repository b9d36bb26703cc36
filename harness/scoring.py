"""The one scoring of alerts against a ground truth, used by `shekara evaluate`, the demo, the fault runs and the
core's test against the simulator.

An alert counts by its id: the id derives from the type, the traveller key and the causing events, so the same
finding made twice has the same id. The final set is what a consumer is left with after reading every record
(`final_alerts`). Both sides are compared only for alerts due by a cutoff, since later ones may not have been
judged yet. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.records import Alert, AlertAction, AlertType


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    alert_id: str
    type: str
    traveller_key: str | None
    due_time: datetime


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: str
    expected: int
    found: int
    true_positives: int
    missed: int
    spurious: int


@dataclass
class Score:
    per_type: list[TypeScore]
    true_positives: int
    missed: int
    spurious: int
    missed_ids: list[str] = field(default_factory=list)
    spurious_ids: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = self.true_positives + self.spurious
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positives + self.missed
        return self.true_positives / expected if expected else 1.0


def final_alerts(records: Iterable[Alert]) -> dict[str, Alert]:
    """The final alert set: ids with a RAISED record and no later RETRACTED one (RESOLVED ones stay in), each
    with its latest record (a RESOLVED alert shows as resolved, with the evidence that resolved it).

    "Later" is by revision, then by emission order (records before Alert v2 all carry revision 0): the rule the
    warehouse's alert_states view applies. On a topic, one alert's records share a key, hence a partition, hence
    an order, and the processors number them in that order, so both agree there; a replayed copy (same revision)
    changes nothing.
    """
    latest: dict[str, Alert] = {}
    raised: set[str] = set()
    for a in records:
        prior = latest.get(a.alert_id)
        if prior is None or a.revision >= prior.revision:
            latest[a.alert_id] = a
        if a.action == AlertAction.RAISED:
            raised.add(a.alert_id)
    # an alert that comes back after a RETRACTED record is RAISED again first: so a latest record other than
    # RETRACTED, of an id ever raised, is a RAISED with no later RETRACTED
    return {i: a for i, a in latest.items() if i in raised and a.action != AlertAction.RETRACTED}


def score(expected: Iterable[ExpectedAlert], found: Mapping[str, Alert], cutoff: datetime) -> Score:
    """Compare the expected alerts with the final alert set, both restricted to due_time <= cutoff."""
    want = {e.alert_id: e.type for e in expected if e.due_time <= cutoff}
    got = {i: str(a.type) for i, a in found.items() if a.due_time <= cutoff}
    types = sorted(set(want.values()) | set(got.values()) | {t.value for t in AlertType})
    per_type = []
    for t in types:
        w = {i for i, ty in want.items() if ty == t}
        g = {i for i, ty in got.items() if ty == t}
        tp = len(w & g)
        per_type.append(TypeScore(t, len(w), len(g), tp, len(w - g), len(g - w)))
    # An id expected as one type and found as another would be a contract bug: it counts as missed + spurious.
    tp_ids = {i for i in want if i in got and want[i] == got[i]}
    return Score(
        per_type=per_type,
        true_positives=len(tp_ids),
        missed=len(set(want) - tp_ids),
        spurious=len(set(got) - tp_ids),
        missed_ids=sorted(set(want) - tp_ids),
        spurious_ids=sorted(set(got) - tp_ids),
    )


def expected_from_truth(items: Iterable[Any]) -> tuple[list[ExpectedAlert], int]:
    """(expected alerts, malformed count) from the simulator's ground truth (`harness.simulator.Expected`)."""
    alerts: list[ExpectedAlert] = []
    malformed = 0
    for item in items:
        if item.kind == "malformed":
            malformed += 1
        elif item.kind == "alert" and item.due_time is not None:
            alerts.append(ExpectedAlert(item.alert_id, str(item.type), item.traveller_key, item.due_time))
    return alerts, malformed
