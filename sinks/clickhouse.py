"""ClickHouse clients for the same code path in both modes: chDB in-process (``chdb:///dir``) or a server (``http://``).

chDB runs one engine per process and one process per directory: the sink owns the directory while it runs
and answers analysts through `sinks.query_server`; everyone else asks `engine_owner` first.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from shekara.files import emptied, private_dir
from shekara.logs import get_logger
from shekara.settings import Settings

log = get_logger(__name__)

# Error codes that say the data of a batch is wrong, so retrying the same rows cannot help: such rows are
# isolated and dead-lettered. Every other failure (server down, too many parts, memory, a table being
# migrated...) is retried with back-off, because giving up on it would lose rows.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        469,  # VIOLATED_CONSTRAINT
        1001,  # STD_EXCEPTION (e.g. a corrupt Avro block)
    }
)


# Error codes that mean "not now" whatever the data: staging (ClickHouse parsing the Avro) treats every other
# server error as a problem of the rows, since parsing into a temporary table touches nothing else.
TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE (connection cut)
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)


class WarehouseBusy(RuntimeError):
    """The chDB directory is owned by another process (normally a running `shekara sink`)."""


def is_embedded(settings: Settings) -> bool:
    return settings.clickhouse_dsn.startswith("chdb:")


def chdb_path(settings: Settings) -> Path:
    """The chDB data directory of an embedded DSN (``chdb:///abs/dir`` or ``chdb://relative/dir``)."""
    parsed = urlparse(settings.clickhouse_dsn)
    return Path(parsed.netloc + parsed.path).resolve()


def scratch_dir(settings: Settings) -> Path:
    """Where the chDB driver writes an insert's data for the engine to read (``INSERT ... FROM INFILE``).

    Those files hold clear source events (the sink's Avro containers) and the pseudonym pads: owner-only, next to
    the warehouse instead of in the shared temp directory, and emptied when the engine starts (`_use_scratch`).
    """
    path = chdb_path(settings)
    return path.with_name(path.name + ".scratch")


def query_endpoint_file(settings: Settings) -> Path:
    """Where the owner of a chDB directory writes the port of its read-only query endpoint."""
    path = chdb_path(settings)
    return path.with_name(path.name + ".query.json")


# Clients this process has open per chDB directory: a second client on the same directory shares the engine,
# so "owned by us" must not be mistaken for "owned by another process".
_open_here: dict[Path, int] = {}
_open_lock = threading.Lock()


@dataclass(frozen=True)
class EngineOwner:
    here: bool  # this process has the engine open
    other: bool  # another process holds the directory lock


def engine_owner(settings: Settings) -> EngineOwner:
    """Who holds the chDB directory now. ClickHouse flocks ``<dir>/status`` while it runs."""
    path = chdb_path(settings)
    with _open_lock:
        if _open_here.get(path):
            return EngineOwner(here=True, other=False)
    status = path / "status"
    if not status.exists():
        return EngineOwner(here=False, other=False)
    fd = os.open(status, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return EngineOwner(here=False, other=True)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return EngineOwner(here=False, other=False)
    finally:
        os.close(fd)


def connect(settings: Settings, *, readonly: bool = False) -> Client:
    """A clickhouse-connect client on the project database.

    Writers create the database if needed. Readonly clients are what analysts get: ``readonly=1`` on the
    session in embedded mode, the read-only analyst user (`settings.clickhouse_analyst_user`) in server mode.
    """
    database = settings.sink.database
    if is_embedded(settings):
        return _connect_chdb(settings, database, readonly)
    if readonly:
        client = clickhouse_connect.get_client(
            dsn=settings.clickhouse_dsn,
            username=settings.clickhouse_analyst_user,
            password=settings.sink.analyst_password.get_secret_value(),
            database=database,
        )
    else:
        # Not the DSN's database: it may not exist yet, and creating it is this client's first job.
        client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn, database="system")
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.database = database
    return client


def _connect_chdb(settings: Settings, database: str, readonly: bool) -> Client:
    path = chdb_path(settings)
    owner = engine_owner(settings)
    if owner.other:
        raise WarehouseBusy(
            f"the ClickHouse directory {path} is in use by another process (a running `shekara sink`?); "
            "analyst queries go through its query endpoint"
        )
    # Pseudonymised, but personal data still: no other local user reads the warehouse's files.
    private_dir(path)
    # Output settings and limits first: under readonly=1 a session can no longer change any setting.
    client_settings: dict[str, str | int] = {"output_format_json_quote_64bit_integers": 0}
    if readonly:
        client_settings |= analyst_limits(settings)
        client_settings["readonly"] = 1
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}", settings=client_settings)
    _track(path, +1)
    _untrack_on_close(client, path)
    if not owner.here:  # the engine just started in this process: nobody else can be using its scratch files
        _use_scratch(scratch_dir(settings))
    try:
        if not readonly:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        elif database not in client.query("SELECT name FROM system.databases").result_columns[0]:
            raise WarehouseMissing(f"no database {database!r} in {path}: run `shekara migrate` (or the sink) first")
        client.database = database
    except BaseException:
        client.close()
        raise
    return client


