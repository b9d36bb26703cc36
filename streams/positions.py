"""Where each source topic-partition stands for a processor: the next offset it expects.

Faust does not hand a processor every offset exactly once around a (re)assignment. Records the fetcher delivers
while Faust seeks to the committed offsets are delivered again after the seek (duplicates), and records
delivered just before Faust clears the agents' queues on resuming flow are gone though counted as read
(a hole). `streams.topology` closes the window that made holes; this keeps count, so that a hole can never
pass unnoticed, and drops duplicates before they cost a step (the core would ignore them by event id).

A duplicate is not acknowledged: its offset is acknowledged when the first delivery's batch is durable, and
acknowledging the copy earlier would let Faust commit that offset before then.

A hole is reported, not repaired: Kafka offsets may legitimately skip (transaction markers, compaction), and a
processor cannot tell those from a loss without asking the broker. The records after it are processed.

Pure: offsets in, what to keep and what was skipped out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Hole:
    topic: str
    partition: int
    expected: int  # the next offset the processor expected
    got: int  # the offset delivered instead (expected..got-1 never arrived)

    @property
    def skipped(self) -> int:
        return self.got - self.expected


@dataclass(frozen=True, slots=True)
class Admitted:
    keep: list[int]  # indexes of the deliveries to process, in delivery order
    duplicates: int  # deliveries of an offset already handed over
    holes: list[Hole]


@dataclass
class Positions:
    _next: dict[TopicPartition, int] = field(default_factory=dict)

    def start_at(self, starts: Mapping[TopicPartition, int]) -> None:
        """After a (re)assignment: where the consumer starts each topic-partition. Replaces what was known."""
        self._next = dict(starts)

    def advance(self, committed: Mapping[TopicPartition, int]) -> None:
        """After the consumer was sought to the group's committed offsets: a topic-partition expected below its
        commit moves up to it, one expected at or past it stays (what comes from the commit up to there is a
        duplicate).

        The group committed past what the last `start_at` found when events of the previous assignment were
        acknowledged after it (their batches became durable during the rebalance): those offsets were processed,
        not lost, and the consumer starts after them."""
        nxt = self._next
        for tp, offset in committed.items():
            known = nxt.get(tp)
            if known is not None and offset > known:
                nxt[tp] = offset

    def next_offset(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    def admit(self, deliveries: Iterable[tuple[str, int, int]]) -> Admitted:
        """(topic, partition, offset) deliveries in the order they came: which to process, and what was skipped.

        A topic-partition without a known start begins where its first delivery is."""
        nxt = self._next
        keep: list[int] = []
        duplicates = 0
        holes: list[Hole] = []
        for i, (topic, partition, offset) in enumerate(deliveries):
            tp = (topic, partition)
            expected = nxt.get(tp)
            if expected is not None and offset < expected:
                duplicates += 1
                continue
            if expected is not None and offset > expected:
                holes.append(Hole(topic, partition, expected, offset))
            nxt[tp] = offset + 1
            keep.append(i)
        return Admitted(keep, duplicates, holes)
