"""The analysts' query guard: what a read-only query may touch, decided on ClickHouse's own syntax tree.

``readonly=1`` alone is not read-only: it lets ``INTO OUTFILE`` write files, ``KILL QUERY`` stop the sink's
inserts, and ``system.processes`` show other sessions' queries (with their parameters). So every analyst query
is first parsed by ClickHouse, without running it:

1. ``formatQuerySingleLine`` on the text, passed as a string parameter: it fails unless the text is exactly
   one statement (chDB runs every statement of a multi-statement string, so this gate comes first);
2. ``EXPLAIN AST`` on the same text with the same parameters: the tree ClickHouse would execute;
3. `verdict` on that tree: allow, or one line saying why not.

`verdict` allows SELECT (WITH, UNION, INTERSECT, subqueries), DESCRIBE, SHOW TABLES / DATABASES, SHOW CREATE
of the project database and EXISTS; it refuses any INTO OUTFILE, SETTINGS clause, table outside the project
database but for a few catalogue tables BI tools read, table functions but for pure generators (and the
project's parameterized views), and scalar functions that read files, reach the network or show the server's
internals. `GuardedSession` runs the three steps and then the query, on one client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

# The system tables BI tools read to list databases, tables and columns: catalogue only, no sessions or config.
SYSTEM_TABLES = frozenset({"one", "numbers", "zeros", "databases", "tables", "columns", "data_type_families"})
# information_schema views over those same catalogue tables (SQL-standard clients read them).
INFORMATION_SCHEMA_TABLES = frozenset({"schemata", "tables", "columns", "views"})
# Table functions that generate rows from their arguments alone.
TABLE_FUNCTIONS = frozenset({"numbers", "zeros", "generate_series", "generateseries", "values", "null"})
# Scalar functions that read files, reach the network or another server, or show the server's internals
# (configuration, macros, debug symbols, other tables through dictionaries or joins). Compared lower-cased.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "logtrace",  # writes to the server log
        "getmacro",
        "getserversetting",
        "getmergetreesetting",
        "getsetting",
        "getsettingordefault",
        "getclienthttpheader",
        "getoskernelversion",
        "getserverport",
        "tcpport",
        "hostname",
        "fqdn",
        "fullhostname",
        "serveruuid",
        "showcertificate",
        "hasthreadfuzzer",
        "zookeepersessionuptime",
        "hascolumnintable",  # can connect to another server
        "joinget",
        "joingetornull",
        "dicthas",
        "dictisin",
        "sleep",
        "sleepeachrow",
    }
)
DENIED_FUNCTION_PREFIXES = ("dictget", "filesystem", "addressto", "ai")  # "ai…": LLM calls over the network
# `x IN db.table` names a table as a bare identifier argument of these.
IN_FUNCTIONS = frozenset(
    name.lower() + suffix
    for name in ("in", "notIn", "nullIn", "notNullIn", "globalIn", "globalNotIn", "globalNullIn", "globalNotNullIn")
    for suffix in ("", "ignoreset")
)
SELECT_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})
SHOW_CREATE_ROOTS = frozenset({"ShowCreateTableQuery", "ShowCreateViewQuery"})
EXISTS_ROOTS = frozenset({"ExistsTableQuery", "ExistsViewQuery", "ExistsDatabaseQuery"})
# ShowTables is the tree of SHOW TABLES, DATABASES, SETTINGS, CLUSTERS, DICTIONARIES...: the text tells which.
SHOW_ALLOWED = re.compile(r"^SHOW\s+(?:FULL\s+)?(?:TEMPORARY\s+)?(?:TABLES|DATABASES)\b", re.IGNORECASE)
# The guard explains every query with this output format; the tree shows it as the root's last child.
EXPLAIN_FORMAT = "TabSeparatedRaw"
_FORMAT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHILDREN = re.compile(r" \(children (\d+)\)$")
_ALIAS = re.compile(r" \(alias .*\)$")
_READONLY_HINT = "the analyst path is readonly"
_MULTI_STATEMENT = "one statement at a time (chDB would run every statement of a multi-statement query)"
# A syntax error found by the one-statement check names the check's own query: the analyst did not write it.
_IN_SCOPE = re.compile(r":? In scope SELECT formatQuerySingleLine\(.*\)\.")
_ALLOWED_TABLE_FUNCTIONS = ", ".join(sorted(TABLE_FUNCTIONS - {"generateseries"}))
_ALLOWED_SYSTEM_TABLES = ", ".join(f"system.{t}" for t in sorted(SYSTEM_TABLES))
# Whole queries BI clients send on their own, allowed as written (compared after formatQuerySingleLine) though
# they read system tables that are refused otherwise: clickhouse-connect reads the session's settings when it
# connects (driver/_backend/orchestration.py, init_sequence) and Grafana's ClickHouse datasource reads the
# function list for its SQL editor (src/data/CHDatasource.ts, fetchSqlFunctions). Neither shows other
# sessions, configuration files or data.
BI_CLIENT_QUERIES = (
    "SELECT name, value, readonly FROM system.settings LIMIT 10000",
    "SELECT name, is_aggregate, case_insensitive, alias_to, origin, description, syntax, arguments, returned_value, "
    "examples, categories FROM system.functions LIMIT 10000",
)


class QueryError(RuntimeError):
    """ClickHouse or the guard refused the query (syntax, unknown table, not read-only...): the message says why."""


class QueryRefused(QueryError):
    """The guard refused the query before it ran."""


@dataclass
class Node:
    kind: str
    header: str  # the rest of the line: names, alias; without "(children N)"
    children: list[Node] = field(default_factory=list)

    def walk(self, parent: Node | None = None) -> Iterator[tuple[Node, Node | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)

    @property
    def name(self) -> str:
        """The node's name without its alias (a table, function or identifier)."""
        return _ALIAS.sub("", self.header)


