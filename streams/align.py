"""Keeping the three co-partitioned sources in step, as Kafka Streams does for the inputs of one task.

A worker fetches crossings, registrations and status changes of partition *p* independently. Live, they arrive
together; but on a backlog (a replay, a restart after an outage) one topic's partition can run days of event
time ahead of another: a partition of a small topic fits in one fetch, so all its registrations arrive before
the crossings they follow. The matcher would then see a traveller's history far out of order - beyond what it
re-orders - and the partition's watermark would run ahead of the lagging topic.

So the worker processes in record-timestamp order per partition (the order the sources appended), within a
small slack: a record more than `slack_ms` ahead of the slowest topic-partition still delivering is held back
(in memory, unacknowledged) until that one catches up.

Which topic-partitions are still delivering:
- one with records known to be waiting for this consumer (the broker's last reported end is past the consumer's
  position: the next offset after what it delivered, or, before it delivered anything, where it started after
  the assignment) is waited for **until it delivers them**, however long the consumer is busy with other
  partitions. On a backlog aiokafka hands out one partition's fetched records after another, 1,000 at a time,
  so a topic-partition with records waiting can deliver nothing for 30 s and more while its co-partitions
  stream on: giving up on it after a fixed time let those run tens of seconds of record time ahead, which in
  a fast backfill is weeks of event time (travellers' events then came beyond the core's re-ordering horizon:
  spurious EXIT_WITHOUT_ENTRY, dead letters "older than the traveller's retained history"). Only if the consumer
  delivers nothing at all for `stalled_s` does a backlog stop holding the others (a stuck consumer must not
  hold events forever); the shell also bounds how many events it holds.
- one the broker reported caught up (the consumer's position is at the end the broker last reported) is waited
  for only `caught_up_s` after its last record: records appended since that report may still be on their way,
  but nothing older is. Live, that is every quiet co-partition, so a crossing is not held a second or two for a
  registration that is not coming (the tail of the alerts' latency, issue 18); one caught up and never heard
  from has nothing to wait for.
- one with no records known to be waiting and no report of its end yet is waited for `idle_s` after its last
  record (it may be caught up, or empty); one not heard from since the (re)assignment and with no known backlog
  for `startup_grace_s` (the first fetch may bring one topic's records before another's).

Not done by pausing partitions: Faust drops records already fetched for a partition paused meanwhile and then
counts the gap as processed, which would lose them.

What may go is then worked in record-timestamp order (`in_record_order`), not in the order it arrived.

Pure: observations in, how far each partition may be processed out.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

TopicPartition = tuple[str, int]
Item = TypeVar("Item")


def in_record_order(
    items: Iterable[Item], source: Callable[[Item], Hashable], timestamp: Callable[[Item], float]
) -> list[Item]:
    """`items` (each source's in its own order) merged by record timestamp, each source's order kept.

    What is released at once can span seconds of record time: a co-partition waited for delivers a whole fetch,
    and the records held back for it go with it. Worked in arrival order, the held crossings of those seconds came
    before the registrations that preceded them, the partition's watermark passed the registrations' deadlines
    first, and UNREGISTERED_STAY alerts were raised and retracted a moment later. A merge rather than a sort: a
    topic-partition whose timestamps go back a little (two producers appending to it) keeps its offset order.
    """
    by_source: dict[Hashable, list[Item]] = {}
    for item in items:
        by_source.setdefault(source(item), []).append(item)
    if len(by_source) <= 1:
        return next(iter(by_source.values()), [])
    return list(heapq.merge(*by_source.values(), key=timestamp))


@dataclass
class Aligner:
    topics: tuple[str, ...]  # the co-partitioned source topics
    slack_ms: float = 100.0
    idle_s: float = 2.0
    stalled_s: float = 30.0  # a consumer that delivered nothing for this long (the matcher idle): backlogs hold nobody
    startup_grace_s: float = 5.0  # after (re)assignment, how long a topic-partition not heard from is waited for
    caught_up_s: float = 0.25  # how long one the broker reported caught up is waited for after its last record
    _last_ts: dict[TopicPartition, float] = field(default_factory=dict)  # record timestamp (ms) of the last record
    _last_wall: dict[TopicPartition, float] = field(default_factory=dict)  # when it arrived (monotonic s)
    _next_offset: dict[TopicPartition, int] = field(default_factory=dict)  # after the last record delivered
    _start: dict[TopicPartition, int] = field(default_factory=dict)  # where the consumer started (assignment)
    _since: float | None = None  # when the first record since the (re)assignment arrived (monotonic s)
    _last_any: float | None = None  # when the consumer last delivered a record of any topic-partition

    def observe(self, topic: str, partition: int, timestamp_ms: float, wall: float, offset: int = -1) -> None:
        tp = (topic, partition)
        if self._since is None:
            self._since = wall
        self._last_any = wall
        if timestamp_ms > self._last_ts.get(tp, float("-inf")):
            self._last_ts[tp] = timestamp_ms
        self._last_wall[tp] = wall
        if offset >= 0 and offset + 1 > self._next_offset.get(tp, 0):
            self._next_offset[tp] = offset + 1

    def worked(self, wall: float) -> None:
        """The matcher was busy working events until `wall`: nothing could be delivered to it meanwhile, so that
        time does not count towards `stalled_s`."""
        if self._last_any is not None and wall > self._last_any:
            self._last_any = wall

    def start_at(self, starts: Mapping[TopicPartition, int]) -> None:
        """Where the consumer starts each topic-partition after the (re)assignment (committed offset, or the log's
        beginning): before a topic-partition delivers anything, its backlog is the broker's end past this.

        Replaces what was known before; `reset` keeps it, so the two may be called in either order."""
        self._start = dict(starts)

    def _waiting(self, tp: TopicPartition, highwater: int | None) -> bool:
        """The broker reported records past this consumer's position (they will be delivered)."""
        position = self._next_offset.get(tp, self._start.get(tp))
        # `position < highwater` holds on brokers whose high watermark is the log end, and on those (the embedded
        # one) that report the base offset of the last record batch + 1: either way, a position below it means
        # at least that last batch is still to come, and a consumer that delivered everything is at or past it.
        return highwater is not None and position is not None and position < highwater

    def _caught_up(self, tp: TopicPartition, highwater: int | None) -> bool:
        """The broker's last report of this topic-partition's end is at or behind this consumer's position."""
        position = self._next_offset.get(tp, self._start.get(tp))
        return highwater is not None and position is not None and position >= highwater

    def _delivering(self, tp: TopicPartition, wall: float, highwater: int | None) -> bool:
        """Still to be waited for: it has records waiting for us, or it delivered recently."""
        if self._waiting(tp, highwater):
            return self._last_any is not None and wall - self._last_any < self.stalled_s
        caught_up = self._caught_up(tp, highwater)
        if tp not in self._last_ts:
            return not caught_up and self._since is not None and wall - self._since < self.startup_grace_s
        return wall - self._last_wall[tp] < (self.caught_up_s if caught_up else self.idle_s)

    def release_bound(
        self, partition: int, wall: float, highwaters: Mapping[TopicPartition, int | None] | None = None
    ) -> float:
        """Records of `partition` with a timestamp up to this (ms) may be processed now (inf: all of them).

        `highwaters`: what the broker last said of each topic-partition's end (None where not known yet)."""
        hw = highwaters or {}
        tps = [(t, partition) for t in self.topics]
        if not any(tp in self._last_ts for tp in tps):
            return float("inf")  # nothing of this partition seen: nothing to hold
        delivering = [self._last_ts.get(tp, float("-inf")) for tp in tps if self._delivering(tp, wall, hw.get(tp))]
        return min(delivering) + self.slack_ms if delivering else float("inf")

    def reset(self) -> None:
        """Forget what was delivered (after a rebalance positions may move back); see `start_at`."""
        self._last_ts.clear()
        self._last_wall.clear()
        self._next_offset.clear()
        self._since = None
        self._last_any = None
