"""Batches of Kafka messages: assembling them, their offset ranges and insert token, and framing for staging.

Pure: the consumer loop (`sinks.sink`) feeds messages in and acts on what comes out.

A batch's insert token is derived from its offset ranges only, so re-reading the same ranges gives the same
token and ClickHouse drops the blocks that already landed. After a crash the sink re-reads exactly the ranges
of its last recorded intent (`Assembler.cut`), whatever batch size it runs with now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sinks.stage import ZIGZAG_CACHED, ZIGZAG_TABLE, key_field, timestamp_field, zigzag


class Message(NamedTuple):
    """One consumed message (a tuple: the sink builds ~100,000 a second).

    `timestamp` is the message's Kafka timestamp in ms: the stream processors judge a source event's times
    against it (`streams.intake`), and so does the sink. None (not known: messages that never went through
    Kafka) judges the event as of its own time, with no check that it lies in the future.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """Offsets first..last (inclusive) of one partition in a batch."""

    topic: str
    partition: int
    first: int
    last: int


def ranges_of(messages: Iterable[Message]) -> tuple[Range, ...]:
    bounds: dict[tuple[str, int], list[int]] = {}
    for m in messages:
        topic, partition, offset = m.topic, m.partition, m.offset
        b = bounds.get((topic, partition))
        if b is None:
            bounds[(topic, partition)] = [offset, offset]
        elif offset > b[1]:
            b[1] = offset
        elif offset < b[0]:
            b[0] = offset
    return tuple(sorted(Range(t, p, lo, hi) for (t, p), (lo, hi) in bounds.items()))


