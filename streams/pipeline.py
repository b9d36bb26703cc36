"""The commit pipeline: batches' outputs, state and offsets go durable in groups, while the processors go on.

Per commit the order is fixed (see `streams.outputs`): outputs acknowledged, then state written to the changelog,
then the source events acknowledged so Faust may commit their offsets. Those steps mostly wait on the broker
(three round trips: outputs, state, end markers), so they run as a task while the processors go on.

Group commit: a batch handed over while a commit is in flight does not wait for it. It joins the next group, and
when the commit in flight is done, the next one makes every batch of that group durable at once: one flush of the
outputs, one write of each store (a key staged by several batches is written once, with its latest value), then
every event of the group acknowledged. Idle, a group is one batch committed at once; busy, a group is whatever
arrived during the previous commit, so the commit's round trips no longer set the pace of the batches (each batch
used to wait for the previous one's commit before it could be worked, and an alert's event queued behind it).
Only when the next group already holds `max_waiting` events does a submitter wait (back-pressure: the staged
overlay and the unacknowledged offsets stay bounded).

Nothing is weakened by grouping: an output is still acknowledged before any state that claims it is written, and
an offset is still acknowledged only after its batch's state; groups complete in submission order. A crash before
a group's state write replays its batches from the last commit and re-emits the same records with the same ids.

The processors take their events straight from their channels (`streams.drain`), so no stream acknowledges
them: the pipeline does (`Event.ack`), once the commit is done. Faust's own reference counting then lets its
consumer commit exactly the offsets whose messages have been fully processed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faust.types import EventT

Staged = list[tuple[int, bytes, bytes]]  # (partition, key, value) writes of one store (`streams.stores`)


class Store(Protocol):
    """What the pipeline needs of a state store (`streams.stores.StateStore`)."""

    async def log(self, staged: Staged) -> None: ...


@dataclass
class Submission:
    """One batch's part of a commit: its staged writes per store, its events, and who is told when it is durable."""

    writes: list[tuple[Store, Staged]]
    events: Sequence[EventT]
    # Told (queued, started, finished) in monotonic seconds once durable: the matcher's stage times.
    on_durable: Callable[[float, float, float], None] | None = None
    queued: float = field(default_factory=time.monotonic)


def merged(writes: Sequence[tuple[Store, Staged]]) -> list[tuple[Store, Staged]]:
    """The writes of several batches, one list per store in first-seen order, each key once with its latest value.

    A key's latest value is its last batch's (batches are submitted in the order they were worked); it keeps the
    position of its first write, which is harmless: within a store, keys are independent.
    """
    order: list[Store] = []
    by_store: dict[int, dict[tuple[int, bytes], bytes]] = {}
    for store, staged in writes:
        if id(store) not in by_store:
            order.append(store)
            by_store[id(store)] = {}
        latest = by_store[id(store)]
        for partition, key, value in staged:
            latest[partition, key] = value
    return [(s, [(p, k, v) for (p, k), v in by_store[id(s)].items()]) for s in order]


class CommitPipeline:
    """Runs group commits one after the other in the background (module doc)."""

    def __init__(
        self,
        flush: Callable[[], Awaitable[None]],
        on_fatal: Callable[[BaseException], None],
        *,
        max_waiting: int = 10_000,
        on_flushed: Callable[[], None] | None = None,
    ) -> None:
        self.flush = flush
        self.on_fatal = on_fatal
        self.on_flushed = on_flushed  # after each group's outputs are acknowledged (status: last output time)
        self.max_waiting = max(1, max_waiting)
        self._waiting: list[Submission] = []
        self._waiting_events = 0
        self._runner: asyncio.Future[None] | None = None
        self._taken = asyncio.Event()  # set when the runner takes the waiting group (or stops); then replaced
        self._failed: BaseException | None = None
        self.groups = 0  # commits run
        self.batches = 0  # submissions made durable

    async def submit(self, submission: Submission) -> None:
        """Add a batch to the next group; returns at once unless that group is full (then once it has started)."""
        if self._failed is not None:
            raise RuntimeError("an earlier commit failed") from self._failed
        self._waiting.append(submission)
        self._waiting_events += len(submission.events)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        while self._waiting_events >= self.max_waiting and self.busy:
            await self._taken.wait()

    def _wake(self) -> None:
        taken, self._taken = self._taken, asyncio.Event()
        taken.set()

    async def _run(self) -> None:
        try:
            await self._run_groups()
        finally:
            self._wake()

    async def _run_groups(self) -> None:
        while self._waiting:
            group, self._waiting, self._waiting_events = self._waiting, [], 0
            self._wake()
            started = time.monotonic()
            try:
                await self.flush()
                if self.on_flushed is not None:
                    self.on_flushed()
                for store, staged in merged([w for s in group for w in s.writes]):
                    await store.log(staged)
            except BaseException as exc:
                self._failed = exc
                self.on_fatal(exc)  # the events stay unacknowledged: a restart replays them
                raise
            finished = time.monotonic()
            for submission in group:
                for ev in submission.events:
                    ev.ack()
                if submission.on_durable is not None:
                    submission.on_durable(submission.queued, started, finished)
            self.groups += 1
            self.batches += len(group)

    async def drain(self) -> None:
        """Wait until every submitted commit is durable (rebalance, shutdown)."""
        while self._runner is not None and not self._runner.done():
            await self._runner
        if self._failed is not None:
            raise RuntimeError("an earlier commit failed") from self._failed

    @property
    def busy(self) -> bool:
        return self._runner is not None and not self._runner.done()
