"""The producer's spool at rest: owner-only files, no pickle, messages back byte for byte, legacy spools adopted."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
from pathlib import Path

import pytest
from persistqueue import SQLiteAckQueue

from producers.spool import DB_FILE, LEGACY_DB_FILE, Spool, SpooledMessage, SpoolError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Every byte value, an empty value, a key-less message, and bytes that look like pickle and msgpack opcodes.
MESSAGES = [
    SpooledMessage("shekara.crossings", b"\x00key\xff", bytes(range(256))),
    SpooledMessage("shekara.registrations", None, b""),
    SpooledMessage("shekara.status-changes", b"", b"\x80\x04\x95cos\nsystem\n"),
    SpooledMessage("t\u00e9", b"k" * 70_000, b"\xc3\x01" + os.urandom(100_000)),
]


def test_messages_round_trip_byte_for_byte_across_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for m in MESSAGES:
        spool.put(m)
    spool.close()
    spool = Spool(tmp_path / "spool")
    try:
        taken = [m for _, m in spool.take(10)]
        assert taken == MESSAGES
        assert all(type(m.value) is bytes and (m.key is None or type(m.key) is bytes) for m in taken)
    finally:
        spool.close()


def test_stored_without_pickle(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(MESSAGES[0])
    spool.close()
    conn = sqlite3.connect(tmp_path / "spool" / DB_FILE)
    (blob,) = conn.execute("SELECT data FROM ack_queue_default").fetchone()
    conn.close()
    assert not blob.startswith(b"\x80")  # a pickle (protocol 2+) starts with PROTO 0x80
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(blob)


def test_directory_0700_and_files_0600_while_open(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "client"
    spool = Spool(directory)
    try:
        spool.put(MESSAGES[0])
        assert mode(directory) == 0o700
        files = sorted(p.name for p in directory.iterdir())
        assert DB_FILE in files and f"{DB_FILE}-wal" in files  # SQLite's WAL holds the message too
        assert {p.name: mode(p) for p in directory.iterdir()} == dict.fromkeys(files, 0o600)
    finally:
        spool.close()


def test_a_looser_spool_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    Spool(directory).close()
    os.chmod(directory, 0o755)
    for path in directory.iterdir():
        os.chmod(path, 0o644)
    Spool(directory).close()
    assert mode(directory) == 0o700
    assert {mode(p) for p in directory.iterdir()} == {0o600}


def test_a_legacy_pickle_spool_is_adopted_in_order_then_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    legacy = SQLiteAckQueue(str(directory), auto_resume=True, multithreading=True)  # the old defaults: pickle
    for m in MESSAGES:
        legacy.put((m.topic, m.key, m.value))
    delivered = legacy.get(block=False, raw=True)  # the first one was delivered before the upgrade
    legacy.ack(id=delivered["pqid"])
    legacy.close()
    spool = Spool(directory)
    try:
        assert [m for _, m in spool.take(10)] == MESSAGES[1:]
        assert not (directory / LEGACY_DB_FILE).exists()
    finally:
        spool.close()


def test_a_legacy_spool_with_code_in_it_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    directory = tmp_path / "spool"
    legacy = SQLiteAckQueue(str(directory))
    legacy.put(("shekara.crossings", None, Evil()))
    legacy.close()
    with pytest.raises(SpoolError, match=r"refusing to load builtins\.print"):
        Spool(directory)
