"""The time-ordered deadline index: which travellers have a deadline due, without scanning open stays.

Each traveller's state says when its next deadline falls due (`StepResult.next_due`). The index keeps those
in a sorted list per partition, so firing everything due by a watermark costs O(log n + due) and a partition
handed to another worker is dropped as a whole. It is derived data: rebuilt from the state table whenever
partitions are assigned or recovered, never stored on its own.

Pure data structure, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sortedcontainers import SortedList


class DeadlineIndex:
    """Next deadline per key of one partition, ordered by due time."""

    __slots__ = ("_by_key", "_order")

    def __init__(self) -> None:
        self._order: SortedList = SortedList()  # (due, key)
        self._by_key: dict[str, datetime] = {}

    def set(self, key: str, due: datetime | None) -> None:
        """Record the key's next deadline (None: it has none)."""
        old = self._by_key.get(key)
        if old == due:
            return
        if old is not None:
            self._order.remove((old, key))
            del self._by_key[key]
        if due is not None:
            self._order.add((due, key))
            self._by_key[key] = due

    def pop_due(self, watermark: datetime) -> list[str]:
        """Remove and return the keys whose deadline is at or before `watermark`, earliest first."""
        end = self._order.bisect_right((watermark, "\uffff"))
        if end == 0:
            return []
        due = [key for _, key in self._order[:end]]
        del self._order[:end]
        for key in due:
            del self._by_key[key]
        return due

    def next_due(self) -> datetime | None:
        return self._order[0][0] if self._order else None

    def due_of(self, key: str) -> datetime | None:
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._by_key)


class Deadlines:
    """Deadline indexes of the partitions a worker owns."""

    def __init__(self) -> None:
        self._partitions: dict[int, DeadlineIndex] = {}

    def partition(self, partition: int) -> DeadlineIndex:
        index = self._partitions.get(partition)
        if index is None:
            index = self._partitions[partition] = DeadlineIndex()
        return index

    def set(self, partition: int, key: str, due: datetime | None) -> None:
        self.partition(partition).set(key, due)

    def pop_due(self, partition: int, watermark: datetime) -> list[str]:
        index = self._partitions.get(partition)
        return index.pop_due(watermark) if index is not None else []

    def rebuild(self, entries: Iterable[tuple[int, str, datetime | None]], keep: Collection[int]) -> None:
        """Start again from (partition, key, next due) of the stored states of the partitions in `keep`."""
        self._partitions = {p: DeadlineIndex() for p in keep}
        for partition, key, due in entries:
            if partition in keep and due is not None:
                self._partitions[partition].set(key, due)

    def pending(self) -> int:
        return sum(len(i) for i in self._partitions.values())

    def partitions(self) -> list[int]:
        return sorted(self._partitions)
