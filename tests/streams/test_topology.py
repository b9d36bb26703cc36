"""The Faust topology against the real embedded broker, with workers run as real subprocesses.

Events are put on partition 0 with their traveller keys, so one partition's watermark governs them all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Producer

from harness import readback, samples
from schemas.ids import alert_id
from schemas.records import (
    AlertAction,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Crossing,
    Direction,
    Purpose,
    Registration,
    StatusChange,
    StatusChangeKind,
    Traveller,
)
from schemas.serde import Serde
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key, traveller_key
from shekara.rules import load_rules
from shekara.settings import Settings
from streams.core import address_key
from streams.worker import spawn_worker, wait_for_assignment
from tests.conftest import one_partition

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return one_partition(settings)  # every event on partition 0, where its key belongs


UZ_POST = Checkpoint("KZ-UZ-ZHIBEK-ZHOLY", CheckpointKind.ROAD, "UZB")
NOW = datetime.now(UTC)
ALMATY = ZoneInfo("Asia/Almaty")


def traveller(number: str) -> Traveller:
    return samples.traveller(number, birth_date=date(1990, 1, 1))


def crossing(event_id: str, number: str, when: datetime, direction: Direction, **kw: Any) -> Crossing:
    """A tourist's crossing at the Uzbek post, received now (`kw`: any other field of the factory's)."""
    kw = {"checkpoint": UZ_POST, "purpose": Purpose.TOURISM, "source_system": "test", "conveyance": None, **kw}
    return samples.crossing(
        event_id, event_time=when, received_time=NOW, direction=direction, traveller=traveller(number), **kw
    )


def status_change(event_id: str, when: datetime, kind: StatusChangeKind, number: str, authority: str = "p") -> Any:
    """A status change without dates or reference (a lost document, an open-ended expulsion), received now."""
    return samples.status_change(
        event_id,
        event_time=when,
        received_time=NOW,
        kind=kind,
        traveller=traveller(number),
        authority=authority,
        source_system="t",
        valid_from=None,
        valid_until=None,
        reference=None,
    )


def key_of(settings: Settings, number: str) -> bytes:
    """The message key a producer sends: the public partition key."""
    return partition_key("UZB", number).encode()


def tkey_of(settings: Settings, number: str) -> str:
    """The keyed traveller key the processors' outputs carry."""
    return traveller_key("UZB", number, settings.pseudonym_key_bytes)


def publish(settings: Settings, items: Sequence[tuple[str, bytes | None, bytes]]) -> None:
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for topic, key, value in items:
        # on the key's partition, as the publish client puts it: the intake refuses an event anywhere else
        p.produce(topic, key=key, value=value, partition=partition_of(key, settings.partitions) if key else 0)
    assert p.flush(10) == 0


def encoded(settings: Settings, record: Any) -> tuple[str, bytes, bytes]:
    t = settings.topics
    topic = {Crossing: t.crossings, Registration: t.registrations, StatusChange: t.status_changes}[type(record)]
    value = Serde.from_settings(settings).encode(record, topic)
    return topic, key_of(settings, record.traveller.document.number), value


@contextlib.contextmanager
def worker(settings: Settings, tmp_path: Path, app_id: str, name: str = "w") -> Iterator[Path]:
    status = tmp_path / f"{name}.json"
    proc = spawn_worker(settings, app_id=app_id, status_file=status, log_path=tmp_path / f"{name}.log")
    try:
        wait_for_assignment([status], timeout=60)
        yield status
    finally:
        proc.terminate()
        proc.wait(20)


