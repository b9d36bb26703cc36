"""The latency benchmark (harness/bench/latency.py): its traffic mix, how runs are summarised, and its consumers."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

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


def test_available_hands_over_what_has_arrived_without_waiting_out_its_timeout(settings: Settings) -> None:
    """The timing consumers must see a message when it arrives: `consume(num_messages=1000, timeout=T)` held every
    message until 1,000 had come or T was over, and that wait was measured into every latency."""
    topic = settings.topics.alerts
    producer = Producer(settings.kafka_config())
    for i in range(3):
        producer.produce(topic, key=b"k", value=str(i).encode(), partition=0)
    assert producer.flush(10) == 0
    c = Consumer({**settings.kafka_config(), "group.id": f"lat-test-{uuid.uuid4().hex[:6]}", "fetch.wait.max.ms": 10})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        got: list[bytes] = []
        start = time.monotonic()
        while len(got) < 3 and time.monotonic() - start < 20:
            got += [m.value() or b"" for m in latency.available(c, 10.0) if not m.error()]
        took = time.monotonic() - start
    finally:
        c.close()
    assert got == [b"0", b"1", b"2"]
    assert took < 5.0, f"the messages took {took:.1f} s: the consumer waited out its 10 s timeout"


def test_the_sustainable_rate_is_probed_from_half_the_backlog_rate_down() -> None:
    assert latency.probe_rates(12_920) == [6400, 4500, 3200, 2300, 1500]
    assert latency.probe_rates(4_000) == [2000, 1400]  # fractions at or under the 1,000 measured anyway: not probed
    assert latency.probe_rates(1_500) == []
    assert latency.probe_rates(20_000, floor=3000) == [10_000, 7000, 5000, 3600]
