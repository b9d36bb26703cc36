"""A durable, ordered on-disk queue of encoded messages waiting for the broker (persist-queue's SQLite ack queue).

A message leaves the spool only when it is acknowledged, i.e. after the broker confirmed delivery; taken but
unacknowledged messages go back to the front (`release`, or automatically when the spool is reopened after a
crash), so nothing accepted is lost and the original order is kept.
"""

from __future__ import annotations

import fcntl
import threading
from dataclasses import dataclass
from pathlib import Path

from persistqueue import SQLiteAckQueue
from persistqueue.exceptions import Empty


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    topic: str
    key: bytes | None
    value: bytes


class SpoolBusyError(RuntimeError):
    """Another process has this spool open: two drainers would send the same messages and break the order."""


class Spool:
    """FIFO of `SpooledMessage` in ``directory``; safe for the threads of one process, locked against others."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._owner = (directory / "owner.lock").open("a")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            raise SpoolBusyError(
                f"the spool {directory} is in use by another process; give this producer its own client_id"
            ) from None
        # auto_resume: messages taken but not acknowledged before a crash become ready again, in place.
        self._queue = SQLiteAckQueue(str(directory), auto_resume=True, multithreading=True)
        # One operation at a time: persist-queue keeps its size in an unguarded Python counter.
        self._lock = threading.Lock()

    def put(self, message: SpooledMessage) -> None:
        """Append durably (committed to disk before returning)."""
        with self._lock:
            self._queue.put((message.topic, message.key, message.value))

    def take(self, limit: int) -> list[tuple[int, SpooledMessage]]:
        """Up to `limit` messages from the front, oldest first, reserved until `ack` or `release`."""
        taken: list[tuple[int, SpooledMessage]] = []
        with self._lock:
            for _ in range(limit):
                try:
                    raw = self._queue.get(block=False, raw=True)
                except Empty:
                    break
                topic, key, value = raw["data"]
                taken.append((raw["pqid"], SpooledMessage(topic, key, value)))
        return taken

    def ack(self, ids: list[int]) -> None:
        """Delivered: remove for good."""
        with self._lock:
            for pqid in ids:
                self._queue.ack(id=pqid)
            if ids:
                self._queue.clear_acked_data(max_delete=None, keep_latest=None)

    def release(self, ids: list[int]) -> None:
        """Not delivered: back to the front of the queue, in their original order."""
        with self._lock:
            for pqid in ids:
                self._queue.nack(id=pqid)

    def __len__(self) -> int:
        """Messages not yet delivered: waiting plus reserved."""
        with self._lock:
            return max(0, self._queue.size) + self._queue.unack_count()

    def close(self) -> None:
        with self._lock:
            self._queue.close()
            self._owner.close()  # releases the flock