def batch_token(group_id: str, ranges: Iterable[Range]) -> str:
    """The insert deduplication token of the batch that covers `ranges`."""
    spec = ";".join(f"{r.topic}:{r.partition}:{r.first}-{r.last}" for r in sorted(ranges))
    return hashlib.sha256(f"{group_id}|{spec}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Intent:
    """A batch recorded before its insert: re-read after a crash with the same token."""

    token: str
    ranges: tuple[Range, ...]


def pending_intent(intents: Iterable[Intent], committed: Mapping[tuple[str, int], int]) -> Intent | None:
    """The newest recorded batch whose offsets are not committed yet, if it is replayable from here.

    `intents` newest first; `committed` maps each partition this consumer owns to its committed offset (the
    next offset to read). A batch is pending when, on every partition it covers, the committed offset is at
    its first offset: nothing of it was committed. It is replayable only if we own all its partitions.
    """
    for intent in intents:
        if any((r.topic, r.partition) not in committed for r in intent.ranges):
            continue
        if all(committed[(r.topic, r.partition)] == r.first for r in intent.ranges):
            return intent
        if all(committed[(r.topic, r.partition)] > r.last for r in intent.ranges):
            return None  # the newest batch we can see was committed: nothing to replay
    return None


@dataclass
class Assembler:
    """Collects messages into batches of at most `max_messages`, or whatever arrived within `max_wait`.

    With a `cut` (replay of an intent), the next batch is exactly the intent's ranges: messages beyond them
    wait for the following batch, and the batch is ready once every range is complete.
    """

    max_messages: int
    max_wait: float
    cut: Intent | None = None
    _pending: list[Message] = field(default_factory=list)
    _carry: list[Message] = field(default_factory=list)
    _since: float | None = None
    _reached: set[tuple[str, int]] = field(default_factory=set)

    def add(self, messages: list[Message], now: float) -> None:
        if not messages:
            return
        if self.cut is None:
            self._pending.extend(messages)
            if self._since is None:
                self._since = now
            return
        for m in messages:
            if self.cut is not None:
                r = self._cut_range(m)
                if r is None or m.offset > r.last:
                    self._carry.append(m)
                    continue
                if m.offset >= r.last:
                    self._reached.add((m.topic, m.partition))
            self._pending.append(m)
            if self._since is None:
                self._since = now

    def partition_drained(self, topic: str, partition: int) -> None:
        """End of partition seen: a cut range whose last offset vanished (compaction) is complete too."""
        if self.cut is not None:
            self._reached.add((topic, partition))

    def _cut_range(self, m: Message) -> Range | None:
        assert self.cut is not None
        for r in self.cut.ranges:
            if r.topic == m.topic and r.partition == m.partition:
                return r
        return None

    def __len__(self) -> int:
        return len(self._pending)

    def ready(self, now: float) -> bool:
        if self.cut is not None:
            return all((r.topic, r.partition) in self._reached for r in self.cut.ranges)
        if not self._pending:
            return False
        return len(self._pending) >= self.max_messages or (
            self._since is not None and now - self._since >= self.max_wait
        )

    def take(self, group_id: str, now: float) -> tuple[list[Message], Intent]:
        """The next batch and its intent (the replayed one, token and all, after a cut)."""
        if self.cut is None:
            batch, rest = self._pending[: self.max_messages], self._pending[self.max_messages :]
            ranges = ranges_of(batch)
            intent = Intent(batch_token(group_id, ranges), ranges)
        else:
            batch, rest, intent = self._pending, self._carry, self.cut
            self.cut, self._reached, self._carry = None, set(), []
        self._pending = rest
        self._since = now if rest else None
        return batch, intent

    def drop(self) -> None:
        """Forget everything buffered (partitions revoked: the new owner re-reads it)."""
        self._pending, self._carry, self._since, self.cut, self._reached = [], [], None, None, set()


@dataclass(frozen=True, slots=True)
class Route:
    table: str
    record_name: str


@dataclass(frozen=True, slots=True)
class Rejected:
    message: Message
    stage: str  # "decode" (cannot be read) or "sink" (read, but cannot be stored)
    reason: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Writer:
    """The schema a message was written with, as ClickHouse needs it (JSON), and its record name."""

    record_name: str
    schema_json: str


@dataclass
class Group:
    """Records of one table written with one schema: their batch indexes and framed encodings, aligned."""

    indexes: list[int] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # body, trailer, body, trailer, ... (see `sinks.stage`)

    def __len__(self) -> int:
        return len(self.indexes)

    def subset(self, lo: int, hi: int) -> Group:
        return Group(self.indexes[lo:hi], self.parts[2 * lo : 2 * hi])


@dataclass
class TablePlan:
    table: str
    record_name: str
    topic: str
    groups: dict[str, Group] = field(default_factory=dict)  # writer schema JSON -> records
    first_offsets: dict[int, int] = field(default_factory=dict)  # partition -> first offset in the batch

    @property
    def count(self) -> int:
        return sum(len(g) for g in self.groups.values())


@dataclass
class BatchPlan:
    intent: Intent
    messages: list[Message]  # the `_msg` column indexes this list
    tables: dict[str, TablePlan]
    rejected: list[Rejected]
    tombstones: int


class Resolver(Protocol):
    """Tells a message's writer schema from its header (`sinks.framing.Framer`)."""

    def __call__(self, value: bytes) -> tuple[Writer, int]:
        """(writer, header length); raises ValueError if the header is unreadable."""
        ...


SINGLE_OBJECT_HEADER = 10  # C3 01 + 8-byte fingerprint
_NO_TIMESTAMP_YET = -(2**63) - 1  # no Kafka timestamp (a signed 64-bit number) is this


def plan_batch(messages: list[Message], intent: Intent, routes: Mapping[str, Route], resolve: Resolver) -> BatchPlan:
    """Frame every message for its table's staging, or reject it with the reason.

    The sink's hot loop (~100,000 messages a second): consecutive messages mostly share a partition and a
    writer schema, so both are looked up only when they change.
    """
    tables: dict[str, TablePlan] = {}
    rejected: list[Rejected] = []
    tombstones = 0
    firsts = {(r.topic, r.partition): r.first for r in intent.ranges}
    zz, cached = ZIGZAG_TABLE, ZIGZAG_CACHED
    last_topic: str | None = None
    last_partition = -1
    route: Route | None = None
    first = 0
    partition_bytes = b""
    last_header: bytes | None = None  # wire header of the previous message, and where its records go
    header = 0
    group = Group()
    last_ts: int | None = _NO_TIMESTAMP_YET  # timestamps repeat (one producer batch): encoded once per run
    ts_bytes = b""
    for index, m in enumerate(messages):
        topic, partition, offset, key, value, ts = m
        if partition != last_partition or topic != last_topic:
            last_topic, last_partition, last_header = topic, partition, None
            route = routes.get(topic)
            first = firsts[(topic, partition)]
            partition_bytes = zz[partition] if partition < cached else zigzag(partition)
        if value is None:
            tombstones += 1  # compaction marker on the stays topic, not an event
            continue
        if value[:10] != last_header:
            last_header = None
            if route is None:
                rejected.append(Rejected(m, "sink", f"the sink has no table for topic {topic!r}"))
                continue
            try:
                writer, header = resolve(value)
            except ValueError as exc:
                rejected.append(Rejected(m, "decode", str(exc)))
                continue
            if writer.record_name != route.record_name:
                rejected.append(
                    Rejected(m, "sink", f"a {writer.record_name} record on {topic}, which carries {route.record_name}")
                )
                continue
            plan = tables.get(route.table)
            if plan is None:
                plan = tables[route.table] = TablePlan(route.table, route.record_name, topic)
            group = plan.groups.setdefault(writer.schema_json, Group())
            if header == SINGLE_OBJECT_HEADER:  # the fingerprint names the writer: reuse it for the same header
                last_header = value[:10]
        delta = offset - first
        if ts != last_ts:
            last_ts, ts_bytes = ts, timestamp_field(ts)
        group.indexes.append(index)
        group.parts.append(value[header:])  # a copy, but ~10x cheaper than a memoryview slice
        group.parts.append(
            (zz[index] if index < cached else zigzag(index))
            + partition_bytes
            + (zz[delta] if 0 <= delta < cached else zigzag(delta))
            + ts_bytes
            + (zz[len(key)] + key if key and len(key) < cached else key_field(key))
        )
    for plan in tables.values():
        plan.first_offsets = {p: first for (t, p), first in firsts.items() if t == plan.topic}
    return BatchPlan(intent, messages, tables, rejected, tombstones)


def schema_json(raw: Mapping[str, object]) -> str:
    """Canonical JSON text of a schema, the key messages of one writer are grouped by."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))
