"""`streams.engine.SeekGate`: seeks and fetches take turns, and a fetch's records of a partition a later seek moved
are stale. Pure asyncio: the orderings the delivery loop relies on, each forced step by step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streams.engine import SeekGate

A = ("shekara.crossings", 0)
B = ("shekara.crossings", 1)


def _run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 5))


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_seek_waits_for_the_fetch_in_flight_and_makes_its_records_of_the_moved_partition_stale() -> None:
    async def main() -> list[str]:
        gate = SeekGate()
        steps: list[str] = []
        fetch_back = asyncio.Event()

        async def fetch() -> int:
            async with gate.fetching() as epoch:
                steps.append("fetch asked")
                await fetch_back.wait()
                steps.append("fetch back")
            return epoch

        async def seek() -> None:
            async with gate.seeking() as moved:
                steps.append("seek")
                moved([A])

        fetching = asyncio.ensure_future(fetch())
        await _turns()
        seeking = asyncio.ensure_future(seek())
        await _turns()
        assert steps == ["fetch asked"], "the seek ran while a fetch was in flight"
        fetch_back.set()
        epoch = await fetching
        await seeking
        assert steps == ["fetch asked", "fetch back", "seek"]
        assert gate.stale(A, epoch) and not gate.stale(B, epoch)
        return steps

    _run(main)


def test_a_fetch_is_not_asked_for_while_a_seek_is_under_way_and_is_fresh_after_it() -> None:
    async def main() -> None:
        gate = SeekGate()
        steps: list[str] = []
        seek_done = asyncio.Event()

        async def seek() -> None:
            async with gate.seeking() as moved:
                steps.append("seek begun")
                await seek_done.wait()
                moved([A, B])
                steps.append("seek done")

        async def fetch() -> int:
            async with gate.fetching() as epoch:
                steps.append("fetch asked")
            return epoch

        seeking = asyncio.ensure_future(seek())
        await _turns()
        fetching = asyncio.ensure_future(fetch())
        await _turns()
        assert steps == ["seek begun"]
        seek_done.set()
        await seeking
        epoch = await fetching
        assert steps == ["seek begun", "seek done", "fetch asked"]
        assert not gate.stale(A, epoch) and not gate.stale(B, epoch)

    _run(main)


def test_settled_waits_for_every_seek_under_way() -> None:
    async def main() -> None:
        gate = SeekGate()
        releases = [asyncio.Event(), asyncio.Event()]

        async def seek(i: int) -> None:
            async with gate.seeking():
                await releases[i].wait()

        seeks = [asyncio.ensure_future(seek(i)) for i in range(2)]
        await _turns()
        settled = asyncio.ensure_future(gate.settled())
        releases[0].set()
        await _turns()
        assert not settled.done(), "settled while a second seek was still under way"
        releases[1].set()
        await asyncio.gather(*seeks)
        await settled

    _run(main)


def test_a_seek_interrupts_the_delivery_under_way_and_the_next_delivery_gets_a_fresh_interruption() -> None:
    async def main() -> None:
        gate = SeekGate()
        first = gate.interruption()
        assert gate.interruption() is first, "one interruption per delivery until a seek comes"
        async with gate.seeking():
            pass
        assert first.done()
        second = gate.interruption()
        assert not second.done()
        second.cancel()  # mode's wait_first cancels what did not win
        third = gate.interruption()
        assert third is not second and not third.done()

    _run(main)


def test_only_the_partitions_a_seek_moved_are_stale_and_only_for_fetches_asked_before_it() -> None:
    async def main() -> None:
        gate = SeekGate()
        async with gate.fetching() as before:
            pass
        async with gate.seeking() as moved:
            moved([])  # e.g. seek_to_committed with no partition committed: aiokafka moved none
        assert not gate.stale(A, before)
        async with gate.seeking() as moved:
            moved([B])
        async with gate.fetching() as after:
            pass
        assert gate.stale(B, before) and not gate.stale(A, before)
        assert not gate.stale(B, after)

    _run(main)


def test_a_seek_that_fails_lets_fetches_go_on() -> None:
    async def main() -> None:
        gate = SeekGate()
        with pytest.raises(RuntimeError):
            async with gate.seeking():
                raise RuntimeError("broker gone")
        async with gate.fetching() as epoch:
            assert epoch == 1

    _run(main)
