"""Alignment holds only what it must (issue 18): a co-partition the broker reported caught up holds the others a
quarter second at most, and held events go once their hold expires, without waiting for the next batch or tick.
(The older rules, backlogs and start-up: tests/streams/test_topology_units.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.align import Aligner
from streams.holding import HoldingBuffer
from streams.matcher import RECHECK_S, TravellerMatcher

C, R = ("crossings", 0), ("registrations", 0)


def _live() -> Aligner:
    a = Aligner(("crossings", "registrations"), slack_ms=100, idle_s=2, caught_up_s=0.25, startup_grace_s=5)
    a.start_at({C: 0, R: 0})
    return a


def test_a_caught_up_co_partition_holds_the_others_only_briefly() -> None:
    a = _live()
    a.observe("registrations", 0, 1_000, wall=10.0, offset=4)
    a.observe("crossings", 0, 1_500, wall=10.1, offset=9)
    caught_up = {C: 10, R: 5}  # the broker's ends: both delivered up to there
    assert a.release_bound(0, wall=10.1, highwaters=caught_up) == 1_100  # it delivered just now: wait a moment
    # No registration is coming: only the crossings' own slack bounds them (what arrived so far all goes).
    assert a.release_bound(0, wall=10.3, highwaters=caught_up) == 1_600
    assert a.release_bound(0, wall=10.4, highwaters=caught_up) == float("inf")
    # Not known to be caught up (no report of its end): the old idle wait of 2 s.
    assert a.release_bound(0, wall=10.3, highwaters={C: 10}) == 1_100
    assert a.release_bound(0, wall=12.1, highwaters={C: 10}) == float("inf")


def test_a_co_partition_with_records_still_waiting_holds_as_long_as_before() -> None:
    a = _live()
    a.observe("registrations", 0, 1_000, wall=10.0, offset=4)
    a.observe("crossings", 0, 1_500, wall=10.1, offset=9)
    behind = {C: 10, R: 40}  # 35 registrations at the broker not delivered yet
    assert a.release_bound(0, wall=15.0, highwaters=behind) == 1_100


def test_a_caught_up_co_partition_never_heard_from_holds_nobody() -> None:
    a = _live()
    a.observe("crossings", 0, 1_500, wall=10.0, offset=0)
    # An empty registrations partition the broker reported (end 0, where the consumer starts): nothing to wait for.
    assert a.release_bound(0, wall=10.0, highwaters={C: 1, R: 0}) == 1_600
    # Its end not reported yet: the start-up grace applies as before.
    assert a.release_bound(0, wall=10.0, highwaters={C: 1}) == float("-inf")


def _event(topic: str, offset: int, timestamp_ms: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(topic=topic, partition=0, offset=offset, timestamp=timestamp_ms / 1000)
    )


def test_a_held_event_goes_when_its_hold_expires_without_another_batch() -> None:
    async def run() -> list[Any]:
        import time

        aligner = _live()
        now = time.monotonic()
        aligner.observe("registrations", 0, 1_000, wall=now, offset=4)
        aligner.observe("crossings", 0, 1_500, wall=now, offset=9)
        held = [_event("crossings", 9, 1_500)]
        worked: list[Any] = []

        async def work(events: list[Any]) -> None:
            worked.extend(events)

        holding = HoldingBuffer()
        bound = lambda wall: lambda p: aligner.release_bound(p, wall, {C: 10, R: 5})  # noqa: E731
        assert holding.admit(held, bound(now), taken=0.0) == [] and holding.events() == held
        matcher = SimpleNamespace(
            holding=holding,
            _bound=bound,
            _lock=asyncio.Lock(),
            app=SimpleNamespace(rebalancing=False),
            _last_batch=now,
            _work_in_lanes=work,
            on_fatal=lambda exc: None,
        )
        await asyncio.wait_for(TravellerMatcher._release_later(matcher), timeout=1.0)  # type: ignore[arg-type]
        # released once the caught-up registrations had been quiet for caught_up_s, within a recheck of that
        assert 0.25 <= time.monotonic() - now < 0.25 + 3 * RECHECK_S + 0.1
        return worked

    worked = asyncio.run(run())
    assert [e.message.offset for e in worked] == [9]


def test_release_skips_the_walk_when_no_first_held_event_may_go_and_agrees_with_it_otherwise() -> None:
    held = [_event("crossings", o, 1_400 + 10 * o) for o in range(11)]  # 1,400 .. 1,500 ms

    def bound(wall_reg: float) -> Any:
        aligner = _live()
        aligner.observe("registrations", 0, 1_000, wall=wall_reg, offset=4)
        aligner.observe("crossings", 0, 1_500, wall=10.0, offset=10)
        asked: list[int] = []

        def at(p: int) -> float:
            asked.append(p)
            return aligner.release_bound(p, 10.0, {C: 11, R: 5})

        return at, asked

    # Registrations just delivered up to 1,000 ms: bound 1,100, the first held crossing (1,400) may not go.
    holding = HoldingBuffer()
    at, asked = bound(wall_reg=10.0)
    assert holding.admit(held, at, taken=0.0) == [] and len(holding) == 11
    asked.clear()
    assert holding.release(at) == [] and asked == [0]  # one look at the partition's head, no walk
    # Registrations quiet for 0.3 s (caught up): the crossings' own slack, 1,600 ms: every one goes.
    at, _ = bound(wall_reg=9.7)
    assert holding.release(at) == held and len(holding) == 0
    assert holding.waited_ms(held, now=2.0) == 11 * 2_000  # each held since 0.0, counted once
    assert holding.waited_ms(held, now=3.0) == 0


def test_everything_goes_in_a_rebalance_in_record_order() -> None:
    holding = HoldingBuffer()
    never = lambda p: float("-inf")  # noqa: E731
    late, early = _event("crossings", 1, 2_000), _event("registrations", 1, 1_000)
    assert holding.admit([late, early], never, taken=0.0) == []
    assert holding.release(never, everything=True) == [early, late] and not holding


def test_a_hold_beyond_its_bound_of_memory_releases_the_oldest() -> None:
    holding = HoldingBuffer(max_held=3)
    never = lambda p: float("-inf")  # noqa: E731
    events = [_event("crossings", o, 1_000 + o) for o in range(5)]
    released = holding.admit(events, never, taken=0.0)
    assert [e.message.offset for e in released] == [0, 1]
    assert [e.message.offset for e in holding.events()] == [2, 3, 4]
