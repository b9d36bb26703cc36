"""Exactly once across crashes: SIGKILL a worker mid-run, start another, and get the same alerts and stays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.evaluate import EvaluationConfig, run_evaluation
from shekara.embedded import EmbeddedBroker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def test_sigkill_mid_run_gives_the_alerts_and_stays_of_an_uninterrupted_run(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Ten simulated days published over about twelve seconds, so the workers keep pace with the traffic.
    # The processors' output is compared on the topics; the warehouse's figures are scored elsewhere
    # (tests/harness/test_evaluate_figures.py), and two runs with a sink each outlast the test's time limit.
    config = EvaluationConfig(
        days=10, seed=3, scale=0.01, faults=True, broker_url=broker.url, speed=72_000, warehouse=False
    )
    calm = run_evaluation(config, work_dir=tmp_path / "calm")
    # Kill once the group has committed about a third of the source events: the worker is mid-stream, with
    # batches processed but not yet committed, outputs sent and state writes in flight, and most of the
    # traffic still to come.
    crashed = run_evaluation(dataclasses.replace(config, crash_after=calm.published // 3), work_dir=tmp_path / "crash")

    assert crashed.crashes == 1
    # The replacement worker started from the last commit, not from the end: it consumed real work again.
    assert crashed.worker_events[0] > 0
    assert calm.final_alerts, "nothing to compare"
    assert set(crashed.final_alerts) == set(calm.final_alerts)
    assert (crashed.score.missed, crashed.score.spurious) == (0, 0)
    # Every source offset reached a processor in both worker processes (none lost around the restart's seek).
    assert (calm.offsets_skipped, crashed.offsets_skipped) == (0, 0)
    # Stays: same ids and contents. A revision number counts corrections emitted on the way, which depend on
    # when late data arrived relative to emission; the stay itself must be the same.
    assert {i: dataclasses.replace(s, revision=0) for i, s in crashed.stays.items()} == {
        i: dataclasses.replace(s, revision=0) for i, s in calm.stays.items()
    }
