"""Alert quality end to end: the simulator's traffic through the real broker and workers, against its truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.evaluate import EvaluationConfig, run_evaluation
from harness.scoring import ExpectedAlert, final_alerts, score
from schemas.records import Alert, AlertAction, AlertType, Severity
from shekara.embedded import EmbeddedBroker

T0 = datetime(2026, 6, 10, tzinfo=UTC)


def _alert(alert_id: str, action: AlertAction, kind: AlertType = AlertType.DOUBLE_ENTRY, due: datetime = T0) -> Alert:
    return Alert(alert_id, action, kind, Severity.LOW, "k", "UZB", None, [], "r", "1", "why", due, due)


def test_final_alert_set_drops_retracted_and_keeps_resolved() -> None:
    records = [
        _alert("a", AlertAction.RAISED),
        _alert("a", AlertAction.RESOLVED),
        _alert("b", AlertAction.RAISED),
        _alert("b", AlertAction.RETRACTED),
        _alert("c", AlertAction.RAISED),
        _alert("c", AlertAction.RAISED),  # a replay after a crash repeats it: counted once
        _alert("d", AlertAction.RETRACTED),
    ]
    assert set(final_alerts(records)) == {"a", "c"}


def test_score_counts_per_type_within_the_cutoff() -> None:
    expected = [
        ExpectedAlert("a", "DOUBLE_ENTRY", "k", T0),
        ExpectedAlert("b", "DOUBLE_ENTRY", "k", T0),
        ExpectedAlert("late", "DOUBLE_ENTRY", "k", T0 + timedelta(days=5)),  # due after the cutoff: not compared
    ]
    found = {
        "a": _alert("a", AlertAction.RAISED),
        "x": _alert("x", AlertAction.RAISED, AlertType.IMPOSSIBLE_TRAVEL),
        "y": _alert("y", AlertAction.RAISED, AlertType.IMPOSSIBLE_TRAVEL, T0 + timedelta(days=5)),
    }
    s = score(expected, found, cutoff=T0 + timedelta(days=1))
    rows = {r.type: r for r in s.per_type}
    assert (rows["DOUBLE_ENTRY"].expected, rows["DOUBLE_ENTRY"].true_positives, rows["DOUBLE_ENTRY"].missed) == (
        2,
        1,
        1,
    )
    assert (rows["IMPOSSIBLE_TRAVEL"].found, rows["IMPOSSIBLE_TRAVEL"].spurious) == (1, 1)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(0.5)
    assert s.missed_ids == ["b"] and s.spurious_ids == ["x"]


@pytest.mark.integration
@pytest.mark.slow
def test_evaluation_with_faults_finds_exactly_the_expected_alerts(broker: EmbeddedBroker, tmp_path: Path) -> None:
    config = EvaluationConfig(days=14, seed=7, scale=0.01, faults=True, broker_url=broker.url)
    report = run_evaluation(config, work_dir=tmp_path)
    lines = report.lines()
    print("\n".join(lines))
    assert report.score.true_positives >= 20, "too few alerts to say anything"
    assert (report.score.missed, report.score.spurious) == (0, 0)
    assert lines[-1] == "precision=1.000 recall=1.000"
    # Every malformed payload, and no valid event, was refused at the door.
    assert report.rejected_input == report.malformed_expected > 0
    assert report.stays, "no closed stay came out"
