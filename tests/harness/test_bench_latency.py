"""The latency benchmark's pure parts (harness/bench/latency.py): its traffic mix and how runs are summarised."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from harness.bench import latency
from schemas.records import Crossing, Direction, Registration
from shekara.settings import Settings


def test_the_traffic_is_one_watched_crossing_in_ten_and_background_entries_registrations_exits() -> None:
    traffic = latency._Traffic(Settings())
    now = datetime(2026, 12, 1, tzinfo=UTC)
    events = [traffic.event(i, now) for i in range(1000)]
    watched = [e for e in events if e[3] is not None]
    assert len(watched) == 100 and all(isinstance(e[1], Crossing) for e in watched)
    kinds = Counter(
        "registration" if isinstance(r, Registration) else r.direction.value for _, r, _, eid in events if eid is None
    )
    assert kinds == {Direction.ENTRY.value: 300, "registration": 300, Direction.EXIT.value: 300}
    # each background traveller enters, registers and leaves, under one partition key
    bg = [(r.traveller.document.number, key) for _, r, key, eid in events if eid is None]
    assert all(len({k for n, k in bg if n == number}) == 1 for number, _ in bg[:30])


def test_summary_and_medians_over_rounds() -> None:
    assert latency.summary([]) == {"n": 0, "p50": None, "p99": None, "max": None}
    s = latency.summary([float(v) for v in range(1, 101)])
    assert s == {"n": 100, "p50": 50.5, "p99": 100.0, "max": 100.0}
    runs = [
        {"variant": "topology", "rate": 100, "immediate": {"p50": p, "p99": 2 * p, "max": 3 * p}} for p in (10, 30, 20)
    ]
    runs.append({"variant": "forward", "rate": 100, "immediate": {"p50": 1, "p99": 1, "max": 1}})
    assert latency.medians(runs, "topology", 100, "immediate") == {"p50": 20, "p99": 40, "max": 60}


def test_stage_means_divide_the_workers_sums_by_its_events() -> None:
    status = {"stages": {"events": 4, "arrive": 40.0, "align": 0.0, "work": 10.0, "commit_wait": 2.0, "commit": 6.0}}
    assert latency._stage_means(status) == {
        "arrive": 10.0,
        "align": 0.0,
        "work": 2.5,
        "commit_wait": 0.5,
        "commit": 1.5,
    }
    assert latency._stage_means(None) is None
    before = {"stages": {"events": 2, "arrive": 36.0, "align": 0.0, "work": 2.0, "commit_wait": 0.0, "commit": 2.0}}
    assert latency._stage_means(status, before) == {
        "arrive": 2.0,
        "align": 0.0,
        "work": 4.0,
        "commit_wait": 1.0,
        "commit": 2.0,
    }
