"""Adaptive batches (`streams.drain.batches`) from a real Faust channel queue: a free processor gets what is
buffered at once, a busy one gets everything that piled up meanwhile (up to the batch size)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.drain import batches

Arrivals = list[tuple[float, list[int]]]


def _batches_of(
    arrivals: Arrivals, max_: int, *, busy: float = 0.0, linger: float | Callable[[], float] = 0.0
) -> Arrivals:
    """(seconds after the start, batch) as `batches` yields them from a Faust queue fed at `arrivals`, to a
    processor that works `busy` seconds on each batch."""

    async def run() -> Arrivals:
        queue: ThrowableQueue = ThrowableQueue(maxsize=1000, flow_control=FlowControlEvent(initially_suspended=False))
        loop = asyncio.get_running_loop()
        start = loop.time()
        got: Arrivals = []

        async def feed() -> None:
            for at, items in arrivals:
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                for item in items:
                    queue.put_nowait(item)
            await asyncio.sleep(0.3)
            await queue.throw(StopAsyncIteration())  # how Faust ends a channel's iteration

        feeder = asyncio.ensure_future(feed())
        async for batch in batches(SimpleNamespace(queue=queue), max_, linger):
            got.append((loop.time() - start, list(batch)))  # type: ignore[arg-type]
            if busy:
                await asyncio.sleep(busy)
        await feeder
        return got

    return asyncio.run(run())


def test_a_free_processor_gets_an_event_at_once() -> None:
    got = _batches_of([(0.0, [0]), (0.2, [1])], 100)
    assert [b for _, b in got] == [[0], [1]]
    # Nothing held for company: each goes within a few milliseconds of its arrival (the old window was 1 s).
    assert got[0][0] < 0.05 and 0.2 <= got[1][0] < 0.25


def test_a_busy_processor_gets_what_piled_up_meanwhile() -> None:
    # One event starts the first batch; the 50 arriving while that batch is worked come as one batch after it.
    arrivals: Arrivals = [(0.0, [0])] + [(0.01 + 0.001 * i, [1 + i]) for i in range(50)]
    got = _batches_of(arrivals, 100, busy=0.15)
    assert [b for _, b in got] == [[0], list(range(1, 51))]
    assert 0.15 <= got[1][0] < 0.2


def test_batches_stop_at_the_batch_size_and_with_the_channel() -> None:
    got = _batches_of([(0.0, list(range(7)))], 3, busy=0.01)
    assert [b for _, b in got] == [[0, 1, 2], [3, 4, 5], [6]]


def test_linger_keeps_a_batch_begun_on_an_empty_buffer_open_for_company() -> None:
    got = _batches_of([(0.0, [0]), (0.03, [1]), (0.2, [2])], 100, linger=0.08)
    assert [b for _, b in got] == [[0, 1], [2]]
    assert 0.08 <= got[0][0] < 0.12


def test_a_callable_linger_is_asked_for_each_batch() -> None:
    asked: list[float] = []

    def linger() -> float:
        asked.append(0.08 if not asked else 0.0)  # the first batch may fill (a held backlog), then not
        return asked[-1]

    got = _batches_of([(0.0, [0]), (0.03, [1]), (0.2, [2]), (0.22, [3])], 100, linger=linger)
    assert [b for _, b in got] == [[0, 1], [2], [3]]
    assert len(asked) == 3
