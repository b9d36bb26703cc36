"""Keeping the three co-partitioned sources in step, as Kafka Streams does for the inputs of one task.

A worker fetches crossings, registrations and status changes of partition *p* independently. Live, they arrive
together; but on a backlog (a replay, a restart after an outage) one topic's partition can run days of event
time ahead of another: a partition of a small topic fits in one fetch, so all its registrations arrive before
the crossings they follow. The matcher would then see a traveller's history far out of order - beyond what it
re-orders - and the partition's watermark would run ahead of the lagging topic.

So the worker processes in record-timestamp order per partition (the order the sources appended), within a
small slack: a record more than `slack_ms` ahead of the slowest topic-partition still delivering is held back
(in memory, unacknowledged) until that one catches up. A topic-partition that has delivered nothing for
`idle_s` and has no more records waiting (its high watermark) is caught up, or empty, and holds nobody back.
A topic-partition that has delivered nothing at all since the (re)assignment holds the others back for
`startup_grace_s`: the first fetch may bring one topic's records before another's, and without the grace the
first topic would run ahead unchecked (a backlog of crossings processed days before its registrations).

Not done by pausing partitions: Faust drops records already fetched for a partition paused meanwhile and then
counts the gap as processed, which would lose them.

Pure: observations in, how far each partition may be processed out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class Aligner:
    topics: tuple[str, ...]  # the co-partitioned source topics
    slack_ms: float = 100.0
    idle_s: float = 2.0
    _last_ts: dict[TopicPartition, float] = field(default_factory=dict)  # record timestamp (ms) of the last record
    _last_wall: dict[TopicPartition, float] = field(default_factory=dict)  # when it arrived (monotonic s)
    _next_offset: dict[TopicPartition, int] = field(default_factory=dict)
    backlog_idle_s: float = 30.0  # a topic-partition known to have more records waits this long at most
    startup_grace_s: float = 5.0  # after (re)assignment, how long a topic-partition not heard from is waited for
    _since: float | None = None  # when the first record since the (re)assignment arrived (monotonic s)

    def observe(self, topic: str, partition: int, timestamp_ms: float, wall: float, offset: int = -1) -> None:
        tp = (topic, partition)
        if self._since is None:
            self._since = wall
        if timestamp_ms > self._last_ts.get(tp, float("-inf")):
            self._last_ts[tp] = timestamp_ms
        self._last_wall[tp] = wall
        if offset + 1 > self._next_offset.get(tp, 0):
            self._next_offset[tp] = offset + 1

    def _delivering(self, tp: TopicPartition, wall: float, highwater: int | None) -> bool:
        """Still to be waited for: it delivered recently, or the broker says it has more records for us."""
        if tp not in self._last_ts:
            return self._since is not None and wall - self._since < self.startup_grace_s
        quiet = wall - self._last_wall[tp]
        if quiet < self.idle_s:
            return True
        # A backlog not fetched yet (the high watermark is the last record batch's base + 1 on some brokers,
        # hence the - 1): keep waiting for it, up to a bound.
        behind = highwater is not None and self._next_offset.get(tp, 0) < highwater - 1
        return behind and quiet < self.backlog_idle_s

    def release_bound(
        self, partition: int, wall: float, highwaters: Mapping[TopicPartition, int | None] | None = None
    ) -> float:
        """Records of `partition` with a timestamp up to this (ms) may be processed now (inf: all of them)."""
        hw = highwaters or {}
        tps = [(t, partition) for t in self.topics]
        if not any(tp in self._last_ts for tp in tps):
            return float("inf")  # nothing of this partition seen: nothing to hold
        delivering = [self._last_ts.get(tp, float("-inf")) for tp in tps if self._delivering(tp, wall, hw.get(tp))]
        return min(delivering) + self.slack_ms if delivering else float("inf")

    def reset(self) -> None:
        """Forget everything (after a rebalance positions may move back)."""
        self._last_ts.clear()
        self._last_wall.clear()
        self._next_offset.clear()
        self._since = None
