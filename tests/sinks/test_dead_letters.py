"""Dead letters exactly once (issue 15, item 4): real embedded broker (Tansu), real ClickHouse engine (chDB).

The sink never loops on a poison message, dead-letters only what it alone owns, never sends a dead letter
twice (not on a retry, not on a replay of its batch), lands every dead letter in `dead_letters` once, and
`shekara dead-letters` reads them back.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from harness import samples
from harness.readback import read_dead_letters
from schemas.serde import Serde
from shekara.partitioning import partition_of
from shekara.settings import Settings
from sinks import cli
from sinks.batch import Message, Rejected
from sinks.clickhouse import connect
from sinks.sink import owner, run_sink
from tests.conftest import one_partition
from tests.sinks.test_sink import counts, fast, publish, running_sink, scalar, wait_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return one_partition(settings)  # every event on partition 0, where its key belongs


BIG_KEY = b"k" * 500_000
GARBAGE = b"\x01 not avro at all"


def _reject(
    topic: str, stage: str, *, mirrors_intake: bool = False, key: bytes = b"k", value: bytes = b"v"
) -> Rejected:
    return Rejected(Message(topic, 0, 7, key, value), stage, "why", mirrors_intake=mirrors_intake)


def test_one_owner_per_rejected_message() -> None:
    sources = frozenset({"crossings", "registrations", "status-changes"})
    assert owner(_reject("crossings", "decode"), sources, "dead") == "processors"
    assert owner(_reject("crossings", "sink", mirrors_intake=True), sources, "dead") == "processors"
    # ClickHouse refusing a record the processors accepted: only the sink can see it
    assert owner(_reject("crossings", "sink"), sources, "dead") == "sink"
    # the processors' outputs are read by the sink alone
    assert owner(_reject("alerts", "decode"), sources, "dead") == "sink"
    assert owner(_reject("stays", "sink", mirrors_intake=True), sources, "dead") == "sink"
    assert owner(_reject("dead", "decode"), sources, "dead") == "nobody"


def _poison(s: Settings) -> list[tuple[str, bytes | None, bytes]]:
    """Bad messages among good ones, each on partition 0: the sink's own (outputs) and the processors' (sources)."""
    serde = Serde.from_settings(s)
    t = s.topics
    return [
        (t.stays, BIG_KEY, GARBAGE),  # sink-owned: a dead letter of it with both key and value would be > 1 MB
        (t.alerts, b"a", GARBAGE),
        (t.alerts, b"a", serde.encode(samples.alert(""), t.alerts)),  # fails the alerts' rejects: empty alert_id
        (t.crossings, BIG_KEY, serde.encode(samples.crossing("big-key"), t.crossings)),  # the processors' own
        (t.crossings, b"bad", GARBAGE),
    ]


def _produce(s: Settings, items: list[tuple[str, bytes | None, bytes]]) -> None:
    p = Producer({"bootstrap.servers": s.bootstrap_servers, "message.max.bytes": 2_000_000})
    for topic, key, value in items:
        # on the key's partition, as the publish client puts it: the intake refuses an event anywhere else
        p.produce(topic, key=key, value=value, partition=partition_of(key, s.partitions) if key else 0)
    assert p.flush(20) == 0


def _rewind(s: Settings) -> None:
    """Move the sink group's committed offsets back to the start: its batches are replayed, as after a crash."""
    consumer = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": s.sink.group_id})
    try:
        topics = [s.topics.crossings, s.topics.stays, s.topics.alerts]
        consumer.commit(offsets=[TopicPartition(t, p, 0) for t in topics for p in range(4)], asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.slow
def test_poison_is_dead_lettered_once_by_its_owner_through_retries_and_replays(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = fast(settings)
    good = [samples.crossing(f"c{i}") for i in range(20)] + [samples.alert("a1"), samples.stay("st1")]
    with running_sink(s) as (_stop, stats):
        admin = connect(s)  # same process: shares the sink's engine
        try:
            publish(s, [samples.crossing("probe")])
            wait_for(lambda: counts(s, "crossings")["crossings"] == 1)  # the sink is consuming
            admin.command("DETACH TABLE daily_flows")  # ClickHouse refuses every insert into crossings for now
            publish(s, good)
            _produce(s, _poison(s))
            time.sleep(2.0)  # the sink retries meanwhile
            admin.command("ATTACH TABLE daily_flows")
            wait_for(lambda: counts(s, "crossings")["crossings"] == 21, timeout=60)
            wait_for(lambda: counts(s, "dead_letters")["dead_letters"] == 3, timeout=60)
        finally:
            admin.close()
    assert stats[0].retries >= 1  # the refused insert was retried
    assert stats[0].dead_lettered == 3 and stats[0].skipped == 2
    assert counts(s, "alerts", "stays") == {"alerts": 1, "stays": 1}

    letters = read_dead_letters(s)  # the whole topic, to its end
    coords = Counter((d.source_topic, d.source_partition, d.source_offset) for d in letters)
    assert len(letters) == 3 and max(coords.values()) == 1, coords
    assert {d.source_topic for d in letters} == {s.topics.stays, s.topics.alerts}  # none for the sources
    big = next(d for d in letters if d.source_topic == s.topics.stays)
    assert len(big.key or b"") + len(big.value or b"") <= s.limits.dead_letter_payload_bytes

    # A replay of every batch (as after a crash before the offset commit): nothing is dead-lettered again.
    _rewind(s)
    again = run_sink(s, once=True)
    assert again.messages >= 28 and again.dead_lettered == 3
    assert len(read_dead_letters(s)) == 3
    assert counts(s, "crossings", "alerts", "stays") == {"crossings": 21, "alerts": 1, "stays": 1}
    assert scalar(s, "SELECT count() FROM dead_letters") == 3
    assert scalar(s, "SELECT uniqExact(source_topic, source_partition, source_offset) FROM dead_letters") == 3
    assert scalar(s, "SELECT countIf(writer_schema LIKE 'fp:%') FROM dead_letters") == 1  # the empty alert_id
    assert scalar(s, f"SELECT any(record_type) FROM dead_letters WHERE source_topic = '{s.topics.alerts}'") == "Alert"

    monkeypatch.setattr(cli, "get_settings", lambda: s)
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["dead-letters"])
    assert out.exit_code == 0, out.output
    assert "3 dead letters (3 distinct rejected messages)" in out.output
    assert "alerts: alert_id is empty" in out.output and "bad magic byte" in out.output
    latest = runner.invoke(app, ["dead-letters", "--latest", "1"])
    assert latest.exit_code == 0, latest.output
    assert sum(1 for line in latest.output.splitlines() if s.topics.alerts in line or s.topics.stays in line) == 1


@pytest.mark.integration
@pytest.mark.slow
def test_hostile_outputs_each_stored_or_dead_lettered_once_and_the_sink_drains(settings: Settings) -> None:
    # The sink is the only reader of the processors' outputs: whatever lands there is its to store or dead-letter.
    s = fast(settings)
    serde, t, rnd = Serde.from_settings(s), s.topics, random.Random(7)
    alert, stay = serde.encode(samples.alert("ok"), t.alerts), serde.encode(samples.stay("ok"), t.stays)

    def flipped(value: bytes) -> bytes:
        out = bytearray(value)
        out[rnd.randrange(10, len(out))] = rnd.randrange(256)
        return bytes(out)

    items: list[tuple[str, bytes | None, bytes]] = [
        (t.alerts, b"a", serde.encode(samples.alert("huge", reason="r" * 900_000), t.alerts))
    ]
    for _ in range(20):
        items += [
            (t.alerts, b"a", flipped(alert)),
            (t.stays, b"s", flipped(stay)),
            (t.stays, b"s", stay[: rnd.randrange(11, len(stay))]),  # truncated body
            (t.alerts, rnd.randbytes(rnd.randrange(600_000)), alert[:10] + rnd.randbytes(rnd.randrange(400))),
        ]
    _produce(s, items)

    stats = run_sink(s, once=True)  # returns only once every partition is drained: no batch retried for ever
    assert stats.messages >= len(items) and stats.retries == 0
    letters = Counter((d.source_topic, d.source_offset) for d in read_dead_letters(s))
    assert max(letters.values()) == 1 and len(letters) == stats.dead_lettered
    # Every message not dead-lettered is a record the contract reads (stored, or a duplicate of a stored one).
    offsets: Counter[str] = Counter()
    kept = 0
    for topic, _key, value in items:
        offset, offsets[topic] = offsets[topic], offsets[topic] + 1
        if (topic, offset) not in letters:
            serde.decode(value, topic)
            kept += 1
    assert kept >= 3 and len(letters) + kept == len(items)


@pytest.mark.integration
@pytest.mark.slow
def test_follow_prints_dead_letters_as_they_land(settings: Settings) -> None:
    from sinks import dead_letters as letters

    s = fast(settings)
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for row in letters.follow(s, every=0.2, stop=done.is_set):
            seen.append(letters.line(row))
            done.set()

    with running_sink(s):
        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        time.sleep(1.0)  # follow starts from now: what lands later is printed
        _produce(s, [(s.topics.alerts, b"a", GARBAGE)])
        done.wait(60)
        watcher.join(10)
    assert len(seen) == 1, seen
    assert f"{s.topics.alerts}[0]@0" in seen[0] and "decode" in seen[0] and "bad magic byte 0x01" in seen[0]
