"""`shekara evaluate` scores the analysts' figures (issue 16, item 2): the warehouse's daily flows, open overstays,
overstay rates and registration compliance against the same figures worked out from the simulated events."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from harness.evaluate import EvaluationConfig, compare_figures, run_evaluation
from harness.simulator.truth import Figures
from shekara.embedded import EmbeddedBroker

D1, D2 = date(2026, 6, 1), date(2026, 6, 2)


def _figures() -> Figures:
    return Figures(
        flows={(D1, "KZ-UZ-ZHIBEK-ZHOLY", "ENTRY"): 12, (D1, "KZ-UZ-ZHIBEK-ZHOLY", "EXIT"): 9},
        open_overstays={D1: 0, D2: 3},
        overstay_rates={(D1, "UZB"): (10, 1, 3)},
        rates_as_of=D2,
        registrations={(D1, "KZ-75", "HOTEL"): (5, 4, 1, 0)},
    )


def test_equal_figures_have_no_difference() -> None:
    assert compare_figures(_figures(), _figures()) == []


def test_every_wrong_or_missing_figure_is_one_difference() -> None:
    truth = _figures()
    wrong = replace(
        truth,
        flows={(D1, "KZ-UZ-ZHIBEK-ZHOLY", "ENTRY"): 12},  # the exits are missing
        open_overstays={D1: 0, D2: 2},
        overstay_rates={(D1, "UZB"): (10, 1, 2), (D1, "RUS"): (1, 0, 0)},  # one wrong, one that should not be there
        registrations=truth.registrations,
    )
    diffs = compare_figures(truth, wrong)
    assert diffs == [
        "entries/exits (day, checkpoint, direction) 2026-06-01 KZ-UZ-ZHIBEK-ZHOLY EXIT: warehouse None, truth 9",
        "open overstays (as of day: travellers) 2026-06-02: warehouse 2, truth 3",
        "overstay rates as of 2026-06-02 (month, nationality: due, out, in) 2026-06-01 RUS: warehouse (1, 0, 0), "
        "truth None",
        "overstay rates as of 2026-06-02 (month, nationality: due, out, in) 2026-06-01 UZB: warehouse (10, 1, 2), "
        "truth (10, 1, 3)",
    ]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a 35-day run with the sink: a few minutes on 2 idle cores
def test_a_clean_run_has_no_difference_and_a_tampered_truth_is_caught(broker: EmbeddedBroker, tmp_path: Path) -> None:
    config = EvaluationConfig(days=35, seed=11, scale=0.01, faults=True, broker_url=broker.url)
    report = run_evaluation(config, work_dir=tmp_path)
    lines = report.lines()
    print("\n".join(lines))
    assert report.figures is not None and report.figure_sizes is not None
    truth, warehouse = report.figures
    assert report.figure_differences == [], "\n".join(report.figure_differences[:20])
    assert any(line.startswith("warehouse figures against the truth") and "0 difference(s)" in line for line in lines)
    # the run had something to compare in every figure, overstayers still in the country included
    assert all(n > 0 for n in report.figure_sizes.values()), report.figure_sizes
    assert max(truth.open_overstays.values()) > 0
    assert report.complete
    # a truth with one wrong figure of each kind: each is reported against what the warehouse said
    day = max(truth.open_overstays, key=lambda d: truth.open_overstays[d])
    flow = next(iter(truth.flows))
    rate = next(iter(truth.overstay_rates))
    reg = next(iter(truth.registrations))
    tampered = replace(
        truth,
        flows={**truth.flows, flow: truth.flows[flow] + 1},
        open_overstays={**truth.open_overstays, day: truth.open_overstays[day] - 1},
        overstay_rates={**truth.overstay_rates, rate: (0, 0, 0)},
        registrations={**truth.registrations, reg: (0, 0, 0, 0)},
    )
    diffs = compare_figures(tampered, warehouse)
    assert len(diffs) == 4, diffs
    assert f"{day}: warehouse {warehouse.open_overstays[day]}, truth {truth.open_overstays[day] - 1}" in diffs[1]
