"""The sink's pure core: batch assembly, tokens, replay cuts, framing for ClickHouse staging."""

from __future__ import annotations

import io
import json

import fastavro
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError
from confluent_kafka import Message as KafkaMessage

from harness import samples
from schemas.convert import to_avro
from schemas.serde import Serde, latest_version
from shekara.settings import Settings
from sinks.batch import (
    Assembler,
    Intent,
    Message,
    Messages,
    Range,
    _Planner,
    batch_token,
    pending_intent,
    plan_batch,
    ranges_of,
)
from sinks.framing import Framer
from sinks.sink import SinkStats, _SinkLoop, columns_of
from sinks.stage import WIRE_HEADER, clickhouse_type, container, framed, stage_columns, zigzag
from sinks.writer import hmac_pads, routes


def msgs(topic: str, partition: int, offsets: range) -> list[Message]:
    return [Message(topic, partition, o, None, b"x") for o in offsets]


def test_ranges_and_token_depend_only_on_offsets():
    batch = msgs("a", 0, range(5, 10)) + msgs("b", 1, range(0, 3))
    assert ranges_of(batch) == (Range("a", 0, 5, 9), Range("b", 1, 0, 2))
    shuffled = list(reversed(batch))
    assert batch_token("g", ranges_of(batch)) == batch_token("g", ranges_of(shuffled))
    assert batch_token("g", ranges_of(batch)) != batch_token("g", ranges_of(batch[:-1]))
    assert batch_token("g", ranges_of(batch)) != batch_token("other-group", ranges_of(batch))


def test_assembler_flushes_on_size_and_on_time():
    a = Assembler(max_messages=4, max_wait=1.0)
    a.add(msgs("t", 0, range(0, 3)), now=0.0)
    assert not a.ready(0.5)
    assert a.ready(1.0)  # waited long enough
    a.add(msgs("t", 0, range(3, 6)), now=1.0)
    batch, intent = a.take("g", now=1.0)
    assert [m.offset for m in batch] == [0, 1, 2, 3]
    assert intent.ranges == (Range("t", 0, 0, 3),)
    assert len(a) == 2 and not a.ready(1.5) and a.ready(2.0)


def test_replay_cut_rebuilds_exactly_the_recorded_batch():
    recorded = Intent("tok", (Range("t", 0, 10, 12), Range("t", 1, 5, 5)))
    a = Assembler(max_messages=100, max_wait=0.0, cut=recorded)
    a.add(msgs("t", 0, range(10, 20)) + msgs("t", 2, range(0, 4)), now=0.0)
    assert not a.ready(5.0)  # partition 1 not read yet
    a.add(msgs("t", 1, range(5, 8)), now=0.0)
    assert a.ready(0.0)
    batch, intent = a.take("g", now=0.0)
    assert intent is recorded  # same token: ClickHouse drops what already landed
    assert sorted((m.partition, m.offset) for m in batch) == [(0, 10), (0, 11), (0, 12), (1, 5)]
    rest, _ = a.take("g", now=0.0)  # held-back messages follow in the next batch
    assert sorted((m.partition, m.offset) for m in rest)[:2] == [(0, 13), (0, 14)]
    assert len(rest) == 7 + 4 + 2


def test_replay_cut_completes_when_a_compacted_offset_never_comes():
    a = Assembler(max_messages=100, max_wait=0.0, cut=Intent("tok", (Range("t", 0, 0, 9),)))
    a.add(msgs("t", 0, range(0, 5)), now=0.0)
    assert not a.ready(0.0)
    a.partition_drained("t", 0)
    assert a.ready(0.0)


def test_pending_intent_finds_the_uncommitted_batch_only():
    older = Intent("old", (Range("t", 0, 0, 9), Range("t", 1, 0, 4)))
    newer = Intent("new", (Range("t", 0, 10, 19),))
    assert pending_intent([newer, older], {("t", 0): 10, ("t", 1): 5}) == newer
    assert pending_intent([newer, older], {("t", 0): 20, ("t", 1): 5}) is None  # newest was committed
    assert pending_intent([newer], {("t", 1): 5}) is None  # not ours to replay


def test_zigzag_matches_avro():
    for n in (0, 1, 63, 64, 127, 128, 300, 2**20, 2**31 - 1, 2**40):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, {"type": "long"}, n)
        assert zigzag(n) == buf.getvalue(), n


