"""The pure parts of the topology shell: watermarks, the deadline index, stored-state headers, admission."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness import samples
from schemas.records import (
    Crossing,
    EntryBasisKind,
    Purpose,
    Stay,
)
from schemas.serde import Serde
from shekara.pseudonym import partition_key, traveller_key
from shekara.settings import Limits, Settings
from streams.align import Aligner, in_record_order
from streams.deadlines import DeadlineIndex, Deadlines
from streams.holding import HoldingBuffer
from streams.intake import Accepted, Intake, Rejected
from streams.outputs import MAX_REASON_CHARS, bounded, dead_letter
from streams.stored import pack, unpack
from streams.watermark import Watermarks

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
LATE = timedelta(hours=6)


# --- watermarks ---------------------------------------------------------------------------------------------


def test_watermark_is_latest_event_time_less_lateness_per_partition() -> None:
    w = Watermarks(LATE)
    assert w.get(0) is None
    w.observe(0, T0, wall=100.0)
    w.observe(0, T0 - timedelta(hours=3), wall=100.1)  # a late event does not move it back
    w.observe(1, T0 + timedelta(days=1), wall=100.2)
    assert w.get(0) == T0 - LATE
    assert w.get(1) == T0 + timedelta(days=1) - LATE


def test_idle_partition_follows_the_wall_clock_from_its_last_event() -> None:
    w = Watermarks(LATE)
    w.observe(0, T0, wall=100.0)
    assert w.advance_idle(0, wall=160.0) == T0 + timedelta(seconds=60) - LATE
    # A new event whose time lags the advanced watermark never moves it back.
    w.observe(0, T0 + timedelta(seconds=10), wall=161.0)
    assert w.get(0) == T0 + timedelta(seconds=60) - LATE


def test_fast_replay_gains_nothing_from_the_wall_clock() -> None:
    # Events a day apart in event time arrive milliseconds apart: the watermark is set by the data alone.
    w = Watermarks(LATE)
    for i in range(100):
        w.observe(0, T0 + timedelta(days=i), wall=10.0 + i * 0.001)
    assert w.advance_idle(0, wall=10.1) == T0 + timedelta(days=99) + timedelta(seconds=0.001) - LATE


def test_forget_drops_revoked_partitions() -> None:
    w = Watermarks(LATE)
    w.observe(0, T0, wall=1.0)
    w.observe(3, T0, wall=1.0)
    w.forget({3})
    assert w.partitions() == [3]
    assert w.advance_idle(0, wall=2.0) is None


# --- deadline index -----------------------------------------------------------------------------------------


def test_deadlines_pop_in_time_order_up_to_the_watermark() -> None:
    idx = DeadlineIndex()
    idx.set("b", T0 + timedelta(hours=2))
    idx.set("a", T0 + timedelta(hours=1))
    idx.set("c", T0 + timedelta(hours=3))
    idx.set("d", None)
    assert len(idx) == 3
    assert idx.pop_due(T0) == []
    assert idx.pop_due(T0 + timedelta(hours=2)) == ["a", "b"]  # due exactly at the watermark fires
    assert idx.next_due() == T0 + timedelta(hours=3)
    assert len(idx) == 1


def test_resetting_a_key_moves_its_deadline() -> None:
    idx = DeadlineIndex()
    idx.set("a", T0)
    idx.set("a", T0 + timedelta(days=1))
    assert idx.pop_due(T0) == []
    idx.set("a", None)
    assert idx.pop_due(T0 + timedelta(days=2)) == []
    assert len(idx) == 0


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 1000) | st.none()), max_size=60),
    st.integers(0, 1000),
)
def test_index_matches_a_plain_dict(ops: list[tuple[str, int | None]], cut: int) -> None:
    idx = DeadlineIndex()
    model: dict[str, datetime] = {}
    for key, minutes in ops:
        due = None if minutes is None else T0 + timedelta(minutes=minutes)
        idx.set(key, due)
        if due is None:
            model.pop(key, None)
        else:
            model[key] = due
    watermark = T0 + timedelta(minutes=cut)
    expected = sorted((d, k) for k, d in model.items() if d <= watermark)
    assert idx.pop_due(watermark) == [k for _, k in expected]
    assert len(idx) == len(model) - len(expected)


def test_rebuild_keeps_only_owned_partitions() -> None:
    d = Deadlines()
    d.set(0, "stale", T0)
    d.rebuild([(0, "a", T0), (1, "b", T0), (2, "c", None)], keep={0, 2})
    assert d.partitions() == [0, 2]
    assert d.pop_due(0, T0) == ["a"]
    assert d.pop_due(1, T0) == []
    assert d.pending() == 0


# --- stored state -------------------------------------------------------------------------------------------


@given(st.integers(0, 65535), st.none() | st.datetimes(timezones=st.just(UTC)), st.binary(max_size=64))
def test_stored_value_round_trips(partition: int, due: datetime | None, state: bytes) -> None:
    p, d, s = unpack(pack(partition, due, state))
    assert (p, s) == (partition, state)
    if due is None:
        assert d is None
    else:
        assert d == due.replace(microsecond=due.microsecond)


# --- admission ----------------------------------------------------------------------------------------------


def _crossing(number: str = "AB1234567") -> Crossing:
    now = datetime.now(UTC)
    return samples.crossing(
        "e-1",
        event_time=now - timedelta(minutes=5),
        received_time=now,
        traveller=samples.traveller(number, birth_date=date(1990, 1, 1)),
        purpose=Purpose.TOURISM,
        source_system="test",
        conveyance=None,
    )


def test_admission_accepts_an_event_under_its_partition_key_and_gives_its_keyed_traveller_key() -> None:
    s = Settings()
    serde = Serde.from_settings(s)
    intake = Intake(s, serde)
    rec = _crossing()
    pkey = partition_key("UZB", "AB1234567")
    tkey = traveller_key("UZB", "AB1234567", s.pseudonym_key_bytes)
    verdict = intake.admit(
        s.topics.crossings, pkey.encode(), serde.encode(rec, s.topics.crossings), now=datetime.now(UTC)
    )
    assert isinstance(verdict, Accepted)
    assert (verdict.partition_key, verdict.traveller_key) == (pkey, tkey)
    keyed = intake.admit(
        s.topics.crossings, tkey.encode(), serde.encode(rec, s.topics.crossings), now=datetime.now(UTC)
    )
    assert isinstance(keyed, Rejected) and keyed.field == "key"  # the secret key is not a message key
    assert verdict.event == rec


def test_admission_rejects_with_stage_reason_and_field() -> None:
    s = Settings()
    serde = Serde.from_settings(s)
    intake = Intake(s, serde)
    now = datetime.now(UTC)
    tkey = partition_key("UZB", "AB1234567").encode()

    garbage = intake.admit(s.topics.crossings, tkey, b"\x07not avro", now=now)
    assert isinstance(garbage, Rejected) and garbage.stage == "decode" and "magic" in garbage.reason

    bad_doc = _crossing(number="??")
    v = intake.admit(s.topics.crossings, tkey, serde.encode(bad_doc, s.topics.crossings), now=now)
    assert isinstance(v, Rejected) and v.stage == "validate" and v.field == "traveller.document.number"

    wrong_key = intake.admit(
        s.topics.crossings, b"somebody-else", serde.encode(_crossing(), s.topics.crossings), now=now
    )
    assert isinstance(wrong_key, Rejected) and wrong_key.field == "key"

    stay = Stay(
        "s",
        0,
        "k",
        "UZB",
        EntryBasisKind.VISA_FREE,
        Purpose.TOURISM,
        None,
        None,
        None,
        None,
        None,
        None,
        1,
        30,
        0,
        "r",
        "1",
        now,
    )
    misplaced = intake.admit(s.topics.crossings, tkey, serde.encode(stay, s.topics.stays), now=now)
    assert isinstance(misplaced, Rejected) and "Stay record on" in misplaced.reason

    empty = intake.admit(s.topics.crossings, tkey, None, now=now)
    assert isinstance(empty, Rejected) and empty.stage == "decode"


# --- aligning the co-partitioned sources --------------------------------------------------------------------


def test_aligner_holds_back_records_ahead_of_the_slowest_co_partition() -> None:
    a = Aligner(("crossings", "registrations", "status"), slack_ms=100, idle_s=2, startup_grace_s=0)
    a.observe("crossings", 0, 1_000, wall=10.0)
    a.observe("registrations", 0, 5_000, wall=10.0)  # a whole backlog of registrations came in one fetch
    assert a.release_bound(0, wall=10.1) == 1_100  # registrations up to 1.1 s of record time may go now
    a.observe("crossings", 0, 4_950, wall=10.5)
    assert a.release_bound(0, wall=10.6) == 5_050
    assert a.release_bound(1, wall=10.6) == float("inf")  # nothing seen on partition 1: nothing to wait for


def test_an_idle_or_empty_topic_holds_nobody_back() -> None:
    a = Aligner(("crossings", "registrations", "status"), slack_ms=100, idle_s=2)
    a.observe("status", 0, 1_000, wall=1.0)  # one old status change, then nothing more on that partition
    a.observe("crossings", 0, 9_000, wall=5.0)
    a.observe("registrations", 0, 9_500, wall=5.0)
    assert a.release_bound(0, wall=5.1) == 9_100  # status is idle: crossings is the slowest still delivering
    assert a.release_bound(0, wall=7.5) == float("inf")  # everything went quiet: release all
    a.reset()
    assert a.release_bound(0, wall=7.5) == float("inf")


def test_a_topic_not_heard_from_since_assignment_holds_the_others_for_a_grace() -> None:
    # The first fetch brought crossings only: the registrations of the same partition may be days behind them.
    a = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2, startup_grace_s=5)
    a.observe("crossings", 0, 9_000, wall=100.0)
    assert a.release_bound(0, wall=101.0) == float("-inf")  # hold everything: registrations not heard from yet
    a.observe("registrations", 0, 1_000, wall=101.5)
    assert a.release_bound(0, wall=101.6) == 1_100  # now in step: registrations first
    b = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2, startup_grace_s=5)
    b.observe("crossings", 0, 9_000, wall=100.0)
    b.observe("crossings", 0, 9_000, wall=105.0)
    assert b.release_bound(0, wall=105.1) == 9_100  # an empty topic-partition holds nobody back after the grace
    b.reset()
    b.observe("crossings", 0, 9_500, wall=200.0)
    assert b.release_bound(0, wall=201.0) == float("-inf")  # a new assignment: a new grace


def test_a_quiet_topic_with_records_still_waiting_keeps_holding_the_others() -> None:
    a = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2, stalled_s=30)
    a.observe("crossings", 0, 1_000, wall=0.0, offset=99)
    a.observe("registrations", 0, 9_000, wall=0.0, offset=10)
    waiting = {("crossings", 0): 5_000, ("registrations", 0): 11}  # crossings has 4,900 records not fetched yet
    assert a.release_bound(0, wall=5.0, highwaters=waiting) == 1_100
    assert a.release_bound(0, wall=5.0, highwaters={("crossings", 0): 100}) == float("inf")  # it is at its end
    assert a.release_bound(0, wall=31.0, highwaters=waiting) == float("inf")  # the consumer stalled: let go
    a.worked(29.0)  # ... unless the matcher was busy working released events meanwhile: nothing could come
    assert a.release_bound(0, wall=31.0, highwaters=waiting) == 1_100


def test_a_backlog_starved_by_other_partitions_holds_its_co_partitions_however_long() -> None:
    # Seen in a 60-day evaluation at full speed (4 partitions): aiokafka handed out other partitions' fetched records
    # for 30 s while crossings-2 had 12,000 records waiting (offset 7,171, high watermark 19,127). Released after a
    # fixed wait, registrations-2 ran 10 s of record time (a week of simulated time) ahead: a traveller's entry then
    # came after a registration a week later, beyond the core's re-ordering horizon (dead letter, and a spurious
    # EXIT_WITHOUT_ENTRY at the exit).
    a = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2, stalled_s=30)
    a.observe("crossings", 2, 1_000, wall=0.0, offset=7_170)
    a.observe("registrations", 2, 1_050, wall=0.0, offset=500)
    ends = {("crossings", 2): 19_127, ("registrations", 2): 5_167}
    wall = 0.0
    for step in range(1, 121):  # two minutes of the consumer busy with other partitions, crossings-2 delivering nothing
        wall = step * 1.0
        a.observe("registrations", 2, 1_050 + step * 100, wall=wall, offset=500 + step)
        a.observe("crossings", 0, 1_000 + step * 100, wall=wall, offset=step)
        assert a.release_bound(2, wall=wall, highwaters=ends) == 1_100  # held at the starved crossings
    assert a.release_bound(2, wall=wall, highwaters={**ends, ("crossings", 2): 7_171}) > 1_100  # nothing waiting


def test_an_unseen_topic_with_records_waiting_holds_its_co_partitions_past_the_grace() -> None:
    # At start-up the first status changes of partition 2 came 16 s after its crossings; a 5 s grace let crossings
    # of up to 4 s of record time after them through first.
    a = Aligner(("crossings", "status"), slack_ms=100, idle_s=2, startup_grace_s=5, stalled_s=30)
    a.start_at({("crossings", 2): 0, ("status", 2): 0})
    a.observe("crossings", 2, 1_000, wall=0.0, offset=0)
    for wall in (1.0, 6.0, 16.0):
        a.observe("crossings", 0, 1_000, wall=wall, offset=int(wall))  # the consumer is busy elsewhere
        assert a.release_bound(2, wall=wall, highwaters={("crossings", 2): 3_159, ("status", 2): 33}) == float("-inf")
    # nothing waiting on the unseen topic-partition: after the grace, crossings go at their own pace
    assert a.release_bound(2, wall=16.0, highwaters={("crossings", 2): 3_159, ("status", 2): 0}) == 1_100
    a.reset()  # start_at and reset may come in either order after a rebalance
    a.observe("crossings", 2, 1_000, wall=20.0, offset=0)
    assert a.release_bound(2, wall=26.0, highwaters={("crossings", 2): 3_159, ("status", 2): 33}) == float("-inf")


def _held_event(topic: str, partition: int, offset: int, timestamp_ms: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=timestamp_ms / 1000)
    )


def test_what_is_released_together_is_worked_in_record_time_order() -> None:
    # Crossings held back (w+35.9 s of a 60-day evaluation at full speed) while registrations-2 was waited for, then
    # released together with the registrations that had preceded them: in arrival order, a chunk of crossings days of
    # event time later went first, the watermark passed the registrations' deadlines, and 524 UNREGISTERED_STAY were
    # raised and retracted.
    held = [_held_event("crossings", 2, o, ts) for o, ts in ((10, 1_000), (11, 3_000), (12, 6_000), (13, 9_000))]
    held += [_held_event("registrations", 2, o, ts) for o, ts in ((5, 500), (6, 2_000), (7, 5_000), (8, 9_500))]
    aligner = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2)
    for ev in held:
        aligner.observe(ev.message.topic, 2, ev.message.timestamp * 1000, wall=0.0, offset=ev.message.offset)
    holding = HoldingBuffer()
    ready = holding.admit(held, lambda p: aligner.release_bound(p, 0.5, {}), taken=0.0)
    assert [(e.message.topic[0], e.message.offset) for e in ready] == [
        ("r", 5),
        ("c", 10),
        ("r", 6),
        ("c", 11),
        ("r", 7),
        ("c", 12),
        ("c", 13),  # registrations' 9.5 s: ahead
    ]
    assert [e.message.offset for e in holding.events()] == [8]


def test_a_topic_partition_is_released_as_a_prefix_of_its_offsets() -> None:
    # Two producers append to one partition (the simulator's raw one for malformed payloads): its timestamps may go
    # back a little. Its later records wait while an earlier one is held, so each topic-partition keeps its order.
    held = [
        _held_event("crossings", 0, 1, 1_000),
        _held_event("crossings", 0, 2, 1_200),
        _held_event("crossings", 0, 3, 1_050),
    ]
    held.append(_held_event("registrations", 0, 1, 1_100))
    aligner = Aligner(("crossings", "registrations"), slack_ms=0, idle_s=2)
    for ev in held:
        aligner.observe(ev.message.topic, 0, ev.message.timestamp * 1000, wall=0.0, offset=ev.message.offset)
    holding = HoldingBuffer()
    ready = holding.admit(held, lambda p: aligner.release_bound(p, 0.5, {}), taken=0.0)  # bound: 1,100 ms
    assert [(e.message.topic[0], e.message.offset) for e in ready] == [("c", 1), ("r", 1)]
    assert [e.message.offset for e in holding.events()] == [2, 3]
    # each source's own order, merged by the timestamps at their heads
    merged = in_record_order([("a", 3), ("a", 1), ("b", 2)], lambda x: x[0], lambda x: x[1])
    assert merged == [("b", 2), ("a", 3), ("a", 1)]


# --- messages too large (settings.limits) ---------------------------------------------------------------------


def test_a_key_or_value_over_its_limit_is_refused_before_decoding() -> None:
    s = Settings(limits=Limits(max_key_bytes=40, max_value_bytes=1_000))
    intake = Intake(s, Serde.from_settings(s))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    big_key = intake.admit(s.topics.crossings, b"k" * 41, b"\x07 not avro", now=now)
    assert big_key == Rejected("validate", "message key is 41 bytes, more than the limit of 40 bytes", "key")
    big_value = intake.admit(s.topics.crossings, b"k", b"\x07" * 1_001, now=now)
    assert big_value == Rejected("validate", "message value is 1001 bytes, more than the limit of 1000 bytes", "value")
    at_limits = intake.admit(s.topics.crossings, b"k" * 40, b"\x07" * 1_000, now=now)
    assert isinstance(at_limits, Rejected) and at_limits.stage == "decode"  # read, and refused for what it is


def test_a_dead_letter_is_cut_to_its_payload_limit_and_keeps_its_reason() -> None:
    limits = Limits(max_key_bytes=40, dead_letter_payload_bytes=100)
    letter = dead_letter(
        topic="t",
        partition=1,
        offset=7,
        key=b"k" * 500_000,
        value=b"v" * 900_000,
        stage="validate",
        reason="message key is 500000 bytes, more than the limit of 40 bytes" + " and more" * 1_000,
        field="key",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    cut = bounded(letter, limits)
    assert (cut.key, cut.value) == (b"k" * 40, b"v" * 60)
    assert cut.reason.startswith("message key is 500000 bytes") and len(cut.reason) == MAX_REASON_CHARS
    assert (cut.source_topic, cut.source_partition, cut.source_offset, cut.stage, cut.field) == (
        "t",
        1,
        7,
        "validate",
        "key",
    )
    small = dataclasses.replace(letter, key=b"k", value=b"v", reason="short")
    assert bounded(small, limits) is small


# --- start-up objects out of the collector's way ---------------------------------------------------------------


def test_start_up_objects_are_frozen_once_after_the_first_recovery(monkeypatch: Any) -> None:
    import asyncio
    import gc

    from streams import topology

    monkeypatch.setattr(topology, "_frozen", False)
    gc.unfreeze()
    try:
        asyncio.run(topology._freeze_start_up())
        first = gc.get_freeze_count()
        assert first > 1000, "start-up's live objects were not moved to the permanent generation"
        later = [[i] for i in range(1000)]  # made after start-up: stays collectable
        asyncio.run(topology._freeze_start_up())  # a later assignment's recovery
        assert gc.get_freeze_count() == first, "frozen again: garbage alive at a later recovery would never go"
        assert any(gc.is_tracked(x) for x in later)
    finally:
        gc.unfreeze()
