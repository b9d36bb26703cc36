"""The commit pipeline: batch k's outputs, state and offsets go durable while batch k+1 is being computed.

Per batch the order is fixed (see `streams.outputs`): outputs acknowledged, then state written to the changelog,
then the source events acknowledged so Faust may commit their offsets. Those steps mostly wait on the broker,
so they run as a task while the processor goes on with the next batch; one commit is in flight at a time and
commits complete in batch order.

The processors take their events straight from their channels (`streams.drain`), so no stream acknowledges
them: the pipeline does (`Event.ack`), once the commit is done. Faust's own reference counting then lets its
consumer commit exactly the offsets whose messages have been fully processed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from faust.types import EventT


class CommitPipeline:
    """Runs commits one after the other in the background; acknowledges each batch's events after its commit."""

    def __init__(self, on_fatal: Callable[[BaseException], None]) -> None:
        self.on_fatal = on_fatal
        self._tail: asyncio.Future[None] | None = None

    async def submit(self, commit: Callable[[], Awaitable[None]], events: Sequence[EventT] = ()) -> None:
        """Queue `commit` behind the last one; returns once the one before it is done (back-pressure).

        `events` are acknowledged when `commit` is durable.
        """
        previous = self._tail

        async def run() -> None:
            try:
                if previous is not None:
                    await previous
                await commit()
            except BaseException as exc:
                self.on_fatal(exc)  # the events stay unacknowledged: a restart replays them
                raise
            for ev in events:
                ev.ack()

        # The tail is replaced without an await in between, so commits from any caller run strictly in order.
        self._tail = asyncio.ensure_future(run())
        if previous is not None:
            await previous

    async def drain(self) -> None:
        """Wait until every submitted commit is durable (rebalance, shutdown)."""
        if self._tail is not None:
            await self._tail

    @property
    def busy(self) -> bool:
        return self._tail is not None and not self._tail.done()
