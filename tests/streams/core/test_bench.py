"""The core micro-benchmark runs and reports figures (the figures themselves are printed, not asserted)."""

from __future__ import annotations

from harness.bench.core import run_core_benchmark, traffic


def test_traffic_is_deterministic_and_in_event_time_order():
    a, b = traffic(600, seed=3), traffic(600, seed=3)
    assert [e.event_id for _, e in a] == [e.event_id for _, e in b]
    times = [e.event_time for _, e in a]
    assert times == sorted(times)
    assert len({k for k, _ in a}) > 50


def test_core_benchmark_reports_rates_against_its_baselines(capsys):
    out = run_core_benchmark(1500, seed=5)
    assert out["events"] == 1500 and out["steps"] == 1500
    for k in ("step_events_per_s", "step_with_state_bytes_events_per_s", "bare_events_per_s", "replay_events_per_s"):
        assert out[k] > 0
    assert out["stays_emitted"] > 0 and out["bytes_per_open_stay"] > 0 and out["travellers_with_open_stay"] > 0
    assert "step_with_state_bytes_events_per_s" in capsys.readouterr().out


def test_bench_results_for_the_report():
    from harness.bench.core import run
    from shekara.settings import Settings

    results = run(Settings(), quick=True)
    assert [r.unit for r in results] == ["events/s", "events/s", "bytes"]
    assert all(r.value > 0 and r.baseline_value for r in results)
