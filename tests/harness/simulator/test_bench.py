"""The simulator's benchmark returns figures with their same-run baselines (no timing is asserted)."""

from __future__ import annotations

from harness.bench.simulator import COMPONENT, run
from shekara.settings import Settings


def test_quick_bench_reports_rates_with_baselines() -> None:
    results = run(Settings(), quick=True)
    names = [r.name for r in results]
    assert "generated (simulate)" in names
    assert any(n.startswith("written to Avro files") for n in names)
    assert any(n.startswith("peak memory") for n in names)
    for r in results:
        assert r.component == COMPONENT and r.value > 0
    rates = [r for r in results if r.unit == "events/s"]
    assert rates and all(r.baseline_value and r.baseline_value > 0 and r.ratio for r in rates)
    generated = next(r for r in results if r.name == "generated (simulate)")
    assert generated.details["events"] > 1000