def parse_ast(text: str) -> Node:
    """The tree `EXPLAIN AST` prints, one node a line, indented one space per level. ValueError if malformed.

    Names are printed as written, so an identifier holding a line break adds lines of its own making. Every
    node's line states how many children it has ("(children N)", none when absent) and the tree must agree:
    an added line always makes some real node's count wrong, or starts a second root.
    """
    lines = text.split("\n")
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0].startswith(" "):
        raise ValueError("empty or unindented tree")
    stack: list[Node] = []
    declared: list[tuple[Node, int]] = []
    root: Node | None = None
    for line in lines:
        body = line.lstrip(" ")
        depth = len(line) - len(body)
        stated = _CHILDREN.search(body)
        kind, _, header = body[: stated.start() if stated else len(body)].partition(" ")
        node = Node(kind, header)
        declared.append((node, int(stated.group(1)) if stated else 0))
        if depth == 0:
            if root is not None:
                raise ValueError("more than one statement")
            root = node
        elif depth > len(stack):
            raise ValueError(f"unexpected indentation at {body!r}")
        else:
            stack[depth - 1].children.append(node)
        del stack[depth:]
        stack.append(node)
    for node, count in declared:
        if len(node.children) != count:
            raise ValueError(f"{node.kind} {node.header!r} states {count} children and has {len(node.children)}")
    assert root is not None
    return root


def verdict(ast: str, canonical: str, database: str, views: frozenset[str] = frozenset()) -> str | None:
    """None if the query may run on the analyst path, else one line saying why not.

    `ast` is ``EXPLAIN AST`` of the query (explained with ``FORMAT TabSeparatedRaw``), `canonical` its text as
    ``formatQuerySingleLine`` prints it, `views` the project's views (parameterized ones appear as functions).
    """
    try:
        root = parse_ast(ast)
    except ValueError as exc:
        return f"cannot read the query's syntax tree ({exc})"
    children = list(root.children)
    if children and children[-1].kind == "Identifier" and children[-1].header == EXPLAIN_FORMAT:
        children.pop()
    reason = _root_reason(root, children, canonical, database)
    if reason:
        return reason
    if any(child.kind == "Literal" for child in children):  # INTO OUTFILE's path (and compression) literals
        return "INTO OUTFILE is not allowed: results come back to you, never into a file"
    for node, parent in root.walk():
        reason = _node_reason(node, parent, database, views)
        if reason:
            return reason
    return None


def _root_reason(root: Node, children: list[Node], canonical: str, database: str) -> str | None:
    kind = root.kind
    if kind in SELECT_ROOTS or kind == "DescribeQuery" or kind in EXISTS_ROOTS:
        return None
    if kind == "ShowTables":
        if not SHOW_ALLOWED.match(canonical.strip()):
            return f"{_first_words(canonical)} is not allowed: {_READONLY_HINT} (SHOW TABLES and SHOW DATABASES are)"
        named = [c.header for c in children if c.kind == "Identifier"]
        if any(name != database for name in named):
            return f"SHOW TABLES is allowed for the {database} database only"
        return None
    if kind in SHOW_CREATE_ROOTS:
        db = root.header.split(" ", 1)[0] if root.header and not root.header.startswith(" ") else ""
        if db and db != database:
            return f"SHOW CREATE is allowed for tables of the {database} database only"
        return None
    what = {
        "KillQueryQuery": "KILL",
        "ShowProcesslistQuery": "SHOW PROCESSLIST",
        "Explain": "EXPLAIN",
        "Set": "SET",
        "UseQuery": "USE",
        "InsertQuery": "INSERT",
    }.get(kind, kind)
    return (
        f"{what} is not allowed: {_READONLY_HINT} "
        "(SELECT, DESCRIBE, SHOW TABLES, SHOW DATABASES, SHOW CREATE TABLE and EXISTS are)"
    )