def test_container_is_the_writer_schema_plus_a_trailer():
    settings = Settings()
    serde = Serde.from_settings(settings)
    topic = settings.topics.crossings
    records = [samples.crossing(f"e{i}") for i in range(3)]
    keys = [None, b"", b"k" * 300]
    stamps = [1_767_225_600_123, None, -1]
    batch = [Message(topic, 2, 100 + i, keys[i], serde.encode(r, topic), stamps[i]) for i, r in enumerate(records)]
    plan = plan_batch(batch, Intent("t", ranges_of(batch)), routes(settings), Framer(settings))
    (group,) = plan.tables["crossings"].groups.values()
    ((schema_json, _),) = plan.tables["crossings"].groups.items()
    rows = list(fastavro.reader(io.BytesIO(container(schema_json, group.parts, len(group)))))
    assert [r["event_id"] for r in rows] == ["e0", "e1", "e2"]
    assert [(r["_msg"], r["_partition"], r["_delta"]) for r in rows] == [(0, 2, 0), (1, 2, 1), (2, 2, 2)]
    assert [(r["_ts"], r["_key"]) for r in rows] == [(stamps[0], b""), (None, b""), (-1, keys[2])]
    assert rows[0]["traveller"]["document"]["number"] == to_avro(records[0])["traveller"]["document"]["number"]
    assert json.loads(schema_json)["name"] == latest_version("Crossing").raw["name"]


def test_plan_rejects_what_it_cannot_route_or_read():
    settings = Settings()
    serde = Serde.from_settings(settings)
    t = settings.topics
    batch = [
        Message(t.crossings, 0, 0, b"k", b"\x07garbage"),
        Message(t.crossings, 0, 1, None, b"\xc3\x01" + b"\x00" * 8 + b"body"),
        Message(t.crossings, 0, 2, None, serde.encode(samples.registration("r1"), t.crossings)),
        Message(t.stays, 0, 0, b"stay-1", None),  # compaction tombstone
        Message(t.crossings, 0, 3, None, serde.encode(samples.crossing("ok"), t.crossings)),
    ]
    plan = plan_batch(batch, Intent("t", ranges_of(batch)), routes(settings), Framer(settings))
    reasons = [(r.message.offset, r.stage, r.reason) for r in plan.rejected]
    assert reasons[0][:2] == (0, "decode") and "bad magic byte 0x07" in reasons[0][2]
    assert reasons[1][:2] == (1, "decode") and "unknown schema fingerprint" in reasons[1][2]
    assert reasons[2][:2] == (2, "sink") and "Registration record" in reasons[2][2]
    assert plan.tombstones == 1
    assert plan.tables["crossings"].count == 1


@pytest.mark.parametrize(
    ("avro", "expected"),
    [
        (["null", "string"], "Nullable(String)"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "DateTime64(6, 'UTC')"),
        ({"type": "int", "logicalType": "date"}, "Date32"),
        ({"type": "map", "values": "string"}, "Map(String, String)"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "String"),
    ],
)
def test_clickhouse_types(avro, expected):
    assert clickhouse_type(avro) == expected


def test_stage_columns_follow_the_latest_schema():
    names = [n for n, _ in stage_columns("Crossing")]
    assert names[: len(latest_version("Crossing").raw["fields"])] == [
        f["name"] for f in latest_version("Crossing").raw["fields"]
    ]
    assert names[-5:] == ["_msg", "_partition", "_delta", "_ts", "_key"]


def test_hmac_pads_long_keys_are_hashed_first():
    short_i, short_o = hmac_pads(b"k")
    long_i, _ = hmac_pads(b"k" * 100)
    assert len(short_i) == 64 == len(long_i)
    assert short_i != short_o and short_i != long_i


def test_messages_are_columns_that_index_and_slice_as_messages():
    listed = msgs("a", 0, range(3)) + msgs("b", 1, range(7, 9)) + msgs("a", 0, range(3, 5))
    batch = Messages.of(listed)
    assert len(batch) == 7 and list(batch) == listed and batch[3] == listed[3]
    assert list(batch[2:4]) == listed[2:4]
    assert batch.runs() == [(0, 3), (3, 5), (5, 7)]
    batch.append(Message("a", 0, 5, None, b"x"))
    assert batch.runs() == [(0, 3), (3, 5), (5, 8)]  # not the runs cached before the append
    assert Messages().runs() == [] and ranges_of(Messages()) == ()
    assert Messages.of(msgs("a", 0, range(2)) + msgs("b", 0, range(2))).runs() == [(0, 2), (2, 4)]  # same number


def _framed_one_by_one(messages: list[Message], intent: Intent, settings: Settings) -> _Planner:
    planner = _Planner(Messages.of(messages), intent, routes(settings), Framer(settings))
    for start, end in planner.messages.runs():
        planner.frame_one_by_one(start, end)
    return planner


