"""Analyst queries against the configured warehouse, read-only, whoever owns it right now.

Server mode: the read-only analyst user. Embedded mode: a ``readonly=1`` session on the chDB directory when
it is free or already open in this process, else the query endpoint of the process that owns it. Every query
passes the guard (`sinks.guard`) first: here on a direct session, in the owner on its endpoint; in server mode
the analyst user's profile and grants say the same again (defence in depth).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shekara.settings import Settings
from sinks.clickhouse import WarehouseBusy, connect, engine_owner, is_embedded
from sinks.guard import GuardedSession
from sinks.query_server import QueryError, ask

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
# Friendly names for --format; anything else is passed to ClickHouse as a format name.
FORMATS = {"pretty": "PrettyCompactMonoBlock", "csv": "CSVWithNames", "json": "JSON", "tsv": "TSVWithNames"}
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
ALMATY = ZoneInfo("Asia/Almaty")
_HEADER = re.compile(r"^--\s*(title|description|param|data|key):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+(?:\([^)]*\))?)\s*=\s*(.*)$")
_COLUMN = re.compile(r"^(\w+)\.(\w+)$")  # table.column
_KEY_LINE = re.compile(r"^(\w+)\s+(\w+\.\w+)$")  # param table.column
_HEX = re.compile(r"^[0-9a-f]+$")
LATEST = "latest"  # an as_of default: the last day with data in the query's facts
DEFAULT_DATA = "crossings.event_date"  # the facts whose range an ad-hoc query's empty result is told against
MIN_KEY_PREFIX = 12  # the console and the ops page show this much of a traveller key
# ClickHouse output formats that are bytes, not text: written as they come, never to a terminal.
BINARY_FORMATS = frozenset(
    f.lower()
    for f in (
        "Parquet", "Arrow", "ArrowStream", "Native", "RowBinary", "RowBinaryWithNames",
        "RowBinaryWithNamesAndTypes", "ORC", "Avro", "Protobuf", "ProtobufSingle", "MsgPack", "CapnProto",
        "BSONEachRow", "Npy",
    )
)  # fmt: skip


def split_format(sql: str, fmt: str) -> tuple[str, str]:
    """The query without a trailing FORMAT clause, and the ClickHouse format to ask for."""
    sql = sql.strip().rstrip(";").strip()
    m = _TRAILING_FORMAT.search(sql)
    if m:
        return sql[: m.start()], m.group(1)
    return sql, FORMATS.get(fmt.lower(), fmt)


@dataclass(frozen=True)
class Table:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Reader:
    """Read-only queries on the warehouse through one connection: direct, or via the owner's query endpoint.

    Use as a context manager; `run_query` and `query_table` open one for a single query.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: GuardedSession | None = None
        if not (is_embedded(settings) and engine_owner(settings).other):
            try:
                self._session = GuardedSession(connect(settings, readonly=True), settings.sink.database)
            except WarehouseBusy:  # the sink started in between: use its endpoint
                self._session = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.client.close()
            self._session = None

    def raw(self, sql: str, fmt: str = "pretty", params: dict[str, Any] | None = None) -> bytes:
        """ClickHouse's output of a read-only query, in `fmt` (see FORMATS). Raises QueryError if refused."""
        sql, ch_format = split_format(sql, fmt)
        if self._session is None:
            return ask(self.settings, sql, ch_format, params)
        return self._session.raw(sql, ch_format, params)

    def table(self, sql: str, params: dict[str, Any] | None = None) -> Table:
        """A query's result as typed Python values (numbers as int/float, the rest as ClickHouse prints them)."""
        doc = json.loads(self.raw(sql, "JSONCompact", params))
        columns = [m["name"] for m in doc["meta"]]
        types = [m["type"] for m in doc["meta"]]
        rows = [[_typed(v, t) for v, t in zip(row, types, strict=True)] for row in doc["data"]]
        return Table(columns, types, rows)

    def data_range(self, source: str = DEFAULT_DATA) -> DataRange:
        """First and last day with data in `source` (``table.column``, a Date): one cheap min/max query."""
        table, column = _split_column(source)
        t = self.table(f"SELECT count() AS n, min({column}) AS first, max({column}) AS last FROM {table}")
        n, first, last = t.rows[0]
        if not n:
            return DataRange(table, None, None)
        return DataRange(table, date.fromisoformat(str(first)[:10]), date.fromisoformat(str(last)[:10]))

    def key_matches(self, source: str, prefix: str) -> int:
        """How many distinct keys in `source` (``table.column``) start with `prefix`: 0, 1, or 2 for "several"."""
        table, column = _split_column(source)
        sql = f"SELECT DISTINCT {column} FROM {table} WHERE startsWith({column}, {{p:String}}) LIMIT 2"
        return len(self.table(sql, {"p": prefix}).rows)

    def prepare(self, query: SavedQuery, given: dict[str, str] | None = None) -> Prepared:
        """A saved query's arguments: key prefixes checked, `as_of` defaulted to the last day with data.

        Raises ValueError (one line) for an unknown parameter or a key prefix that is too short or ambiguous.
        """
        given = dict(given or {})
        data = self.data_range(query.data or DEFAULT_DATA)
        args = query.arguments(given, latest=data.last)
        for name, source in query.keys:
            args[name] = key_prefix(str(args[name]))
            if self.key_matches(source, args[name]) > 1:
                raise ValueError(f"{name} {args[name]} matches more than one traveller: give more of the key")
        defaulted = next(
            (data.last for p in query.params if p.name == "as_of" and p.default == LATEST and "as_of" not in given),
            None,
        )
        return Prepared(args, data, defaulted)