def analyst_limits(settings: Settings) -> dict[str, str | int]:
    """The settings of an analyst session: its limits, and no introspection (debug symbols of the server)."""
    sink = settings.sink
    return {
        "max_execution_time": sink.analyst_max_execution_time,
        "max_memory_usage": sink.analyst_max_memory_usage,
        "max_result_rows": sink.analyst_max_result_rows,
        "max_result_bytes": sink.analyst_max_result_bytes,
        "result_overflow_mode": "throw",
        "allow_introspection_functions": 0,
    }


class WarehouseMissing(RuntimeError):
    """The warehouse has not been created yet."""


def _use_scratch(directory: Path) -> None:
    """Empty `directory` (0700) of what a killed process left and send the chDB driver's temp files there.

    clickhouse-connect's chDB backend writes every insert to a ``tempfile.NamedTemporaryFile`` (0600) and deletes
    it once the engine has read it; a kill in between left it in the shared temp directory for good (a sink's
    staged batch: thousands of clear records). One engine per process, so one scratch directory per process.
    ClickHouse itself removes its own leftovers at start (``tmp_*`` parts, files in ``<dir>/tmp``).
    """
    private_dir(directory)
    left = emptied(directory)
    if left:
        log.warning("deleted temp files of a process that died", directory=str(directory), files=len(left))
    from clickhouse_connect.driver._backend import chdb_backend

    chdb_backend.tempfile = _ScratchTempfile(directory)  # type: ignore[assignment]


class _ScratchTempfile:
    """Stands in for the `tempfile` module inside the chDB backend: its temp files go to one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def NamedTemporaryFile(self, *args: Any, **kwargs: Any) -> Any:
        return tempfile.NamedTemporaryFile(*args, **{**kwargs, "dir": self.directory})

    def __getattr__(self, name: str) -> Any:
        return getattr(tempfile, name)


def _track(path: Path, delta: int) -> None:
    with _open_lock:
        _open_here[path] = _open_here.get(path, 0) + delta
        if _open_here[path] <= 0:
            del _open_here[path]


def _untrack_on_close(client: Client, path: Path) -> None:
    original = client.close
    closed = False

    def close() -> None:
        nonlocal closed
        try:
            original()
        finally:
            if not closed:
                closed = True
                _track(path, -1)

    client.close = close  # type: ignore[method-assign]


def error_code(exc: BaseException) -> int | None:
    return getattr(exc, "code", None)


def is_transient(exc: BaseException) -> bool:
    """True for failures that say nothing about the rows: connection problems and `TRANSIENT_CODES`."""
    if not isinstance(exc, DatabaseError) or isinstance(exc, OperationalError):
        return True
    code = error_code(exc)
    return code is None or code in TRANSIENT_CODES


def is_data_error(exc: BaseException) -> bool:
    """True when retrying the same rows cannot succeed (see `DATA_ERROR_CODES`)."""
    if isinstance(exc, OperationalError):
        return False
    return isinstance(exc, DatabaseError) and error_code(exc) in DATA_ERROR_CODES


__all__ = [
    "DATA_ERROR_CODES",
    "ClickHouseError",
    "EngineOwner",
    "WarehouseBusy",
    "WarehouseMissing",
    "analyst_limits",
    "chdb_path",
    "connect",
    "engine_owner",
    "error_code",
    "is_data_error",
    "is_embedded",
    "is_transient",
    "query_endpoint_file",
]
