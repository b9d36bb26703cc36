"""State stores: Faust tables of per-key state bytes, with changelogs, written in bulk once per batch.

Faust keeps the store (``memory://`` or RocksDB), declares the changelog topic and recovers from it on
assignment. Writes are done here, in bulk: each changed key goes into the store and, as one record, onto the
changelog through the processors' librdkafka producer. Faust's own per-key path (``table[key] = value``) sends
each record through aiokafka and costs about 0.2 ms a record here, more than the whole rest of the processing.

Partition context: Faust finds the partition of a table key from the event being processed (a context
variable a stream sets while it iterates; the processors take batches without one, `streams.drain`): with
RocksDB, the per-partition database of a read or write. A batch spans several partitions, so before touching
the keys of partition *p* the shell points that context at an event of *p* (`PartitionContext.of`). Keys thus
live in the changelog partition of the source partition their events came from, which is what recovery on
reassignment expects.

Stored values: `streams.stored` (a header with the source partition and next deadline, then the state).

End markers: the embedded broker (Tansu) reports a partition's high watermark as the base offset of its last
record batch + 1, so when the last batch holds several records, Faust's recovery (which reads a changelog up to
the high watermark) would stop at the first of them and miss the rest. `StateStore.put_many` therefore ends
every batch of writes with a tombstone of a reserved key, sent alone in its own record batch: the high watermark
then covers every real write. The tombstone deletes nothing real; with a broker that reports correct high
watermarks it costs a few bytes per batch.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from faust.streams import _current_event
from faust.types import EventT

from streams.outputs import Outputs

MARKER_KEY = b"\x00shekara-end-of-batch"


class PartitionContext:
    """Remembers the last event seen on each partition, to run table reads and writes in its context."""

    def __init__(self) -> None:
        self._last: dict[int, EventT] = {}

    def remember(self, event: EventT) -> None:
        self._last[event.message.partition] = event

    def knows(self, partition: int) -> bool:
        return partition in self._last

    @contextlib.contextmanager
    def of(self, partition: int) -> Iterator[None]:
        """Table operations inside this block belong to `partition` (changelog partition, RocksDB database)."""
        token = _current_event.set(weakref.ref(self._last[partition]))
        try:
            yield
        finally:
            _current_event.reset(token)

    def forget(self, keep: set[int]) -> None:
        for p in [p for p in self._last if p not in keep]:
            del self._last[p]


class StateStore:
    """One processor's state: a Faust table (store + changelog) read per key and written in bulk.

    Writes are staged first (an in-memory overlay that later batches read) and reach the store and the
    changelog only in `log`, which the commit pipeline runs after the batch's outputs are acknowledged: neither
    a RocksDB store on local disk nor the changelog ever holds state whose outputs might be lost.
    """

    def __init__(self, table: Any, outputs: Outputs, partitions: PartitionContext) -> None:
        self.table = table
        self.outputs = outputs
        self.partitions = partitions
        self.changelog = table.changelog_topic.get_topic_name()
        self._staged: dict[bytes, bytes] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        staged = self._staged.get(key)
        if staged is not None:
            return staged
        with self.partitions.of(partition):
            value: bytes | None = self.table.get(key)
            return value

    def get_many(self, keys: Iterable[tuple[int, bytes]]) -> dict[tuple[int, bytes], bytes]:
        """(partition, key) -> value of those of `keys` that have one; one partition context per partition."""
        staged, found = self._staged, {}
        by_partition: dict[int, list[bytes]] = {}
        for partition, key in keys:
            value = staged.get(key)
            if value is not None:
                found[partition, key] = value
            else:
                by_partition.setdefault(partition, []).append(key)
        get = self.table.get
        for partition, wanted in by_partition.items():
            with self.partitions.of(partition):
                for key in wanted:
                    value = get(key)
                    if value is not None:
                        found[partition, key] = value
        return found

    def stage(self, writes: Iterable[tuple[int, bytes, bytes]]) -> list[tuple[int, bytes, bytes]]:
        """Make (partition, key, value) writes visible to later reads; `log` makes them durable."""
        staged = list(writes)
        for _, key, value in staged:
            self._staged[key] = value
        return staged

    async def log(self, staged: list[tuple[int, bytes, bytes]]) -> None:
        """Write staged values to the store and the changelog; returns once they are durable and recoverable."""
        if not staged:
            return
        store, send, changelog, pending = self.table.data, self.outputs.raw, self.changelog, self._staged
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for partition, key, value in staged:
            by_partition.setdefault(partition, []).append((key, value))
        for partition, writes in by_partition.items():
            with self.partitions.of(partition):
                for key, value in writes:
                    store[key] = value
                    send(changelog, key, value, partition)
                    if pending.get(key) is value:  # not staged again by a later batch meanwhile
                        del pending[key]
        await self.outputs.flush()  # the writes are acknowledged and their record batches closed
        for partition in sorted(by_partition):
            self.outputs.raw(self.changelog, MARKER_KEY, None, partition)
        await self.outputs.flush()  # each marker is now, by itself, the last batch of its changelog partition

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Stored (key, value) pairs of the partitions this worker holds (end markers left out)."""
        for key, value in self.table.items():
            if key != MARKER_KEY and value:
                yield key, value