def _node_reason(node: Node, parent: Node | None, database: str, views: frozenset[str]) -> str | None:
    if node.kind == "Set":
        return "a SETTINGS clause is not allowed: the analyst path's settings and limits are fixed"
    if node.kind == "TableIdentifier":
        return _table_reason(node.name, database)
    if node.kind == "Identifier" and "." in node.name:
        db = node.name.split(".", 1)[0].lower()
        if db in ("system", "information_schema"):
            return _table_reason(node.name, database)
    if node.kind != "Function":
        return None
    name = node.name
    if parent is not None and parent.kind == "TableExpression":
        if name.lower() in TABLE_FUNCTIONS or name in views or name.removeprefix(f"{database}.") in views:
            return None
        return f"table function {name}() is not allowed (allowed: {_ALLOWED_TABLE_FUNCTIONS})"
    lowered = name.lower()
    if lowered in DENIED_FUNCTIONS or lowered.startswith(DENIED_FUNCTION_PREFIXES):
        return f"function {name}() is not allowed on the analyst path (files, network or server internals)"
    if lowered in IN_FUNCTIONS:
        for args in node.children[:1]:
            for arg in args.children:
                if arg.kind == "Identifier":
                    reason = _table_reason(arg.name, database)
                    if reason:
                        return reason
    return None


def _table_reason(name: str, database: str) -> str | None:
    db, dot, table = name.partition(".")
    if not dot or db == database:
        return None
    if db.lower() == "system" and table in SYSTEM_TABLES:
        return None
    if db.lower() == "information_schema" and table.lower() in INFORMATION_SCHEMA_TABLES:
        return None
    if db.lower() == "system":
        return f"system.{table} is not readable on the analyst path (allowed: {_ALLOWED_SYSTEM_TABLES})"
    return f"{name} is not readable on the analyst path: only the {database} database is"


def _first_words(sql: str) -> str:
    return " ".join(sql.split()[:2]).upper()


def one_line(message: str) -> str:
    """ClickHouse's message on one line, without the stack trace some builds append."""
    first = message.strip().split("Stack trace", 1)[0]
    return " ".join(first.split())


class GuardedSession:
    """Analyst queries on one read-only client, each checked by the guard first. Not thread-safe: one at a time."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._views: frozenset[str] | None = None
        self._client_queries: frozenset[str] | None = None

    def raw(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        """ClickHouse's output of `sql` in `fmt`; QueryRefused if the guard says no, QueryError if ClickHouse does."""
        text, params = self._validated(sql, fmt, params)
        reason = self.check(text, params)
        if reason:
            raise QueryRefused(f"refused: {reason}")
        return self._run(text, fmt, params)

    def check(self, text: str, params: dict[str, Any] | None) -> str | None:
        """The guard's verdict on one query: None to allow, else why not."""
        try:
            canonical = self._run("SELECT formatQuerySingleLine({q:String})", EXPLAIN_FORMAT, {"q": text}).decode()
        except QueryError as exc:  # not one statement: nothing more may run, not even EXPLAIN
            if "Multi-statements are not allowed" in str(exc):
                raise QueryRefused(f"refused: {_MULTI_STATEMENT}") from exc
            raise QueryError(_IN_SCOPE.sub("", str(exc))) from exc
        if canonical in self.client_queries():
            return None
        ast = self._run(f"EXPLAIN AST {text}", EXPLAIN_FORMAT, params).decode()
        return verdict(ast, canonical, self.database, self.views())

    def client_queries(self) -> frozenset[str]:
        """`BI_CLIENT_QUERIES` as formatQuerySingleLine prints them, formatted once."""
        if self._client_queries is None:
            self._client_queries = frozenset(
                self._run("SELECT formatQuerySingleLine({q:String})", EXPLAIN_FORMAT, {"q": q}).decode()
                for q in BI_CLIENT_QUERIES
            )
        return self._client_queries

    def views(self) -> frozenset[str]:
        """The project's views, read once: a parameterized view is called like a table function."""
        if self._views is None:
            out = self._run(
                "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'View'",
                EXPLAIN_FORMAT,
                {"db": self.database},
            )
            self._views = frozenset(out.decode().split())
        return self._views

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        try:
            return bytes(self.client.raw_query(sql, parameters=params or None, fmt=fmt))
        except ClickHouseError as exc:
            raise QueryError(one_line(str(exc))) from exc

    @staticmethod
    def _validated(sql: str, fmt: str, params: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
        if not isinstance(sql, str):
            raise QueryRefused("bad request: the query must be a string")
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryRefused("bad request: empty query")
        _utf8("the query", text)
        if not isinstance(fmt, str) or not _FORMAT_NAME.fullmatch(fmt):
            raise QueryRefused(f"bad request: {fmt!r} is not a format name")
        if params is not None and not isinstance(params, dict):
            raise QueryRefused("bad request: params must be an object of name: value")
        for name, value in (params or {}).items():
            if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
                raise QueryRefused(f"bad request: {name!r} is not a parameter name")
            if not isinstance(value, str | int | float | bool):
                raise QueryRefused(f"bad request: parameter {name} must be a string or a number")
            if isinstance(value, str):
                _utf8(f"parameter {name}", value)
        return text, params or None


def _utf8(what: str, text: str) -> None:
    """QueryRefused unless `text` encodes as UTF-8: bytes that were not UTF-8 (a Latin-1 file, a shell argument)
    arrive as lone surrogates, which no encoder on the way to ClickHouse takes."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise QueryRefused(f"bad request: {what} is not valid UTF-8 text (at character {exc.start + 1})") from exc