@dataclass(frozen=True)
class DataRange:
    """The days a facts table holds data for; first and last are None when it holds none."""

    table: str
    first: date | None
    last: date | None

    def describe(self) -> str:
        if self.last is None:
            return f"{self.table} holds no data yet"
        return f"data in {self.table}: {self.first}..{self.last}"


@dataclass(frozen=True)
class Prepared:
    args: dict[str, Any]
    data: DataRange
    as_of_from_data: date | None  # set when as_of was not given and became the data's last day


def as_of_hint(day: date, option: str = "-p as_of=YYYY-MM-DD") -> str:
    """The one line that says a default as_of came from the data."""
    return f"as_of {day}: the last day with data; pass {option} to change"


def key_prefix(value: str) -> str:
    """A traveller key or its displayed prefix, lower-case; ValueError unless it is >= 12 hex characters."""
    key = value.strip().lower()
    if len(key) < MIN_KEY_PREFIX or not _HEX.match(key):
        raise ValueError(
            f"traveller_key {value!r}: give at least {MIN_KEY_PREFIX} hex characters of the key (as shown in alerts)"
        )
    return key


def is_binary(ch_format: str) -> bool:
    return ch_format.lower() in BINARY_FORMATS


def is_empty(out: bytes, ch_format: str) -> bool | None:
    """Whether an output holds no rows: True, False, or None when its format cannot say."""
    fmt = ch_format.lower()
    if fmt in {"parquet", "arrow", "arrowstream"}:
        return _arrow_rows(out, fmt) == 0
    if is_binary(ch_format):
        return True if not out else None  # row formats write nothing for no rows; others keep their header
    if fmt in {"json", "jsoncompact", "jsonstrings", "jsoncompactstrings"}:
        try:
            return int(json.loads(out).get("rows", 1)) == 0
        except (ValueError, AttributeError):
            return None
    lines = len(out.strip().splitlines())
    header = 2 if fmt.endswith("withnamesandtypes") else 1 if fmt.endswith("withnames") else 0
    return lines <= header


def _arrow_rows(out: bytes, fmt: str) -> int | None:
    # pyarrow comes with chDB. Parquet's row count is in its footer; Arrow's batches are read zero-copy.
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        if fmt == "parquet":
            return int(pq.read_metadata(pa.BufferReader(out)).num_rows)
        reader = pa.ipc.open_file(out) if fmt == "arrow" else pa.ipc.open_stream(out)
        return int(reader.read_all().num_rows)
    except (pa.ArrowException, ValueError, OSError):
        return None


