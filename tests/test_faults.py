"""`shekara faults --short`: each fault scenario on its own stack, and every check of its report must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import SCENARIOS, render, run_scenario
from shekara.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


# What a scenario checks besides the common checks: the proof that its own fault did what it says.
OWN_CHECKS = {
    "broker-outage": "the outage made the producer spool, and the spool drained",
    "rebalance": "both workers processed source events",
    "long-outage": "events left unsent by the producer",
    "broker-restart": "each worker and the sink said once that the broker went away",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fault_scenario_loses_and_doubles_nothing(scenario: str, tmp_path: Path) -> None:
    base = get_settings().model_copy(update={"data_dir": tmp_path / "var"})
    result = run_scenario(scenario, base, short=True)
    report = "\n".join(render([result]))
    assert result.error is None, report
    assert result.done, "the fault was not injected"
    names = {c.name for c in result.checks}
    assert {
        "expected alerts found (recall)",
        "alert records in ClickHouse exactly once",
        "source offsets never delivered to a processor",
    } <= names, report
    assert any(c.name.startswith("accepted crossings") for c in result.checks), report
    assert "each rejected message dead-lettered once" in names, report
    if scenario in OWN_CHECKS:
        assert OWN_CHECKS[scenario] in names, report
    assert result.ok, report
