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
from shekara.partitioning import partition_of
from shekara.settings import Settings
from streams.worker import read_status, spawn_worker
from tests.streams.test_topology import crossing, key_of

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


def _at(s: Settings, key: bytes) -> int:
    return partition_of(key, s.partitions)


def _spread(s: Settings, prefix: str, each: int) -> list[str]:
    """Document numbers, `each` of them on every partition (ordered by partition)."""
    found: dict[int, list[str]] = {p: [] for p in range(s.partitions)}
    j = 0
    while any(len(v) < each for v in found.values()):
        number = f"{prefix}{j:07d}"
        bucket = found[_at(s, key_of(s, number))]
        if len(bucket) < each:
            bucket.append(number)
        j += 1
    return [n for p in sorted(found) for n in found[p]]


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
        # As many travellers on each partition: each event on its key's partition (the intake refuses it elsewhere).
        for i, number in enumerate(_spread(s, "SC", TRAVELLERS // 4)):
            for ev in (
                crossing(f"sc-in-{i}", number, now - timedelta(days=10), Direction.ENTRY),
                crossing(f"sc-out-{i}", number, now - timedelta(days=1), Direction.EXIT),
            ):
                key = key_of(s, number)
                producer.produce(t.crossings, key=key, value=serde.encode(ev, t.crossings), partition=_at(s, key))
        for p, number in enumerate(_spread(s, "CLOCK", 1)):  # one current event per partition: every partition's
            ev = crossing(f"clock-{p}", number, now - timedelta(seconds=1), Direction.ENTRY)  # watermark passes exits
            key = key_of(s, number)
            producer.produce(t.crossings, key=key, value=serde.encode(ev, t.crossings), partition=_at(s, key))
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
