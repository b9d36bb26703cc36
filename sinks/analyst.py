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
from datetime import datetime
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
_HEADER = re.compile(r"^--\s*(title|description|param):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+(?:\([^)]*\))?)\s*=\s*(.*)$")


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

    def arguments(self, given: dict[str, str] | None = None) -> dict[str, Any]:
        """Values for the query's parameters: the given ones, defaults for the rest."""
        given = dict(given or {})
        unknown = set(given) - {p.name for p in self.params}
        if unknown:
            raise ValueError(f"query {self.name} has no parameter {', '.join(sorted(unknown))}")
        return {p.name: given.get(p.name, _default(p)) for p in self.params}


def _default(param: Param) -> str:
    # "today" is the analysts' calendar day (Asia/Almaty), the day reports are judged at unless `as_of` is given.
    if param.type == "Date" and param.default == "today":
        return datetime.now(ALMATY).date().isoformat()
    return param.default


def parse_saved_query(name: str, text: str) -> SavedQuery:
    """A saved query file: ``-- title:``, ``-- description:`` and ``-- param: name Type = default`` lines, then SQL."""
    title, description, params = name, [], []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            continue
        key, value = m.groups()
        if key == "title":
            title = value.strip()
        elif key == "description":
            description.append(value.strip())
        else:
            pm = _PARAM.match(value.strip())
            if not pm:
                raise ValueError(f"query {name}: bad param line {line!r} (want: name Type = default)")
            params.append(Param(*pm.groups()))
    return SavedQuery(name, title, " ".join(description), tuple(params), text)


def saved_queries(directory: Path = QUERIES_DIR) -> dict[str, SavedQuery]:
    """The catalogue of saved queries (``sinks/queries/*.sql``), by name."""
    return {p.stem: parse_saved_query(p.stem, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.sql"))}


__all__ = [
    "FORMATS",
    "QueryError",
    "Reader",
    "SavedQuery",
    "Table",
    "WarehouseBusy",
    "query_table",
    "run_query",
    "saved_queries",
]
