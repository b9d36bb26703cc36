"""The matcher's holding buffer: source events taken from the broker but held back for alignment.

`streams.align` says, per partition, up to which record timestamp events may go (a co-partition behind holds
the others, so a traveller's registration is not judged after a crossing made later). This buffer keeps what
may not go yet and gives back, on each look, what may: per topic-partition a prefix of its offsets (a source's
own order is never changed), all of it merged into record-timestamp order.

It also keeps when each held event was handed over, for the benchmark's "align" stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shekara.logs import get_logger
from streams.align import in_record_order

log = get_logger(__name__)

MAX_HELD = 100_000  # events held back for alignment, at most

Bound = Callable[[int], float]  # partition -> the latest record timestamp (ms) that may go now


def source_of(ev: Any) -> tuple[str, int]:
    return (ev.message.topic, ev.message.partition)


def timestamp_of(ev: Any) -> float:
    return float(ev.message.timestamp)


class HoldingBuffer:
    """Events (Faust `EventT`, or anything with `.message.topic/.partition/.timestamp`) waiting for alignment."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self._held: list[Any] = []
        # Record timestamp (ms) of the first held event of each topic-partition (None: not known). A topic-partition
        # is released as a prefix, so while no head is within its partition's bound nothing can go, and `release`
        # need not walk every held event: with adaptive batches it is asked after every small batch, and walking
        # tens of thousands of events held for a backlog each time took the worker's main thread.
        self._heads: dict[tuple[str, int], float] | None = {}
        self._taken: dict[int, float] = {}  # id of a held event -> when the agent handed it over (time.time())

    def __len__(self) -> int:
        return len(self._held)

    def __bool__(self) -> bool:
        return bool(self._held)

    def events(self) -> list[Any]:
        """What is held, in arrival order (a copy)."""
        return list(self._held)

    def admit(self, events: Sequence[Any], bound: Bound, taken: float) -> list[Any]:
        """Add a batch just taken (at `taken`, time.time()) and return what may go now (`release`)."""
        self._held.extend(events)
        if self._heads is not None:
            for ev in events:
                self._heads.setdefault(source_of(ev), ev.message.timestamp * 1000.0)
        ready = self.release(bound)
        if len(ready) < len(events):
            released = {id(ev) for ev in ready}
            self._taken.update((id(ev), taken) for ev in events if id(ev) not in released)
        return ready

    def release(self, bound: Bound, *, everything: bool = False) -> list[Any]:
        """Held events that may go now, in record-timestamp order; the rest stay held. `everything`: all of them
        (a rebalance waits for every event handed out to be acknowledged)."""
        if everything:
            everyone, self._held, self._heads = self._held, [], {}
            return in_record_order(everyone, source_of, timestamp_of)
        bounds: dict[int, float] = {}
        if self._heads is not None and len(self._held) <= self.max_held:
            for (_, p), head in self._heads.items():
                if p not in bounds:
                    bounds[p] = bound(p)
                if head <= bounds[p]:
                    break
            else:
                return []  # no topic-partition's first held event may go: nothing may
        ready: list[Any] = []
        rest: list[Any] = []
        stopped: set[tuple[str, int]] = set()  # topic-partitions with an event held: their later ones wait too
        for ev in self._held:
            msg = ev.message
            limit = bounds.get(msg.partition)
            if limit is None:
                limit = bounds[msg.partition] = bound(msg.partition)
            tp = (msg.topic, msg.partition)
            if msg.timestamp * 1000.0 <= limit and tp not in stopped:
                ready.append(ev)
            else:
                stopped.add(tp)
                rest.append(ev)
        if len(rest) > self.max_held:
            # A source far ahead of the others: bound the memory, at the price of order (the core re-orders
            # within its horizon; beyond it, events are dead-lettered, never dropped).
            log.warning("holding too many events ahead of their co-partitions; releasing", held=len(rest))
            ready.extend(rest[: len(rest) - self.max_held])
            rest = rest[len(rest) - self.max_held :]
        self._held = rest
        heads: dict[tuple[str, int], float] = {}
        for ev in rest:
            heads.setdefault(source_of(ev), ev.message.timestamp * 1000.0)
        self._heads = heads
        return in_record_order(ready, source_of, timestamp_of)

    def waited_ms(self, events: Sequence[Any], now: float) -> float:
        """Milliseconds `events` (just released) spent held, summed; each is counted once."""
        if not self._taken:
            return 0.0
        taken = self._taken
        return sum(now - taken.pop(id(ev), now) for ev in events) * 1000
