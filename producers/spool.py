"""A durable, ordered on-disk queue of encoded messages waiting for the broker (persist-queue's SQLite ack queue).

A message leaves the spool only when it is acknowledged, i.e. after the broker confirmed delivery; taken but
unacknowledged messages go back to the front (`release`, or automatically when the spool is reopened after a
crash), so nothing accepted is lost and the original order is kept.

The spool holds events in clear (document numbers, names of hosts): its directory is 0700 and its files 0600,
created so and tightened if an older version left them looser. Messages are stored as msgpack (topic, key,
value), never pickle: reading a spool can then never run code, and a message comes back byte for byte.
"""

from __future__ import annotations

import fcntl
import io
import os
import pickle
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import persistqueue.serializers.msgpack
from persistqueue import SQLiteAckQueue
from persistqueue.exceptions import Empty

from shekara.files import FILE_MODE, private_dir, private_files
from shekara.logs import get_logger

DB_FILE = "spool.db"
# What versions before msgpack wrote (persist-queue's defaults): pickled tuples in this table.
LEGACY_DB_FILE, LEGACY_TABLE = "data.db", "ack_queue_default"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    topic: str
    key: bytes | None
    value: bytes


class SpoolBusyError(RuntimeError):
    """Another process has this spool open: two drainers would send the same messages and break the order."""


class SpoolError(RuntimeError):
    """The spool on disk cannot be read (a legacy file that is not what this project wrote)."""


class Spool:
    """FIFO of `SpooledMessage` in ``directory``; safe for the threads of one process, locked against others."""

    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self.directory = directory
        self._owner = os.fdopen(os.open(directory / "owner.lock", os.O_RDWR | os.O_CREAT, FILE_MODE), "a")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            raise SpoolBusyError(
                f"the spool {directory} is in use by another process; give this producer its own client_id"
            ) from None
        # SQLite gives its -wal and -shm files the mode of the database file: create that one 0600 first.
        os.close(os.open(directory / DB_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE))
        # auto_resume: messages taken but not acknowledged before a crash become ready again, in place.
        self._queue = SQLiteAckQueue(
            str(directory),
            auto_resume=True,
            multithreading=True,
            serializer=persistqueue.serializers.msgpack,
            db_file_name=DB_FILE,
        )
        private_files(directory)
        # One operation at a time: persist-queue keeps its size in an unguarded Python counter.
        self._lock = threading.Lock()
        try:
            self._adopt_legacy()
        except BaseException:
            self.close()
            raise

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

    def _adopt_legacy(self) -> None:
        """Move the messages of a pickle spool left by an older version into this one (in order), then delete it.

        Only while the new spool is empty, so the legacy messages keep their place at the front.
        """
        legacy = self.directory / LEGACY_DB_FILE
        if not legacy.exists():
            return
        if len(self):
            raise SpoolError(f"{legacy}: a legacy spool next to a non-empty {DB_FILE}; deliver or move one of them")
        os.chmod(legacy, FILE_MODE)
        conn = sqlite3.connect(legacy)
        try:
            # persist-queue's statuses: below 5 (acked) the message was never delivered.
            rows = conn.execute(f"SELECT data FROM {LEGACY_TABLE} WHERE status < 5 ORDER BY _id").fetchall()
        except sqlite3.DatabaseError as exc:
            raise SpoolError(f"{legacy}: not a spool this project wrote ({exc})") from None
        finally:
            conn.close()
        for (data,) in rows:
            self.put(SpooledMessage(*_legacy_message(legacy, data)))
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{legacy}{suffix}").unlink(missing_ok=True)
        log.warning("legacy pickle spool converted", spool=str(self.directory), messages=len(rows))


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: a legacy spool's tuples of str and bytes need no class, so none is loaded."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _legacy_message(legacy: Path, data: bytes) -> tuple[str, bytes | None, bytes]:
    try:
        topic, key, value = _NoGlobals(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
        raise SpoolError(f"{legacy}: a message that is not (topic, key, value) plain data: {exc}") from None
    if not (isinstance(topic, str) and isinstance(value, bytes) and (key is None or isinstance(key, bytes))):
        raise SpoolError(f"{legacy}: a message that is not (topic, key, value) of str and bytes")
    return topic, key, value