def test_bulk_framing_frames_exactly_as_one_by_one():
    settings = Settings()
    serde = Serde.from_settings(settings)
    t = settings.topics
    values = [serde.encode(samples.crossing(f"e{i}"), t.crossings) for i in range(12)]
    stamps = [1_767_225_600_000 + i // 4 for i in range(12)]
    batch = [
        *(Message(t.crossings, 0, 40 + i, b"key-%d" % i, values[i], stamps[i]) for i in range(4)),  # uniform
        *(Message(t.crossings, 3, 7 + 2 * i, b"k", values[4 + i], None) for i in range(3)),  # offset gaps
        *(Message(t.crossings, 1, 5 + i, (None, b"")[i % 2], values[7 + i], stamps[i]) for i in range(3)),  # no key
        Message(t.crossings, 0, 44, b"key", b"\x07garbage"),  # partition 0 again, a reject
        Message(t.crossings, 0, 45, b"key", values[10]),
        Message(t.stays, 2, 0, b"stay", None),  # tombstone
    ]
    intent = Intent("t", ranges_of(batch))
    plan = plan_batch(batch, intent, routes(settings), Framer(settings))
    one_by_one = _framed_one_by_one(batch, intent, settings).plan()
    assert plan.tables.keys() == one_by_one.tables.keys() == {"crossings"}
    ((schema_json, group),) = plan.tables["crossings"].groups.items()
    expected = one_by_one.tables["crossings"].groups[schema_json]
    assert group.indexes == expected.indexes == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert group.parts == expected.parts
    assert [(r.message, r.reason) for r in plan.rejected] == [(r.message, r.reason) for r in one_by_one.rejected]
    assert plan.tombstones == one_by_one.tombstones == 1
    assert plan.tables["crossings"].first_offsets == {0: 40, 1: 5, 3: 7}
    rows = list(fastavro.reader(io.BytesIO(container(schema_json, group.parts, len(group)))))
    assert [(r["_msg"], r["_partition"], r["_delta"]) for r in rows][3:6] == [(3, 0, 3), (4, 3, 0), (5, 3, 2)]


def test_bulk_framing_is_used_for_uniform_stretches():
    settings = Settings()
    serde = Serde.from_settings(settings)
    topic = settings.topics.crossings
    batch = [
        Message(topic, p, i, b"key", serde.encode(samples.crossing(f"e{i}"), topic), 7)
        for p in (0, 1)
        for i in range(5)
    ]
    planner = _Planner(Messages.of(batch), Intent("t", ranges_of(batch)), routes(settings), Framer(settings))
    assert [planner.frame_stretch(start, end) for start, end in planner.messages.runs()] == [True, True]
    keyless = [m._replace(key=None) for m in batch]
    planner = _Planner(Messages.of(keyless), Intent("t", ranges_of(keyless)), routes(settings), Framer(settings))
    assert not planner.frame_stretch(0, 5)  # left to `frame_one_by_one`, which frames an empty key


def test_a_shorter_wire_header_is_padded_and_a_longer_one_cut():
    assert framed(b"\xc3\x01" + b"f" * 8 + b"body", WIRE_HEADER) == b"\xc3\x01" + b"f" * 8 + b"body"
    assert framed(b"\x00\x00\x00\x00\x07body", 5) == bytes(5) + b"\x00\x00\x00\x00\x07body"
    assert framed(b"h" * 12 + b"body", 12) == b"h" * 10 + b"body"


def test_consumed_messages_become_columns_and_events_are_handled_in_order():
    eof = KafkaError(KafkaError._PARTITION_EOF)
    chunk = [
        KafkaMessage(topic="t", partition=0, offset=8, key=b"k", value=b"a", timestamp=(TIMESTAMP_CREATE_TIME, 5)),
        KafkaMessage(topic="t", partition=1, error=eof),
        KafkaMessage(topic="t", partition=0, error=eof),
        KafkaMessage(topic="t", partition=1, offset=3, value=b"b"),  # after its end-of-partition: not at end
    ]
    assert list(columns_of([chunk[0], chunk[3]])) == [Message("t", 0, 8, b"k", b"a", 5), Message("t", 1, 3, None, b"b")]

    class Consumer:
        def consume(self, _n: int, _timeout: float) -> list[KafkaMessage]:
            return chunk

    loop = object.__new__(_SinkLoop)
    loop.consumer, loop._callback_error, loop.at_end = Consumer(), None, {("t", 2)}  # type: ignore[assignment]
    loop.assembler, loop.stats = Assembler(10, 1.0), SinkStats()
    loop._poll(0.0)
    assert loop.at_end == {("t", 0), ("t", 2)}
    assert [(m.partition, m.offset) for m in loop.assembler.take("g", 0.0)[0]] == [(0, 8), (1, 3)]
    assert loop.stats.messages == 2
