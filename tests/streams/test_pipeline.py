"""streams.pipeline: group commits keep outputs -> state -> offsets in order, and batches stop waiting on commits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import pytest
from faust.types import EventT

from streams.pipeline import CommitPipeline, Staged, Submission, merged


class Journal:
    """Records, in order, what the pipeline did: flushes, store writes and acknowledgements."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []
        self.flush_gate: asyncio.Event | None = None  # when set by a test, a flush waits for it (a slow broker)
        self.fail_flush = False

    async def flush(self) -> None:
        self.steps.append(("flush",))
        if self.flush_gate is not None:
            await self.flush_gate.wait()
        if self.fail_flush:
            raise RuntimeError("outputs refused")


class Store:
    def __init__(self, name: str, journal: Journal) -> None:
        self.name, self.journal = name, journal

    async def log(self, staged: Staged) -> None:
        self.journal.steps.append(("log", self.name, list(staged)))


class Event:
    def __init__(self, n: int, journal: Journal) -> None:
        self.n, self.journal = n, journal

    def ack(self) -> None:
        self.journal.steps.append(("ack", self.n))


def events(journal: Journal, *ns: int) -> Sequence[EventT]:
    return cast(Sequence[EventT], [Event(n, journal) for n in ns])


def submission(store: Store, staged: Staged, evs: Sequence[EventT]) -> Submission:
    return Submission([(store, staged)], evs)


def sync(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test in its own event loop (the project runs no asyncio plugin for pytest)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def test_merged_writes_keep_each_key_once_with_its_latest_value_per_store() -> None:
    j = Journal()
    a, b = Store("a", j), Store("b", j)
    out = merged([(a, [(0, b"k", b"1"), (1, b"m", b"x")]), (b, [(0, b"k", b"b1")]), (a, [(0, b"k", b"2")])])
    assert [(cast(Store, s).name, w) for s, w in out] == [
        ("a", [(0, b"k", b"2"), (1, b"m", b"x")]),
        ("b", [(0, b"k", b"b1")]),
    ]


@sync
async def test_an_idle_batch_is_committed_at_once_outputs_then_state_then_offsets() -> None:
    j = Journal()
    store = Store("s", j)
    pipeline = CommitPipeline(j.flush, lambda exc: None)
    await pipeline.submit(submission(store, [(0, b"k", b"v")], events(j, 1, 2)))
    await pipeline.drain()
    assert j.steps == [("flush",), ("log", "s", [(0, b"k", b"v")]), ("ack", 1), ("ack", 2)]
    assert (pipeline.groups, pipeline.batches) == (1, 1)


@sync
async def test_batches_submitted_during_a_commit_do_not_wait_and_go_durable_together() -> None:
    j = Journal()
    store = Store("s", j)
    pipeline = CommitPipeline(j.flush, lambda exc: None)
    j.flush_gate = asyncio.Event()
    await pipeline.submit(submission(store, [(0, b"k", b"1")], events(j, 1)))
    await asyncio.sleep(0)  # the first commit starts and waits on the broker
    for n, value in ((2, b"2"), (3, b"3")):
        # Returns while the first commit is still in flight: the batch is not held behind it.
        await asyncio.wait_for(pipeline.submit(submission(store, [(0, b"k", value)], events(j, n))), 0.5)
    assert ("ack", 1) not in j.steps
    j.flush_gate.set()
    await pipeline.drain()
    assert j.steps == [
        ("flush",),
        ("log", "s", [(0, b"k", b"1")]),
        ("ack", 1),
        ("flush",),  # one flush and one write for both waiting batches, the key with the later batch's value
        ("log", "s", [(0, b"k", b"3")]),
        ("ack", 2),
        ("ack", 3),
    ]
    assert (pipeline.groups, pipeline.batches) == (2, 3)


@sync
async def test_a_full_waiting_group_makes_the_submitter_wait_for_the_commit_in_flight() -> None:
    j = Journal()
    store = Store("s", j)
    pipeline = CommitPipeline(j.flush, lambda exc: None, max_waiting=2)
    j.flush_gate = asyncio.Event()
    await pipeline.submit(submission(store, [], events(j, 1)))
    await asyncio.sleep(0)
    blocked = asyncio.ensure_future(pipeline.submit(submission(store, [], events(j, 2, 3))))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "a full group must hold its submitter back"
    j.flush_gate.set()
    await asyncio.wait_for(blocked, 1.0)
    await pipeline.drain()
    assert [s for s in j.steps if s[0] == "ack"] == [("ack", 1), ("ack", 2), ("ack", 3)]


@sync
async def test_a_failed_commit_acknowledges_nothing_and_is_fatal() -> None:
    j = Journal()
    store = Store("s", j)
    fatal: list[BaseException] = []
    pipeline = CommitPipeline(j.flush, fatal.append)
    j.fail_flush = True
    await pipeline.submit(submission(store, [(0, b"k", b"v")], events(j, 1)))
    with pytest.raises(RuntimeError, match="outputs refused"):
        await pipeline.drain()
    assert len(fatal) == 1
    assert j.steps == [("flush",)], "no state written and no offset acknowledged after refused outputs"
    with pytest.raises(RuntimeError, match="an earlier commit failed"):
        await pipeline.submit(submission(store, [], events(j, 2)))