def _split_column(source: str) -> tuple[str, str]:
    m = _COLUMN.match(source)
    if not m:
        raise ValueError(f"bad data source {source!r} (want table.column)")
    return m.group(1), m.group(2)


def run_query(settings: Settings, sql: str, fmt: str = "pretty", params: dict[str, Any] | None = None) -> bytes:
    """ClickHouse's output of one read-only query, in `fmt` (see FORMATS). Raises QueryError if it is refused."""
    with Reader(settings) as reader:
        return reader.raw(sql, fmt, params)


def query_table(settings: Settings, sql: str, params: dict[str, Any] | None = None) -> Table:
    """One query's result as typed Python values."""
    with Reader(settings) as reader:
        return reader.table(sql, params)


def _typed(value: Any, ch_type: str) -> Any:
    """JSON values back to Python by column type: 64-bit ints may come quoted, whole floats come as ints."""
    if value is None:
        return None
    base = ch_type.removeprefix("Nullable(").removeprefix("LowCardinality(")
    if base.startswith(("Int", "UInt")) and isinstance(value, str | int):
        return int(value)
    if base.startswith(("Float", "Decimal")) and isinstance(value, str | int | float):
        return float(Decimal(str(value)))
    return value


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str


@dataclass(frozen=True)
class SavedQuery:
    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    sql: str
    data: str | None = None  # table.column (a Date) whose last day a `latest` as_of defaults to
    keys: tuple[tuple[str, str], ...] = ()  # (param, table.column): a key given by a prefix of >= 12 characters

    def arguments(self, given: dict[str, str] | None = None, latest: date | None = None) -> dict[str, Any]:
        """Values for the query's parameters: the given ones, defaults for the rest (`latest`: last day with data)."""
        given = dict(given or {})
        unknown = set(given) - {p.name for p in self.params}
        if unknown:
            raise ValueError(f"query {self.name} has no parameter {', '.join(sorted(unknown))}")
        return {p.name: given.get(p.name, _default(p, latest)) for p in self.params}


def _default(param: Param, latest: date | None = None) -> str:
    # "today" is the analysts' calendar day (Asia/Almaty); "latest" the last day with data, else today.
    if param.type == "Date" and param.default in ("today", LATEST):
        if param.default == LATEST and latest is not None:
            return latest.isoformat()
        return datetime.now(ALMATY).date().isoformat()
    return param.default


def parse_saved_query(name: str, text: str) -> SavedQuery:
    """A saved query file: ``-- title:``, ``-- description:`` and ``-- param: name Type = default`` lines, then SQL."""
    title, description, params = name, [], []
    data: str | None = None
    keys: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            continue
        key, value = m.groups()
        if key == "title":
            title = value.strip()
        elif key == "description":
            description.append(value.strip())
        elif key == "data":
            if not _COLUMN.match(value.strip()):
                raise ValueError(f"query {name}: bad data line {line!r} (want: table.column)")
            data = value.strip()
        elif key == "key":
            km = _KEY_LINE.match(value.strip())
            if not km:
                raise ValueError(f"query {name}: bad key line {line!r} (want: param table.column)")
            keys.append((km.group(1), km.group(2)))
        else:
            pm = _PARAM.match(value.strip())
            if not pm:
                raise ValueError(f"query {name}: bad param line {line!r} (want: name Type = default)")
            params.append(Param(*pm.groups()))
    return SavedQuery(name, title, " ".join(description), tuple(params), text, data, tuple(keys))


def saved_queries(directory: Path = QUERIES_DIR) -> dict[str, SavedQuery]:
    """The catalogue of saved queries (``sinks/queries/*.sql``), by name."""
    return {p.stem: parse_saved_query(p.stem, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.sql"))}


__all__ = [
    "FORMATS",
    "DataRange",
    "Prepared",
    "QueryError",
    "Reader",
    "SavedQuery",
    "Table",
    "WarehouseBusy",
    "query_table",
    "run_query",
    "saved_queries",
]
