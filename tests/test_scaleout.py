"""Scale-out by partitions: two workers started together share the partitions and both take work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness import readback
from schemas.records import Direction
from schemas.serde import Serde
from shekara.settings import Settings
from streams.worker import read_status, spawn_worker
from tests.test_topology import crossing, key_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAVELLERS = 400


def _shared(statuses: list[Path], timeout: float = 60.0) -> list[set[int]]:
    """Wait until the workers' partitions are disjoint, non-empty and cover all four."""
    deadline = time.monotonic() + timeout
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        found = [read_status(p) for p in statuses]
        owned = [set(st["partitions"]) if st else set() for st in found]
        if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}:
            return owned
        time.sleep(0.2)
    raise AssertionError(f"the workers did not share the partitions within {timeout:.0f}s: {owned}")


def test_two_workers_share_the_partitions_and_both_take_work(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    t = s.topics
    statuses = [tmp_path / "w0.json", tmp_path / "w1.json"]
    procs = [
        spawn_worker(s, app_id="scaleout", status_file=path, log_path=tmp_path / f"w{i}.log")
        for i, path in enumerate(statuses)
    ]
    try:
        owned = _shared(statuses)
        serde = Serde.from_settings(s)
        now = datetime.now(UTC)
        producer = Producer({"bootstrap.servers": s.bootstrap_servers, "linger.ms": 5})
        for i in range(TRAVELLERS):
            number = f"SC{i:07d}"
            for ev in (
                crossing(f"sc-in-{i}", number, now - timedelta(days=10), Direction.ENTRY),
                crossing(f"sc-out-{i}", number, now - timedelta(days=1), Direction.EXIT),
            ):
                producer.produce(
                    t.crossings, key=key_of(s, number), value=serde.encode(ev, t.crossings), partition=i % 4
                )
        for p in range(4):  # one current event per partition, so every partition's watermark passes the exits
            ev = crossing(f"clock-{p}", f"CLOCK{p:04d}", now - timedelta(seconds=1), Direction.ENTRY)
            producer.produce(
                t.crossings, key=key_of(s, f"CLOCK{p:04d}"), value=serde.encode(ev, t.crossings), partition=p
            )
        assert producer.flush(10) == 0
        group = readback.GroupProgress(s, "scaleout", [t.crossings, t.registrations, t.status_changes])
        group.wait_until_caught_up(timeout=90)
        group.close()
        time.sleep(1.5)  # one more status write each
        final = [read_status(path) for path in statuses]
        stays = readback.read_stays(s)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)

    assert all(st is not None for st in final)
    assert [set(st["partitions"]) for st in final if st is not None] == owned  # no rebalance in between
    worked = [st["per_partition"] for st in final if st is not None]
    for partitions, counts in zip(owned, worked, strict=True):
        # Each worker consumed its own partitions' events and nothing else.
        assert {int(p) for p in counts} == partitions
        assert sum(counts.values()) == (TRAVELLERS // 4 * 2 + 1) * len(partitions)
    # Together they matched every traveller's entry and exit into one closed stay.
    assert (
        len([st for st in stays.values() if st.exit_event_id and st.exit_event_id.startswith("sc-out")]) == TRAVELLERS
    )
