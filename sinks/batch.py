"""Batches of Kafka messages: assembling them, their offset ranges and insert token, and framing for staging.

Pure: the consumer loop (`sinks.sink`) feeds messages in and acts on what comes out.

A batch's insert token is derived from its offset ranges only, so re-reading the same ranges gives the same
token and ClickHouse drops the blocks that already landed. After a crash the sink re-reads exactly the ranges
of its last recorded intent (`Assembler.cut`), whatever batch size it runs with now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from operator import ne, or_, sub
from typing import NamedTuple, Protocol, overload

from sinks.stage import WIRE_HEADER, ZIGZAG_CACHED, ZIGZAG_TABLE, framed, key_field, timestamp_field, zigzag


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


@dataclass(eq=False, slots=True)
class Messages(Sequence[Message]):
    """Consumed messages column by column: the sink's batches (~100,000 messages a second).

    Columns are filled, sliced and framed by C-level list operations (`plan_batch`); a `Message` tuple per
    message would cost more Python time than all of the framing. Indexing builds a `Message` on demand, for
    the few that need one (rejects, corrupt-record checks).
    """

    topics: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int | None] = field(default_factory=list)
    _runs: list[tuple[int, int]] | None = field(default=None, repr=False)  # of `runs`, until the next change

    @classmethod
    def of(cls, messages: Iterable[Message]) -> Messages:
        if isinstance(messages, Messages):
            return messages
        out = cls()
        out.extend_messages(messages)
        return out

    def columns(
        self,
    ) -> tuple[list[str], list[int], list[int], list[bytes | None], list[bytes | None], list[int | None]]:
        return self.topics, self.partitions, self.offsets, self.keys, self.values, self.timestamps

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> Messages: ...

    def __getitem__(self, index: int | slice) -> Message | Messages:
        t, p, o, k, v, ts = self.columns()
        if isinstance(index, slice):
            return Messages(t[index], p[index], o[index], k[index], v[index], ts[index])
        return Message(t[index], p[index], o[index], k[index], v[index], ts[index])

    def __iter__(self) -> Iterator[Message]:
        return map(Message, *self.columns())

    def extend(self, other: Messages) -> None:
        self._runs = None
        for mine, theirs in zip(self.columns(), other.columns(), strict=True):
            mine += theirs  # type: ignore[operator]

    def extend_messages(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.append(m)

    def append(self, m: Message) -> None:
        self._runs = None
        self.topics.append(m.topic)
        self.partitions.append(m.partition)
        self.offsets.append(m.offset)
        self.keys.append(m.key)
        self.values.append(m.value)
        self.timestamps.append(m.timestamp)

    def runs(self) -> list[tuple[int, int]]:
        """(start, end) of each stretch of consecutive messages of one partition (a consumed chunk is a few).

        Kept until the next `extend` or `append`: a batch's intent and its plan both need them.
        """
        if self._runs is None:
            topics, partitions = self.topics, self.partitions
            changed = map(ne, partitions[1:], partitions[:-1])
            if topics and topics.count(topics[0]) != len(topics):  # several topics (a count is cheaper than pairs)
                changed = map(or_, changed, map(ne, topics[1:], topics[:-1]))
            starts = [0, *compress(count(1), changed)]
            self._runs = list(zip(starts, [*starts[1:], len(partitions)], strict=True)) if partitions else []
        return self._runs


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """Offsets first..last (inclusive) of one partition in a batch."""

    topic: str
    partition: int
    first: int
    last: int


def ranges_of(messages: Iterable[Message]) -> tuple[Range, ...]:
    batch = Messages.of(messages)
    bounds: dict[tuple[str, int], tuple[int, int]] = {}
    for start, end in batch.runs():  # per stretch of one partition, not per message
        offsets = batch.offsets[start:end]
        tp = (batch.topics[start], batch.partitions[start])
        lo, hi = min(offsets), max(offsets)
        if tp in bounds:
            lo, hi = min(lo, bounds[tp][0]), max(hi, bounds[tp][1])
        bounds[tp] = (lo, hi)
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
    _pending: Messages = field(default_factory=Messages)
    _carry: Messages = field(default_factory=Messages)
    _since: float | None = None
    _reached: set[tuple[str, int]] = field(default_factory=set)

    def add(self, messages: Sequence[Message], now: float) -> None:
        if not messages:
            return
        if self.cut is None:
            self._pending.extend(Messages.of(messages))
            if self._since is None:
                self._since = now
            return
        for m in messages:  # a replay, rare: message by message
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

    def take(self, group_id: str, now: float) -> tuple[Messages, Intent]:
        """The next batch and its intent (the replayed one, token and all, after a cut)."""
        if self.cut is None:
            batch, rest = self._pending[: self.max_messages], self._pending[self.max_messages :]
            ranges = ranges_of(batch)
            intent = Intent(batch_token(group_id, ranges), ranges)
        else:
            batch, rest, intent = self._pending, self._carry, self.cut
            self.cut, self._reached, self._carry = None, set(), Messages()
        self._pending = rest
        self._since = now if rest else None
        return batch, intent

    def drop(self) -> None:
        """Forget everything buffered (partitions revoked: the new owner re-reads it)."""
        self._pending, self._carry, self._since, self.cut, self._reached = Messages(), Messages(), None, None, set()


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
    # The sink's copy of a check the processors' intake makes too (a wrong record type, the rejects SQL): on a
    # source topic such a message is the processors' to dead-letter (see `sinks.sink.owner`).
    mirrors_intake: bool = False


@dataclass(frozen=True, slots=True)
class Writer:
    """The schema a message was written with, as ClickHouse needs it (JSON), and its record name."""

    record_name: str
    schema_json: str


@dataclass
class Group:
    """Records of one table written with one schema: their batch indexes and framed encodings, aligned."""

    indexes: list[int] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # message, trailer, message, trailer... (`sinks.stage`)

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
    messages: Messages  # the `_msg` column indexes this list
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


def plan_batch(
    messages: Sequence[Message], intent: Intent, routes: Mapping[str, Route], resolve: Resolver
) -> BatchPlan:
    """Frame every message for its table's staging, or reject it with the reason.

    The sink's hot path (~100,000 messages a second). A batch is a few stretches of one partition each, and
    a stretch is mostly messages of one writer schema with keys and values: such a stretch is framed column
    by column in C-level list operations (`_Planner.frame_stretch`), anything else message by message.
    """
    batch = Messages.of(messages)
    planner = _Planner(batch, intent, routes, resolve)
    for start, end in batch.runs():
        if not planner.frame_stretch(start, end):
            planner.frame_one_by_one(start, end)
    return planner.plan()


@dataclass
class _Planner:
    """The state of `plan_batch`: the tables and rejects so far."""

    messages: Messages
    intent: Intent
    routes: Mapping[str, Route]
    resolve: Resolver
    tables: dict[str, TablePlan] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    tombstones: int = 0
    firsts: dict[tuple[str, int], int] = field(init=False)  # first offset of each partition in the batch

    def __post_init__(self) -> None:
        self.firsts = {(r.topic, r.partition): r.first for r in self.intent.ranges}

    def plan(self) -> BatchPlan:
        for plan in self.tables.values():
            plan.first_offsets = {p: first for (t, p), first in self.firsts.items() if t == plan.topic}
        return BatchPlan(self.intent, self.messages, self.tables, self.rejected, self.tombstones)

    def _group(self, route: Route, topic: str, writer: Writer) -> Group:
        plan = self.tables.get(route.table)
        if plan is None:
            plan = self.tables[route.table] = TablePlan(route.table, route.record_name, topic)
        return plan.groups.setdefault(writer.schema_json, Group())

    def frame_stretch(self, start: int, end: int) -> bool:
        """Frame messages start..end-1 (one partition) at once if they are uniform, else False.

        Uniform: routed, all values with the same single-object header (so one writer, resolved once, of the
        topic's record), all with keys, every trailer number in the zig-zag table. Produces exactly what
        `frame_one_by_one` would.
        """
        topic, partition = self.messages.topics[start], self.messages.partitions[start]
        route = self.routes.get(topic)
        values = self.messages.values[start:end]
        head = values[0]
        if route is None or head is None or end > ZIGZAG_CACHED:
            return False
        try:
            writer, header = self.resolve(head)
        except ValueError:
            return False
        # A single-object header names its writer, so one resolve serves every value that starts with it; and
        # it is exactly the staged `_wire_header` field, so the values are staged as they are.
        if header != SINGLE_OBJECT_HEADER or header != WIRE_HEADER or writer.record_name != route.record_name:
            return False
        keys = self.messages.keys[start:end]
        try:  # TypeError: a tombstone (value None) or a message without a key
            if not all(map(bytes.startswith, values, repeat(head[:SINGLE_OBJECT_HEADER]))):  # type: ignore[arg-type]
                return False
            key_lengths = list(map(len, keys))  # type: ignore[arg-type]
        except TypeError:
            return False
        zz = ZIGZAG_TABLE
        delta_fields = self._delta_fields(start, end, self.firsts[(topic, partition)])
        if delta_fields is None or max(key_lengths) >= ZIGZAG_CACHED:
            return False
        stamps = self.messages.timestamps[start:end]
        stamp_fields = {ts: timestamp_field(ts) for ts in set(stamps)}  # a few: one per producer batch
        trailers = list(
            map(
                b"".join,  # one bytes object per message: each one allocated costs as much as the rest
                zip(
                    zz[start:end],  # _msg
                    repeat(zz[partition] if partition < ZIGZAG_CACHED else zigzag(partition)),
                    delta_fields,
                    map(stamp_fields.__getitem__, stamps),
                    map(zz.__getitem__, key_lengths),
                    keys,
                ),
            )
        )
        group = self._group(route, topic, writer)
        group.indexes += range(start, end)
        parts = group.parts
        at = len(parts)
        parts += repeat(b"", 2 * (end - start))
        parts[at::2], parts[at + 1 :: 2] = values, trailers  # type: ignore[assignment]  # message, trailer
        return True

    def _delta_fields(self, start: int, end: int, first: int) -> list[bytes] | None:
        """The `_delta` fields of messages start..end-1, if all in the zig-zag table; else None."""
        offsets = self.messages.offsets[start:end]
        low = offsets[0] - first
        if list(map(sub, offsets[1:], offsets[:-1])).count(1) == end - start - 1:  # consecutive: the usual case
            return ZIGZAG_TABLE[low : low + end - start] if low >= 0 and low + end - start <= ZIGZAG_CACHED else None
        deltas = list(map(sub, offsets, repeat(first)))
        return list(map(ZIGZAG_TABLE.__getitem__, deltas)) if 0 <= min(deltas) <= max(deltas) < ZIGZAG_CACHED else None

    def frame_one_by_one(self, start: int, end: int) -> None:
        """Frame messages start..end-1 (one partition) one by one, rejecting those that cannot be staged."""
        topic, partition = self.messages.topics[start], self.messages.partitions[start]
        route = self.routes.get(topic)
        first = self.firsts[(topic, partition)]
        zz, cached = ZIGZAG_TABLE, ZIGZAG_CACHED
        partition_bytes = zz[partition] if partition < cached else zigzag(partition)
        last_header: bytes | None = None  # wire header of the previous message, and where its records go
        header = 0
        group = Group()
        last_ts: int | None = _NO_TIMESTAMP_YET  # timestamps repeat (one producer batch): encoded once per run
        ts_bytes = b""
        m = self.messages
        offsets, keys, values, stamps = (
            m.offsets[start:end],
            m.keys[start:end],
            m.values[start:end],
            m.timestamps[start:end],
        )
        for index, offset, key, value, ts in zip(range(start, end), offsets, keys, values, stamps, strict=True):
            if value is None:
                self.tombstones += 1  # compaction marker on the stays topic, not an event
                continue
            if value[:10] != last_header:
                last_header = None
                if route is None:
                    self.reject(index, "sink", f"the sink has no table for topic {topic!r}")
                    continue
                try:
                    writer, header = self.resolve(value)
                except ValueError as exc:
                    self.reject(index, "decode", str(exc))
                    continue
                if writer.record_name != route.record_name:
                    self.reject(
                        index,
                        "sink",
                        f"a {writer.record_name} record on {topic}, which carries {route.record_name}",
                        mirrors_intake=True,
                    )
                    continue
                group = self._group(route, topic, writer)
                if header == SINGLE_OBJECT_HEADER:  # the fingerprint names the writer: reuse it for the same header
                    last_header = value[:10]
            delta = offset - first
            if ts != last_ts:
                last_ts, ts_bytes = ts, timestamp_field(ts)
            group.indexes.append(index)
            group.parts.append(value if header == WIRE_HEADER else framed(value, header))
            group.parts.append(
                (zz[index] if index < cached else zigzag(index))
                + partition_bytes
                + (zz[delta] if 0 <= delta < cached else zigzag(delta))
                + ts_bytes
                + (zz[len(key)] + key if key and len(key) < cached else key_field(key))
            )

    def reject(self, index: int, stage: str, reason: str, *, mirrors_intake: bool = False) -> None:
        self.rejected.append(Rejected(self.messages[index], stage, reason, mirrors_intake=mirrors_intake))


def schema_json(raw: Mapping[str, object]) -> str:
    """Canonical JSON text of a schema, the key messages of one writer are grouped by."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))