def wait_for(what: Callable[[], Any], timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    # A 2-second allowed lateness: deadlines due "now" fire within seconds of wall time.
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    return s


def test_matcher_emits_alerts_stays_dead_letters_and_fires_deadlines_on_ticks(
    fast_settings: Settings, tmp_path: Path
) -> None:
    s = fast_settings
    t = s.topics
    transit_due = NOW + timedelta(seconds=3)
    registration = samples.registration(
        "c-reg",
        event_time=NOW - timedelta(days=10) + timedelta(hours=3),
        received_time=NOW,
        registration_id="reg-1",
        traveller=traveller("CC0000001"),
        host_id="hotel-1",
        address="Abai avenue 10",
        valid_from=(NOW - timedelta(days=10)).date(),
        valid_until=NOW.date(),
    )
    records: list[Crossing | Registration | StatusChange] = [
        status_change("a-lost", NOW - timedelta(hours=2), StatusChangeKind.DOCUMENT_LOST, "AA0000001"),
        crossing("a-in", "AA0000001", NOW - timedelta(hours=1), Direction.ENTRY),
        crossing("b-in", "BB0000001", NOW - timedelta(days=40), Direction.ENTRY),
        crossing("c-in", "CC0000001", NOW - timedelta(days=10), Direction.ENTRY),
        registration,
        crossing("c-out", "CC0000001", NOW - timedelta(days=2), Direction.EXIT),
        crossing(
            "d-in",
            "DD0000001",
            transit_due - timedelta(hours=120),
            Direction.ENTRY,
            purpose=Purpose.TRANSIT,
            declared_destination="RUS",
            planned_exit_checkpoint="KZ-RU-ZHAISAN",
        ),
        crossing("e-in", "EE0000001", NOW - timedelta(seconds=1), Direction.ENTRY),  # moves the watermark to now
    ]
    # Issue 16 item 3 through the broker: an expulsion without end date is accepted and bans (the default
    # 5 years); a daily trader (in 08:00, out 18:00 local) for 92 days in a row gets one WINDOW_BREACH, due
    # at his entry on the 91st day.
    records.append(
        status_change("h-expelled", NOW - timedelta(days=30), StatusChangeKind.EXPELLED, "HH0000001", authority="mvd")
    )
    records.append(crossing("h-in", "HH0000001", NOW - timedelta(hours=2), Direction.ENTRY))
    first = NOW.astimezone(ALMATY).date() - timedelta(days=100)
    morning = datetime(first.year, first.month, first.day, 8, tzinfo=ALMATY)
    for k in range(92):
        t_in = (morning + timedelta(days=k)).astimezone(UTC)  # wall-clock 08:00 each local day
        records.append(crossing(f"j-in-{k}", "JJ0000001", t_in, Direction.ENTRY))
        records.append(crossing(f"j-out-{k}", "JJ0000001", t_in + timedelta(hours=10), Direction.EXIT))
    bad_number = crossing("x-1", "??", NOW, Direction.ENTRY)
    wrong_key = crossing("x-2", "FF0000001", NOW, Direction.ENTRY)
    serde = Serde.from_settings(s)
    publish(
        s,
        [encoded(s, r) for r in records]
        + [
            (t.crossings, b"k", b"\x07 not avro"),
            (t.crossings, key_of(s, "GG0000001"), serde.encode(bad_number, t.crossings)),
            (t.crossings, key_of(s, "GG0000001"), serde.encode(wrong_key, t.crossings)),
        ],
    )

    with worker(s, tmp_path, "topology-test") as status:

        def transit_fired() -> list[Any]:
            return [a for a in readback.read_alerts(s) if a.type == AlertType.TRANSIT_OVERSTAY]

        transit = wait_for(transit_fired, timeout=60)
        stats = readback.GroupProgress(s, "topology-test", [t.crossings, t.registrations, t.status_changes])
        stats.wait_until_caught_up(timeout=30)
        stats.close()
        alerts = readback.read_alerts(s)
        stays = readback.read_stays(s)
        dead = readback.read_dead_letters(s)
        forwarded = readback.read_topic(s, t.address_registrations)
        worker_status = readback_status(status)

    # The deadline fired on a wall-clock tick, after its due time, not on the batch that brought the entry.
    assert transit[0].action == AlertAction.RAISED
    assert transit[0].due_time == transit_due.replace(microsecond=transit_due.microsecond)
    assert transit[0].emitted_time >= transit[0].due_time
    assert worker_status["deadline_fired"] >= 1
    # Outputs carry the keyed traveller key, a deadline-only step's too; never the public partition key.
    assert transit[0].traveller_key == tkey_of(s, "DD0000001")
    partition_keys = {key_of(s, n).decode() for n in ("AA0000001", "BB0000001", "CC0000001", "DD0000001")}
    assert not partition_keys & ({a.traveller_key for a in alerts} | {st.traveller_key for st in stays.values()})

    by_type = {(a.type, a.action) for a in alerts}
    lost_id = alert_id(AlertType.LOST_STOLEN_DOCUMENT, tkey_of(s, "AA0000001"), "a-in")
    assert lost_id in {a.alert_id for a in alerts if a.type == AlertType.LOST_STOLEN_DOCUMENT}
    assert (AlertType.IN_COUNTRY_OVERSTAY, AlertAction.RAISED) in by_type
    # C registered in time and left: no unregistered-stay alert for C.
    c_key = tkey_of(s, "CC0000001")
    assert not [a for a in alerts if a.traveller_key == c_key]

    (c_stay,) = [st for st in stays.values() if st.traveller_key == c_key]
    assert (c_stay.entry_event_id, c_stay.exit_event_id, c_stay.days, c_stay.days_over) == ("c-in", "c-out", 9, 0)

    reasons = {(d.stage, d.field) for d in dead}
    assert reasons == {("decode", None), ("validate", "traveller.document.number"), ("validate", "key")}
    assert all(d.source_topic == t.crossings and d.source_offset is not None and d.value for d in dead)

    banned = [a for a in alerts if a.type == AlertType.BANNED_ENTRY]
    assert [a.alert_id for a in banned] == [alert_id(AlertType.BANNED_ENTRY, tkey_of(s, "HH0000001"), "h-in")]
    ban_start = (NOW - timedelta(days=30)).astimezone(ALMATY).date()
    assert banned[0].details["until"] == load_rules().ban.last_day(ban_start).isoformat()
    # The trips reach the worker behind the watermark (after e-in): a batch that ends on an entry sees an open
    # stay that would breach and raises it; the exit in the next batch retracts it. The final set has one.
    last = {a.alert_id: a for a in alerts if a.type == AlertType.WINDOW_BREACH}
    breach = [a for a in last.values() if a.action != AlertAction.RETRACTED]
    assert [a.alert_id for a in breach] == [alert_id(AlertType.WINDOW_BREACH, tkey_of(s, "JJ0000001"), "j-in-90")]
    assert breach[0].due_time == (morning + timedelta(days=90)).astimezone(UTC)

    assert [(m.key, m.value) for m in forwarded] == [
        (address_key("KZ-75", "Abai avenue 10", s.pseudonym_key_bytes).encode(), encoded(s, registration)[2])
    ]


def readback_status(path: Path) -> dict[str, Any]:
    from streams.worker import read_status

    status = read_status(path)
    assert status is not None
    return status


@pytest.mark.slow
def test_state_survives_a_restart_on_another_machine_with_rocksdb(settings: Settings, tmp_path: Path) -> None:
    """Server-mode store: a new worker with an empty data dir recovers the traveller from the changelog."""
    s1 = settings.model_copy(update={"allowed_lateness_seconds": 2, "data_dir": tmp_path / "machine-1"})
    s1.faust = s1.faust.model_copy(update={"web_enabled": False, "store": "rocksdb://"})
    s2 = s1.model_copy(update={"data_dir": tmp_path / "machine-2"})
    t = s1.topics
    sources = [t.crossings, t.registrations, t.status_changes]
    # Many travellers in one batch: the changelog's last batch holds many records, as in real running.
    entries = [crossing(f"in-{i}", f"RR{i:07d}", NOW - timedelta(days=40), Direction.ENTRY) for i in range(300)]
    clock = crossing("clock", "ZZ0000001", NOW - timedelta(hours=2), Direction.ENTRY)  # moves the watermark on
    publish(s1, [encoded(s1, e) for e in [*entries, clock]])
    with worker(s1, tmp_path, "restart-test", "first"):
        progress = readback.GroupProgress(s1, "restart-test", sources)
        progress.wait_until_caught_up(timeout=60)
    overstays = {a.alert_id for a in readback.read_alerts(s1) if a.type == AlertType.IN_COUNTRY_OVERSTAY}
    assert len(overstays) == 300

    exits = [crossing(f"out-{i}", f"RR{i:07d}", NOW - timedelta(hours=1), Direction.EXIT) for i in range(300)]
    publish(s1, [encoded(s1, e) for e in exits])
    with worker(s2, tmp_path, "restart-test", "second"):
        progress.wait_until_caught_up(timeout=60)
        progress.close()
        alerts = readback.read_alerts(s2)
    kinds = {(a.type, a.action) for a in alerts}
    # Had the state been lost, each exit would be an exit without entry.
    assert (AlertType.EXIT_WITHOUT_ENTRY, AlertAction.RAISED) not in kinds
    resolved = {
        a.alert_id for a in alerts if a.type == AlertType.IN_COUNTRY_OVERSTAY and a.action == AlertAction.RESOLVED
    }
    assert resolved == overstays
    assert len({a.alert_id for a in alerts if a.type == AlertType.OUT_OF_COUNTRY_OVERSTAY}) == 300
    assert (tmp_path / "machine-2" / "faust").is_dir()
