"""The matcher's computation (`streams.matching`) and where it runs (`streams.offload`): plain values in and out,
a real child process; no broker. How batches are taken (`streams.drain`): tests/streams/test_drain.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

import streams.matching as matching_module
from harness import samples
from schemas.records import (
    Alert,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Crossing,
    HostKind,
    Purpose,
    Registration,
    StatusChange,
    StatusChangeKind,
    Traveller,
)
from schemas.serde import Serde
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key, traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import Limits, Settings
from streams.core import AddressState, TravellerState, address_key, address_step
from streams.intake import Accepted, Rejected
from streams.matching import Matching, RawMessage, StepRequest
from streams.offload import LocalMatching, MatchingFailed, MatchingProcess
from streams.stored import unpack
from tests.streams.core.factory import RULES, person, registration

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
SENT = (T0 + timedelta(minutes=1)).timestamp()  # producer timestamp of every message: just after the events
P = 0  # settings: one partition, where every key belongs (streams.intake checks the partition)


def _traveller(number: str) -> Traveller:
    return samples.traveller(number, birth_date=date(1990, 1, 1))


def _entry(number: str, event_id: str) -> Crossing:
    return samples.crossing(
        event_id,
        event_time=T0,
        received_time=T0,
        checkpoint=Checkpoint("KZ-RU-UBE", CheckpointKind.ROAD, "UZB"),
        traveller=_traveller(number),
        purpose=Purpose.TOURISM,
        source_system="test",
        conveyance=None,
    )


def _lost(number: str) -> StatusChange:
    return samples.status_change(
        f"lost-{number}",
        event_time=T0 - timedelta(days=1),
        received_time=T0 - timedelta(days=1),
        kind=StatusChangeKind.DOCUMENT_LOST,
        traveller=_traveller(number),
        authority="police",
        source_system="test",
        valid_from=None,
        valid_until=None,
        reference=None,
    )


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(partitions=1)


@pytest.fixture(scope="module")
def serde(settings: Settings) -> Serde:
    return Serde.from_settings(settings)


def _chunk(settings: Settings, serde: Serde) -> list[RawMessage]:
    t = settings.topics
    lost_key = partition_key("UZB", "LOST12345").encode()
    ok_key = partition_key("UZB", "GOOD12345").encode()
    return [
        (t.status_changes, P, 0, lost_key, serde.encode(_lost("LOST12345"), t.status_changes), SENT),
        (t.crossings, P, 0, lost_key, serde.encode(_entry("LOST12345", "in-lost"), t.crossings), SENT),
        (t.crossings, P, 1, ok_key, serde.encode(_entry("GOOD12345", "in-good"), t.crossings), SENT),
        (t.crossings, P, 2, ok_key, b"\x07 not avro", SENT),
        (t.crossings, P, 3, b"someone-else", serde.encode(_entry("GOOD12345", "in-other"), t.crossings), SENT),
    ]


def _matching(settings: Settings, serde: Serde) -> Matching:
    return Matching(settings, load_rules(settings.rules_file), load_checkpoints(), serde)


def test_work_admits_steps_and_rejects_with_stages(settings: Settings, serde: Serde) -> None:
    chunk = _chunk(settings, serde)
    worked = _matching(settings, serde).work(chunk, {}, {P: None}, T0 + timedelta(minutes=2))
    assert worked.accepted == 3
    assert sorted((i, stage) for i, stage, _, _ in worked.rejected) == [(3, "decode"), (4, "validate")]
    assert [f for i, _, _, f in worked.rejected if i == 4] == ["key"]
    assert worked.latest == {P: T0}
    assert sorted(worked.travellers[P]) == sorted(m[3].decode() for m in chunk[:3:2])  # type: ignore[union-attr]
    alerts = [serde.decode(v, settings.topics.alerts) for _, v in worked.alerts]
    assert [a.type for a in alerts if isinstance(a, Alert)] == [AlertType.LOST_STOLEN_DOCUMENT]
    # one stored value per traveller, headed by its partition and next deadline
    assert {(p, key) for p, key, _, _ in worked.states} == {(P, m[3].decode()) for m in chunk[:3:2]}  # type: ignore[union-attr]
    for p, _, value, due in worked.states:
        assert unpack(value)[:2] == (p, due)
    # stored under the public partition key, but the state and every output carry the keyed traveller key
    lost = traveller_key("UZB", "LOST12345", settings.pseudonym_key_bytes)
    assert {a.traveller_key for a in alerts if isinstance(a, Alert)} == {lost}
    keyed = {TravellerState.from_bytes(unpack(v)[2]).traveller_key for _, _, v, _ in worked.states}
    assert keyed == {lost, traveller_key("UZB", "GOOD12345", settings.pseudonym_key_bytes)}


def test_work_steps_at_the_watermark_the_shell_will_reach(settings: Settings, serde: Serde) -> None:
    m = _matching(settings, serde)
    chunk = _chunk(settings, serde)[2:3]  # one entry, visa-free: deadlines ahead
    first = m.work(chunk, {}, {P: None}, T0)
    (_, key, value, due) = first.states[0]
    assert due is not None and due > T0
    # A watermark already past the deadline (e.g. moved on by the wall clock) is kept, not moved back to the
    # chunk's latest event time less the lateness: the deadline fires in this very step.
    again = m.work(chunk, {(P, key.encode()): value}, {P: due + timedelta(seconds=1)}, T0)
    assert again.alerts, "a watermark past the due time fires the deadline"
    before = m.work(chunk, {(P, key.encode()): value}, {P: None}, T0)
    assert not before.alerts


def test_step_fires_deadlines_of_travellers_without_events(settings: Settings, serde: Serde) -> None:
    m = _matching(settings, serde)
    first = m.work(_chunk(settings, serde)[2:3], {}, {P: None}, T0)
    (_, key, value, due) = first.states[0]
    assert due is not None
    early = m.step({P: (due - timedelta(seconds=1), [(key, value)])}, T0)
    assert not early.alerts and early.states[0][2] == value  # nothing due: the state is unchanged
    fired = m.step({P: (due, [(key, value)])}, T0)
    assert fired.alerts and fired.states[0][3] != due
    good = traveller_key("UZB", "GOOD12345", settings.pseudonym_key_bytes)
    assert {serde.decode(v, settings.topics.alerts).traveller_key for _, v in fired.alerts} == {good}  # type: ignore[union-attr]
    # a deadline step without a stored state still keys the new state with the keyed traveller key
    empty = m.step({P: (due, [(key, None)])}, T0)
    assert TravellerState.from_bytes(unpack(empty.states[0][2])[2]).traveller_key == good


def test_verdicts_admitted_ahead_serve_work_for_the_same_message_only(settings: Settings, serde: Serde) -> None:
    m = _matching(settings, serde)
    chunk = _chunk(settings, serde)
    assert m.admit_ahead(chunk) == len(chunk)
    # Same offset, other bytes (a topic deleted and created again): that one must be admitted afresh.
    again = _entry("GOOD12345", "in-again")
    changed = [*chunk[:2], (*chunk[2][:4], serde.encode(again, settings.topics.crossings), SENT), *chunk[3:]]
    admitted: list[str] = []
    real = m.intake.admit

    def admit(
        topic: str, key: bytes | None, value: bytes | None, *, now: datetime, partition: int | None = None
    ) -> Accepted | Rejected:
        admitted.append(topic)
        return real(topic, key, value, now=now, partition=partition)

    m.intake.admit = admit  # type: ignore[method-assign]
    worked = m.work(changed, {}, {P: None}, T0)
    assert len(admitted) == 1
    assert worked == _matching(settings, serde).work(changed, {}, {P: None}, T0)
    assert m.work(changed, {}, {P: None}, T0) == worked and len(admitted) == 1 + len(changed)  # used up


def test_a_core_failure_dead_letters_that_travellers_events_only(
    settings: Settings, serde: Serde, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = matching_module.step
    broken = traveller_key("UZB", "GOOD12345", settings.pseudonym_key_bytes)

    def step(state, events, **kw):
        if state.traveller_key == broken:
            raise RuntimeError("core bug")
        return real_step(state, events, **kw)

    monkeypatch.setattr(matching_module, "step", step)
    worked = _matching(settings, serde).work(_chunk(settings, serde), {}, {P: None}, T0)
    assert [(i, stage) for i, stage, _, _ in worked.rejected if stage == "process"] == [(2, "process")]
    # The reason names the failure, not its text (which may quote a traveller's values); the text is logged.
    assert (
        next(r for i, _, r, _ in worked.rejected if i == 2)
        == "the matcher failed on this traveller's events: RuntimeError"
    )
    assert [key for _, key, _, _ in worked.states] == [partition_key("UZB", "LOST12345")]  # stored by partition key
    assert worked.failures == [(P, "RuntimeError('core bug')", 1)]


def test_outputs_too_large_to_send_dead_letter_their_events_and_keep_the_state(serde: Serde) -> None:
    # Sources of ~85 bytes pass; the lost-document traveller's new state (~1040 bytes) does not fit in 900.
    small = Settings(partitions=1, limits=Limits(max_value_bytes=900))
    worked = _matching(small, serde).work(_chunk(small, serde), {}, {P: None}, T0)
    too_large = [(i, stage) for i, stage, reason, _ in worked.rejected if "more than the limit of 900" in reason]
    assert too_large == [(0, "process"), (1, "process")]
    assert next(r for i, _, r, _ in worked.rejected if i == 0).startswith("the traveller state these events make")
    assert not worked.alerts  # the lost-document alert went with the state
    assert [key for _, key, _, _ in worked.states] == [partition_key("UZB", "GOOD12345")]


def test_oversized_address_messages_are_refused_before_decoding(settings: Settings, serde: Serde) -> None:
    _, chunk, _ = _address_chunk(settings, serde)
    topic = settings.topics.address_registrations
    chunk += [(topic, P, 92, b"k" * 257, chunk[0][4], SENT), (topic, P, 93, b"k", b"v" * 900_001, SENT)]
    checked = _matching(settings, serde).check_addresses(chunk, {}, T0)
    refused = [(i, stage, reason.split(",")[0]) for i, stage, reason in checked.rejected if i >= len(chunk) - 2]
    assert refused == [
        (len(chunk) - 2, "validate", "message key is 257 bytes"),
        (len(chunk) - 1, "validate", "message value is 900001 bytes"),
    ]


def _address_chunk(settings: Settings, serde: Serde) -> tuple[str, list[RawMessage], list[Registration]]:
    """Twelve foreigners registered at one private address (the eleventh is one too many), and two bad messages."""
    topic = settings.topics.address_registrations
    regs = [
        registration(
            f"2026-03-01 {8 + i:02d}:00",
            who=person("UZB", f"N{5000000 + i}"),
            reg_id=f"A-{i}",
            host=HostKind.PRIVATE_HOST,
            address="Tole Bi 25, kv. 7",
        )
        for i in range(12)
    ]
    akey = address_key(regs[0].region, regs[0].address, settings.pseudonym_key_bytes)
    chunk: list[RawMessage] = [(topic, P, i, akey.encode(), serde.encode(r, topic), SENT) for i, r in enumerate(regs)]
    chunk.insert(3, (topic, P, 90, akey.encode(), b"\x07 not avro", SENT))
    chunk.insert(
        5, (topic, P, 91, akey.encode(), serde.encode(_lost("LOST12345"), settings.topics.status_changes), SENT)
    )
    return akey, chunk, regs


def test_check_addresses_gives_what_the_core_gives_and_rejects_what_it_cannot_read(
    settings: Settings, serde: Serde
) -> None:
    akey, chunk, regs = _address_chunk(settings, serde)
    checked = _matching(settings, serde).check_addresses(chunk, {}, T0)
    assert [(i, stage) for i, stage, _ in checked.rejected] == [(3, "decode"), (5, "decode")]
    assert "expected a Registration" in checked.rejected[1][2]
    assert checked.accepted == 12 and not checked.failures

    def key_of(r: Registration) -> str:
        return traveller_key(
            r.traveller.document.issuing_country, r.traveller.document.number, settings.pseudonym_key_bytes
        )

    state, alerts = address_step(AddressState.empty(akey), regs, traveller_key_of=key_of, emitted_time=T0, rules=RULES)
    assert [serde.decode(v, settings.topics.alerts) for _, v in checked.alerts] == alerts
    assert [a.type for a in alerts] == [AlertType.FICTITIOUS_ADDRESS]
    assert checked.states == [(P, akey.encode(), state.to_bytes())]
    # From the stored state: the same registrations again change nothing and raise nothing.
    again = _matching(settings, serde).check_addresses(chunk, {(P, akey.encode()): state.to_bytes()}, T0)
    assert not again.alerts and again.states == checked.states


def test_an_address_check_failure_dead_letters_that_addresss_registrations(
    settings: Settings, serde: Serde, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, chunk, _ = _address_chunk(settings, serde)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("core bug")

    monkeypatch.setattr(matching_module, "address_step", broken)
    checked = _matching(settings, serde).check_addresses(chunk, {}, T0)
    assert sorted(i for i, stage, _ in checked.rejected if stage == "process") == [
        i for i in range(len(chunk)) if i not in (3, 5)
    ]
    assert not checked.states and not checked.alerts and checked.failures == [(P, "RuntimeError('core bug')", 12)]


def test_the_child_process_gives_what_the_worker_itself_gives(settings: Settings, serde: Serde) -> None:
    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()
    chunk, now = _chunk(settings, serde), T0 + timedelta(minutes=2)

    async def both() -> None:
        local = LocalMatching(settings, rules, checkpoints)
        child = MatchingProcess(settings, rules, checkpoints)
        child.start()
        try:
            here = await local.work(chunk, {}, {P: None}, now)
            there = await child.work(chunk, {}, {P: None}, now)
            assert there == here and there.alerts
            (_, key, value, due) = here.states[-1]
            assert due is not None
            request: StepRequest = {P: (due, [(key, value)])}
            assert await child.step(request, now) == await local.step(request, now)
            _, addresses, _ = _address_chunk(settings, serde)
            assert await child.check_addresses(addresses, {}, now) == await local.check_addresses(addresses, {}, now)
            await child.admit_ahead(chunk)  # kept in the child: the same answer from its verdicts
            assert await child.work(chunk, {}, {P: None}, now) == here
            # A child that dies takes the batch with it: the call raises (the worker then exits unacknowledged).
            child._process.kill()
            child._process.join(5)
            with pytest.raises(MatchingFailed):
                await child.work(chunk, {}, {P: None}, now)
        finally:
            child.close()

    asyncio.run(both())


def test_calls_in_flight_together_are_answered_each_with_its_own_result(settings: Settings, serde: Serde) -> None:
    # Chunks of thousands of travellers: requests and answers of megabytes, more than the pipe holds at once, so
    # a sender and a receiver that waited on each other (a first version did) would hang here.
    settings = Settings(partitions=3)  # each chunk on its own partition, with travellers whose keys belong there
    t = settings.topics
    chunks: list[list[RawMessage]] = []
    for c in range(3):
        candidates = (f"C{c}N{i:06d}" for i in range(20_000))
        numbers = [n for n in candidates if partition_of(partition_key("UZB", n).encode(), 3) == c][:3000]
        chunks.append(
            [
                (t.crossings, c, i, partition_key("UZB", n).encode(), serde.encode(_entry(n, n), t.crossings), SENT)
                for i, n in enumerate(numbers)
            ]
        )
    now = T0 + timedelta(minutes=2)
    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()

    async def both() -> None:
        child = MatchingProcess(settings, rules, checkpoints)
        child.start()
        try:
            there = await asyncio.wait_for(
                asyncio.gather(*(child.work(chunk, {}, {c: None}, now) for c, chunk in enumerate(chunks))), 120
            )
        finally:
            child.close()
        local = LocalMatching(settings, rules, checkpoints)
        for c, (chunk, worked) in enumerate(zip(chunks, there, strict=True)):
            assert worked == await local.work(chunk, {}, {c: None}, now)
            assert len(worked.states) == 3000 and {p for p, _, _, _ in worked.states} == {c}

    asyncio.run(both())


def test_a_request_that_cannot_be_sent_fails_alone(settings: Settings, serde: Serde) -> None:
    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()
    chunk, now = _chunk(settings, serde), T0 + timedelta(minutes=2)

    async def run() -> None:
        child = MatchingProcess(settings, rules, checkpoints)
        child.start()
        try:
            unpicklable = [(*chunk[0][:5], lambda: None)]
            with pytest.raises(Exception, match="pickle"):
                await child.work(unpicklable, {}, {P: None}, now)  # type: ignore[arg-type]
            # The calls after it get their own answers, not one meant for it.
            assert await child.work(chunk, {}, {P: None}, now) == _matching(settings, serde).work(
                chunk, {}, {P: None}, now
            )
        finally:
            child.close()

    asyncio.run(run())
