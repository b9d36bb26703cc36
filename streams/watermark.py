"""Event-time watermarks, one per partition: how far event time has surely progressed.

A partition's watermark is the latest event time seen on it less the allowed lateness, so a deadline fires
only once every event that may still change its outcome (within the lateness) has had the chance to arrive.
Replaying history therefore fires the same deadlines as live running. When a partition is quiet, its
watermark advances with the wall clock from its last event: live, event time keeps flowing even when nobody
crosses; in a fast replay events follow each other within milliseconds, so the wall clock adds next to
nothing and cannot run ahead of the data.

Pure: callers pass the wall-clock reading (monotonic seconds) in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True)
class PartitionClock:
    """What one partition has seen: the latest event time, and when (wall clock) its last event arrived."""

    max_event_time: datetime
    last_event_wall: float  # monotonic seconds
    watermark: datetime  # never moves back


class Watermarks:
    """Per-partition watermarks over event time, advanced by events and, when idle, by the wall clock."""

    def __init__(self, allowed_lateness: timedelta) -> None:
        self.allowed_lateness = allowed_lateness
        self._clocks: dict[int, PartitionClock] = {}

    def observe(self, partition: int, event_time: datetime, wall: float) -> None:
        """An event with `event_time` arrived on `partition` at wall-clock `wall`."""
        clock = self._clocks.get(partition)
        if clock is None:
            self._clocks[partition] = PartitionClock(event_time, wall, event_time - self.allowed_lateness)
            return
        if event_time > clock.max_event_time:
            clock.max_event_time = event_time
        clock.last_event_wall = wall
        candidate = clock.max_event_time - self.allowed_lateness
        if candidate > clock.watermark:
            clock.watermark = candidate

    def advance_idle(self, partition: int, wall: float) -> datetime | None:
        """Move a quiet partition's watermark on by the wall time since its last event; the new watermark."""
        clock = self._clocks.get(partition)
        if clock is None:
            return None
        idle = max(0.0, wall - clock.last_event_wall)
        candidate = clock.max_event_time + timedelta(seconds=idle) - self.allowed_lateness
        if candidate > clock.watermark:
            clock.watermark = candidate
        return clock.watermark

    def get(self, partition: int) -> datetime | None:
        """The partition's watermark, or None before its first event (nothing may fire yet)."""
        clock = self._clocks.get(partition)
        return clock.watermark if clock is not None else None

    def partitions(self) -> list[int]:
        return sorted(self._clocks)

    def forget(self, keep: set[int]) -> None:
        """Drop partitions this worker no longer owns (their events now go to another worker)."""
        for p in [p for p in self._clocks if p not in keep]:
            del self._clocks[p]

    def snapshot(self) -> dict[int, datetime]:
        return {p: c.watermark for p, c in self._clocks.items()}
