"""The matcher's computation (`streams.matching`), where it runs (`streams.offload`) and how batches are taken
(`streams.drain`): plain values in and out, a real child process, a real Faust queue; no broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

import streams.matching as matching_module
from schemas.records import (
    Alert,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Crossing,
    Direction,
    Document,
    DocumentType,
    EntryBasis,
    EntryBasisKind,
    Purpose,
    Sex,
    StatusChange,
    StatusChangeKind,
    Traveller,
)
from schemas.serde import Serde
from shekara.pseudonym import traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import Settings
from streams.drain import batches
from streams.intake import Accepted, Rejected
from streams.matching import Matching, RawMessage, StepRequest
from streams.offload import LocalMatching, MatchingFailed, MatchingProcess
from streams.stored import unpack

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
SENT = (T0 + timedelta(minutes=1)).timestamp()  # producer timestamp of every message: just after the events
P = 3


def _traveller(number: str) -> Traveller:
    return Traveller(Document(DocumentType.PASSPORT, number, "UZB"), "UZB", date(1990, 1, 1), Sex.M)


def _entry(number: str, event_id: str) -> Crossing:
    return Crossing(
        event_id=event_id,
        event_time=T0,
        received_time=T0,
        checkpoint=Checkpoint("KZ-TEST", CheckpointKind.ROAD, "UZB"),
        direction=Direction.ENTRY,
        traveller=_traveller(number),
        purpose=Purpose.TOURISM,
        entry_basis=EntryBasis(EntryBasisKind.VISA_FREE),
        source_system="test",
    )


def _lost(number: str) -> StatusChange:
    return StatusChange(
        event_id=f"lost-{number}",
        event_time=T0 - timedelta(days=1),
        received_time=T0 - timedelta(days=1),
        kind=StatusChangeKind.DOCUMENT_LOST,
        traveller=_traveller(number),
        authority="police",
        source_system="test",
    )


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def serde(settings: Settings) -> Serde:
    return Serde.from_settings(settings)


def _chunk(settings: Settings, serde: Serde) -> list[RawMessage]:
    t, k = settings.topics, settings.pseudonym_key_bytes
    lost_key = traveller_key("UZB", "LOST12345", k).encode()
    ok_key = traveller_key("UZB", "GOOD12345", k).encode()
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


def test_verdicts_admitted_ahead_serve_work_for_the_same_message_only(settings: Settings, serde: Serde) -> None:
    m = _matching(settings, serde)
    chunk = _chunk(settings, serde)
    assert m.admit_ahead(chunk) == len(chunk)
    # Same offset, other bytes (a topic deleted and created again): that one must be admitted afresh.
    again = _entry("GOOD12345", "in-again")
    changed = [*chunk[:2], (*chunk[2][:4], serde.encode(again, settings.topics.crossings), SENT), *chunk[3:]]
    admitted: list[str] = []
    real = m.intake.admit

    def admit(topic: str, key: bytes | None, value: bytes | None, *, now: datetime) -> Accepted | Rejected:
        admitted.append(topic)
        return real(topic, key, value, now=now)

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
    assert "core bug" in next(r for i, _, r, _ in worked.rejected if i == 2)
    assert [key for _, key, _, _ in worked.states] == [traveller_key("UZB", "LOST12345", settings.pseudonym_key_bytes)]
    assert worked.failures == [(P, "RuntimeError('core bug')", 1)]


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


def test_batches_take_up_to_max_as_soon_as_queued_and_stop_with_the_channel() -> None:
    async def run() -> list[list[int]]:
        queue: ThrowableQueue = ThrowableQueue(maxsize=100, flow_control=FlowControlEvent(initially_suspended=False))
        for i in range(7):
            queue.put_nowait(i)
        got: list[list[int]] = []

        async def late() -> None:
            await asyncio.sleep(0.05)
            queue.put_nowait(7)
            await asyncio.sleep(0.3)
            await queue.throw(StopAsyncIteration())  # how Faust ends a channel's iteration

        feeder = asyncio.ensure_future(late())
        async for batch in batches(SimpleNamespace(queue=queue), 3, within=0.2):
            got.append(list(batch))  # type: ignore[arg-type]
        await feeder
        return got

    # full batches at once; the rest after `within`, with what arrived meanwhile; then the end of the channel
    assert asyncio.run(run()) == [[0, 1, 2], [3, 4, 5], [6, 7]]
