"""The analysts' query guard (sinks.guard): its verdict on ClickHouse's syntax trees, then on the real parser.

The trees in `TREES` are `EXPLAIN AST … FORMAT TabSeparatedRaw` as chDB 26.9 prints them for the query in
`QUERIES`; the integration tests at the end run the same checks through a real chDB session.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import ClickHouseError

from shekara.settings import Settings
from sinks.clickhouse import analyst_limits, connect
from sinks.guard import (
    DENIED_FUNCTIONS,
    SYSTEM_TABLES,
    TABLE_FUNCTIONS,
    GuardedSession,
    QueryError,
    QueryRefused,
    parse_ast,
    verdict,
)
from sinks.query_server import write_private

DB = "shekara"
VIEWS = frozenset({"overstay_rates_at", "daily_flows"})

QUERIES = {
    "select_cte_union": "WITH a AS (SELECT * FROM crossings) SELECT count() FROM a UNION ALL SELECT 1 FROM shekara.x",
    "outfile": "SELECT 1 INTO OUTFILE '/tmp/x' APPEND COMPRESSION 'gz'",
    "kill": "KILL QUERY WHERE 1",
    "processlist": "SHOW PROCESSLIST",
    "system_processes": "SELECT query FROM system.processes",
    "system_one": "SELECT * FROM system.one",
    "in_system": "SELECT 1 FROM crossings WHERE event_id GLOBAL IN system.query_log",
    "file_fn": "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "merge_fn": "SELECT * FROM merge(system, '^proc')",
    "numbers_fn": "SELECT number FROM numbers(10) AS n",
    "param_view": "SELECT * FROM overstay_rates_at(as_of = today())",
    "scalar_file": "SELECT FILE('x')",
    "introspect": "SELECT demangle(addressToSymbol(1))",
    "settings_sub": "SELECT * FROM (SELECT 1 SETTINGS max_threads=1)",
    "describe_system": "DESCRIBE TABLE system.settings",
    "describe": "DESCRIBE TABLE crossings",
    "show_tables": "SHOW TABLES",
    "show_tables_from_system": "SHOW TABLES FROM system",
    "show_create": "SHOW CREATE TABLE shekara.crossings",
    "show_create_system": "SHOW CREATE TABLE system.processes",
    "exists_outfile": "EXISTS crossings INTO OUTFILE 'x'",
    "insert": "INSERT INTO crossings (event_id) VALUES ('x')",
    "info_schema": "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "other_db": "SELECT * FROM default.t",
    "explain": "EXPLAIN SELECT 1",
    "dict": "SELECT dictGet('system.x', 'y', 1)",
}

TREES = {
    "select_cte_union": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 2)
  SelectQuery (children 3)
   ExpressionList (children 1)
    WithElement (children 1)
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
       ExpressionList (children 1)
        SelectQuery (children 2)
         ExpressionList (children 1)
          Asterisk
         TablesInSelectQuery (children 1)
          TablesInSelectQueryElement (children 1)
           TableExpression (children 1)
            TableIdentifier crossings
   ExpressionList (children 1)
    Function count (children 1)
     ExpressionList
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier a
  SelectQuery (children 3)
   ExpressionList (children 1)
    Literal UInt64_1
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier shekara.x
   ExpressionList (children 1)
    WithElement (children 1)
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
       ExpressionList (children 1)
        SelectQuery (children 2)
         ExpressionList (children 1)
          Asterisk
         TablesInSelectQuery (children 1)
          TablesInSelectQueryElement (children 1)
           TableExpression (children 1)
            TableIdentifier crossings
 Identifier TabSeparatedRaw
""",
    "outfile": r"""
SelectWithUnionQuery (children 4)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal \'/tmp/x\'
 Literal \'gz\'
 Identifier TabSeparatedRaw
""",
    "kill": r"""
KillQueryQuery Literal_UInt64_1 ASYNC (children 2)
 Literal UInt64_1
 Identifier TabSeparatedRaw
""",
    "processlist": r"""
ShowProcesslistQuery (children 1)
 Identifier TabSeparatedRaw
""",
    "system_processes": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier query
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier system.processes
 Identifier TabSeparatedRaw
""",
    "system_one": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier system.one
 Identifier TabSeparatedRaw
""",
    "in_system": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 3)
   ExpressionList (children 1)
    Literal UInt64_1
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier crossings
   Function globalIn (children 1)
    ExpressionList (children 2)
     Identifier event_id
     Identifier system.query_log
 Identifier TabSeparatedRaw
""",
    "file_fn": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function file (children 1)
       ExpressionList (children 2)
        Literal \'/etc/passwd\'
        Literal \'LineAsString\'
 Identifier TabSeparatedRaw
""",
    "merge_fn": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function merge (children 1)
       ExpressionList (children 2)
        Identifier system
        Literal \'^proc\'
 Identifier TabSeparatedRaw
""",
    "numbers_fn": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier number
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function numbers (alias n) (children 1)
       ExpressionList (children 1)
        Literal UInt64_10
 Identifier TabSeparatedRaw
""",
    "param_view": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function overstay_rates_at (children 1)
       ExpressionList (children 1)
        Function equals (children 1)
         ExpressionList (children 2)
          Identifier as_of
          Function today (children 1)
           ExpressionList
 Identifier TabSeparatedRaw
""",
    "scalar_file": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function FILE (children 1)
     ExpressionList (children 1)
      Literal \'x\'
 Identifier TabSeparatedRaw
""",
    "introspect": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function demangle (children 1)
     ExpressionList (children 1)
      Function addressToSymbol (children 1)
       ExpressionList (children 1)
        Literal UInt64_1
 Identifier TabSeparatedRaw
""",
    "settings_sub": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Subquery (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          ExpressionList (children 1)
           Literal UInt64_1
          Set
 Identifier TabSeparatedRaw
""",
    "describe_system": r"""
DescribeQuery (children 2)
 TableExpression (children 1)
  TableIdentifier system.settings
 Identifier TabSeparatedRaw
""",
    "describe": r"""
DescribeQuery (children 2)
 TableExpression (children 1)
  TableIdentifier crossings
 Identifier TabSeparatedRaw
""",
    "show_tables": r"""
ShowTables (children 1)
 Identifier TabSeparatedRaw
""",
    "show_tables_from_system": r"""
ShowTables (children 2)
 Identifier system
 Identifier TabSeparatedRaw
""",
    "show_create": r"""
ShowCreateTableQuery shekara crossings (children 3)
 Identifier shekara
 Identifier crossings
 Identifier TabSeparatedRaw
""",
    "show_create_system": r"""
ShowCreateTableQuery system processes (children 3)
 Identifier system
 Identifier processes
 Identifier TabSeparatedRaw
""",
    "exists_outfile": r"""
ExistsTableQuery  crossings (children 3)
 Identifier crossings
 Literal \'x\'
 Identifier TabSeparatedRaw
""",
    "insert": r"""
InsertQuery   (children 2)
 Identifier crossings
 ExpressionList (children 1)
  Identifier event_id
""",
    "info_schema": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier INFORMATION_SCHEMA.TABLES
 Identifier TabSeparatedRaw
""",
    "other_db": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier default.t
 Identifier TabSeparatedRaw
""",
    "explain": r"""
Explain EXPLAIN (children 2)
 SelectWithUnionQuery (children 1)
  ExpressionList (children 1)
   SelectQuery (children 1)
    ExpressionList (children 1)
     Literal UInt64_1
 Identifier TabSeparatedRaw
""",
    "dict": r"""
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function dictGet (children 1)
     ExpressionList (children 3)
      Literal \'system.x\'
      Literal \'y\'
      Literal UInt64_1
 Identifier TabSeparatedRaw
""",
}

# None: allowed; otherwise a piece of the one-line reason.
EXPECTED = {
    "select_cte_union": None,
    "outfile": "INTO OUTFILE is not allowed",
    "kill": "KILL is not allowed",
    "processlist": "SHOW PROCESSLIST is not allowed",
    "system_processes": "system.processes is not readable",
    "system_one": None,
    "in_system": "system.query_log is not readable",
    "file_fn": "table function file() is not allowed",
    "merge_fn": "table function merge() is not allowed",
    "numbers_fn": None,
    "param_view": None,
    "scalar_file": "function FILE() is not allowed",
    "introspect": "function demangle() is not allowed",
    "settings_sub": "SETTINGS clause is not allowed",
    "describe_system": "system.settings is not readable",
    "describe": None,
    "show_tables": None,
    "show_tables_from_system": "SHOW TABLES is allowed for the shekara database only",
    "show_create": None,
    "show_create_system": "SHOW CREATE is allowed for tables of the shekara database only",
    "exists_outfile": "INTO OUTFILE is not allowed",
    "insert": "INSERT is not allowed: the analyst path is readonly",
    "info_schema": None,
    "other_db": "default.t is not readable on the analyst path: only the shekara database is",
    "explain": "EXPLAIN is not allowed",
    "dict": "function dictGet() is not allowed",
}


def test_every_tree_has_its_query_and_expectation() -> None:
    assert set(TREES) == set(QUERIES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_on_real_trees(name: str) -> None:
    reason, expected = verdict(TREES[name].lstrip("\n"), QUERIES[name], DB, VIEWS), EXPECTED[name]
    if expected is None:
        assert reason is None, reason
    else:
        assert reason is not None and expected in reason, reason
        assert "\n" not in reason


def select_calling(function: str, in_from: bool = False) -> str:
    """The tree of ``SELECT f(1)``, or of ``SELECT * FROM f(1)``."""
    call = "Function {f} (children 1)\n{i} ExpressionList (children 1)\n{i}  Literal UInt64_1"
    if in_from:
        body = (
            "   ExpressionList (children 1)\n    Asterisk\n   TablesInSelectQuery (children 1)\n"
            "    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n      "
            + call.format(f=function, i="      ")
        )
    else:
        body = "   ExpressionList (children 1)\n    " + call.format(f=function, i="    ")
    parts = 2 if in_from else 1
    return (
        f"SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children {parts})\n{body}\n"
    )


def select_from(table: str) -> str:
    return (
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
        "   ExpressionList (children 1)\n    Asterisk\n   TablesInSelectQuery (children 1)\n"
        "    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n"
        f"      TableIdentifier {table} (alias t)\n"
    )


def test_the_synthetic_trees_parse_like_real_ones() -> None:
    tree = parse_ast(select_calling("numbers", in_from=True))
    expr = tree.children[0].children[0].children[1].children[0].children[0].children[0]
    assert (expr.kind, expr.name) == ("Function", "numbers")
    assert (
        parse_ast(select_from("system.one"))
        .children[0]
        .children[0]
        .children[1]
        .children[0]
        .children[0]
        .children[0]
        .name
        == "system.one"
    )


@pytest.mark.parametrize("name", [*sorted(DENIED_FUNCTIONS), "dictGetString", "filesystemAvailable", "aiGenerate"])
def test_denied_scalar_functions(name: str) -> None:
    reason = verdict(select_calling(name), "SELECT", DB)
    assert reason is not None and f"function {name}() is not allowed" in reason


@pytest.mark.parametrize("name", ["count", "toDate", "version", "currentDatabase", "formatQuery", "sipHash64"])
def test_ordinary_scalar_functions_are_allowed(name: str) -> None:
    assert verdict(select_calling(name), "SELECT", DB) is None


@pytest.mark.parametrize(
    "name", [*sorted(TABLE_FUNCTIONS), "Numbers", "overstay_rates_at", "shekara.overstay_rates_at"]
)
def test_allowed_table_functions_and_parameterized_views(name: str) -> None:
    assert verdict(select_calling(name, in_from=True), "SELECT", DB, VIEWS) is None


@pytest.mark.parametrize(
    "name",
    [
        "file",
        "url",
        "remote",
        "remoteSecure",
        "cluster",
        "s3",
        "view",
        "viewIfPermitted",
        "merge",
        "loop",
        "executable",
        "input",
        "dictionary",
        "mysql",
        "postgresql",
        "python",
        "fileCluster",
        "hdfs",
        "sqlite",
        "format",
        "generateRandom",
        "mergeTreeIndex",
        "fuzzQuery",
        "icebergLocal",
        "system.overstay_rates_at",
        "other.overstay_rates_at",
        "filesystem",
    ],
)
def test_other_table_functions_are_refused(name: str) -> None:
    reason = verdict(select_calling(name, in_from=True), "SELECT", DB, VIEWS)
    assert reason is not None and f"table function {name}() is not allowed" in reason


@pytest.mark.parametrize("table", sorted(SYSTEM_TABLES))
def test_catalogue_system_tables_are_readable(table: str) -> None:
    assert verdict(select_from(f"system.{table}"), "SELECT", DB) is None


@pytest.mark.parametrize(
    "table",
    [
        "processes",
        "query_log",
        "settings",
        "functions",
        "named_collections",
        "macros",
        "users",
        "grants",
        "trace_log",
        "text_log",
        "asynchronous_metrics",
        "server_settings",
        "clusters",
        "dictionaries",
        "parts",
        "mutations",
        "merges",
        "zookeeper",
        "stack_trace",
        "errors",
        "user_directories",
        "query_views_log",
    ],
)
def test_other_system_tables_are_refused(table: str) -> None:
    for name in (f"system.{table}", f"SYSTEM.{table}"):
        reason = verdict(select_from(name), "SELECT", DB)
        assert reason is not None and "is not readable on the analyst path" in reason


def test_tables_of_the_project_database_and_unqualified_names_are_readable() -> None:
    assert verdict(select_from("crossings"), "SELECT", DB) is None
    assert verdict(select_from("shekara.crossings"), "SELECT", DB) is None
    assert verdict(select_from("other.crossings"), "SELECT", DB) is not None


@pytest.mark.parametrize(
    ("canonical", "allowed"),
    [
        ("SHOW TABLES", True),
        ("SHOW DATABASES", True),
        ("show full tables like 'x%'", True),
        ("SHOW SETTINGS LIKE 'max%'", False),
        ("SHOW CLUSTERS", False),
        ("SHOW DICTIONARIES", False),
        ("SHOW CHANGED SETTINGS", False),
    ],
)
def test_show_is_told_apart_by_its_text(canonical: str, allowed: bool) -> None:
    tree = "ShowTables (children 1)\n Identifier TabSeparatedRaw\n"
    reason = verdict(tree, canonical, DB)
    assert (reason is None) is allowed, reason


def test_a_name_with_a_line_break_cannot_forge_the_tree() -> None:
    """EXPLAIN AST prints names raw: `SELECT * FROM \u0060t\\n Function url\u0060` adds a line of its own."""
    forged = (
        "SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
        "   ExpressionList (children 1)\n    Asterisk\n   TablesInSelectQuery (children 1)\n"
        "    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n      TableIdentifier t\n"
        " Function url\n Identifier TabSeparatedRaw\n"
    )
    assert "states 2 children and has 3" in (verdict(forged, "SELECT", DB) or "")
    # An alias broken over two lines: the first half states no children, and the second cannot be placed.
    split = (
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n"
        "   ExpressionList (children 1)\n    Function file (alias x\n    y) (children 1)\n"
        "     ExpressionList (children 1)\n      Literal \\'a\\'\n"
    )
    assert "cannot read" in (verdict(split, "SELECT", DB) or "")


def test_a_tree_that_cannot_be_read_is_refused() -> None:
    assert "cannot read" in (verdict("", "SELECT 1", DB) or "")
    assert "cannot read" in (verdict(" SelectQuery\n", "SELECT 1", DB) or "")
    assert "cannot read" in (verdict("SelectQuery\n   Literal 1\n", "SELECT 1", DB) or "")
    assert "cannot read" in (verdict("SelectWithUnionQuery\nKillQueryQuery\n", "SELECT 1", DB) or "")


@pytest.mark.parametrize(
    ("sql", "fmt", "params", "message"),
    [
        ("", "CSV", None, "empty query"),
        ("  ;  ", "CSV", None, "empty query"),
        ("SELECT 1", "CSV; KILL QUERY WHERE 1", None, "is not a format name"),
        ("SELECT 1", "", None, "is not a format name"),
        ("SELECT 1", "CSV\n", None, "is not a format name"),
        ("SELECT 1", "CSV", {"a\n": 1}, "is not a parameter name"),
        ("SELECT 1", "CSV", {"a b": 1}, "is not a parameter name"),
        ("SELECT 1", "CSV", {"a": [1, 2]}, "must be a string or a number"),
        ("SELECT 1", "CSV", [1], "params must be an object"),
        (5, "CSV", None, "the query must be a string"),
        # Bytes that were not UTF-8 (a Latin-1 file, a shell argument) come as lone surrogates: one line, no crash.
        ("SELECT '\udcff'", "CSV", None, r"the query is not valid UTF-8 text \(at character 9\)"),
        ("SELECT {s:String}", "CSV", {"s": "\udcfe"}, "parameter s is not valid UTF-8 text"),
    ],
)
def test_bad_requests_are_refused_before_clickhouse(sql: object, fmt: str, params: object, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        GuardedSession._validated(sql, fmt, params)  # type: ignore[arg-type]


# --- the real parser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedSession]:
    path: Path = tmp_path_factory.mktemp("guard") / "clickhouse"
    settings = Settings(clickhouse_dsn=f"chdb://{path}")
    writer = connect(settings)
    writer.command("CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    writer.command("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    writer.command("CREATE VIEW at_least AS SELECT id FROM t WHERE id >= {n:UInt32}")
    reader = connect(settings, readonly=True)
    try:
        yield GuardedSession(reader, settings.sink.database)
    finally:
        reader.close()
        writer.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sql", "params", "answer"),
    [
        ("SELECT count() FROM t", None, b"2\n"),
        (
            "SELECT * FROM (WITH x AS (SELECT id FROM t) SELECT sum(id) AS s FROM x UNION ALL SELECT 7) ORDER BY s",
            None,
            b"3\n7\n",
        ),
        ("SELECT id FROM at_least(n = {n:UInt32})", {"n": 2}, b"2\n"),
        ("SELECT name FROM t WHERE name LIKE '%a%';", None, b"a\n"),
        ("SELECT number FROM numbers(2)", None, b"0\n1\n"),
        ("SELECT count() > 0 FROM system.tables WHERE database = 'shekara'", None, b"1\n"),
        ("DESCRIBE TABLE t", None, b"id\tUInt32\t\t\t\t\t\nname\tString\t\t\t\t\t\n"),
        ("EXISTS TABLE t", None, b"1\n"),
        ("SELECT {who:String}", {"who": "x'; KILL QUERY WHERE 1; --"}, b"x'; KILL QUERY WHERE 1; --\n"),
    ],
)
def test_the_real_parser_lets_reading_through(
    session: GuardedSession, sql: str, params: dict[str, object] | None, answer: bytes
) -> None:
    assert session.raw(sql, "TabSeparatedRaw", params) == answer


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT 1; KILL QUERY WHERE 1", None, "refused: one statement at a time"),
        ("SELECT 1; SELECT query FROM system.processes", None, "refused: one statement at a time"),
        ("SELECT * FROM {tbl:Identifier}", {"tbl": "system.processes"}, "system.processes is not readable"),
        ("SELECT * FROM t INTO OUTFILE 'x.csv'", None, "INTO OUTFILE is not allowed"),
        ("SELECT * FROM t INTO OUTFILE 'x.csv' TRUNCATE COMPRESSION 'gzip'", None, "INTO OUTFILE is not allowed"),
        ("SHOW TABLES INTO OUTFILE 'x.csv'", None, "INTO OUTFILE is not allowed"),
        ("KILL QUERY WHERE 1 SYNC", None, "KILL is not allowed"),
        ("SHOW SETTINGS LIKE '%'", None, "SHOW SETTINGS is not allowed"),
        ("SELECT * FROM system.one WHERE dummy IN system.query_log", None, "system.query_log is not readable"),
        ("SELECT getSetting('max_threads')", None, "function getSetting() is not allowed"),
        ("SELECT * FROM url('http://127.0.0.1:1/', CSV)", None, "table function url() is not allowed"),
        ("SELECT %(x)s", {"x": 1}, "Syntax error"),
        ("SELECT 1 SETTINGS readonly = 0", None, "Cannot modify 'readonly' setting in readonly mode"),  # at EXPLAIN
        ("SELECT * FROM (SELECT 1 SETTINGS max_threads = 1)", None, "a SETTINGS clause is not allowed"),
        ("EXPLAIN AST SELECT 1", None, "EXPLAIN is not allowed"),
        ("SELEC 1", None, "Syntax error"),
        ("SELECT * FROM `t\n Function url`", None, "cannot read the query's syntax tree"),
        ("SELECT 1 AS `x\n    Literal 1`", None, "cannot read the query's syntax tree"),
        ("SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String') AS `u\n     `", None, "cannot read"),
        ("SELECT * FROM {t:Identifier}", {"t": "`x\n Function url`"}, "cannot read the query's syntax tree"),
    ],
)
def test_the_real_parser_refuses(
    session: GuardedSession, sql: str, params: dict[str, object] | None, message: str
) -> None:
    with pytest.raises(QueryError, match=re.escape(message)) as caught:
        session.raw(sql, "TabSeparatedRaw", params)
    assert "\n" not in str(caught.value)


@pytest.mark.integration
def test_the_readonly_session_carries_the_limits_and_cannot_lift_them(session: GuardedSession) -> None:
    """The limits are set before readonly=1 takes effect, and from then on no query can change them."""
    client = session.client  # the raw client: what the session holds, not what the guard lets through
    rows = client.query(
        "SELECT name, value FROM system.settings WHERE name IN {names:Array(String)}",
        parameters={"names": [*analyst_limits(Settings()), "readonly"]},
    ).result_rows
    wanted = {name: str(value) for name, value in analyst_limits(Settings()).items()}
    assert {str(name): str(value) for name, value in rows} == {**wanted, "readonly": "1"}
    with pytest.raises(ClickHouseError, match="readonly"):
        client.raw_query("SELECT 1 SETTINGS max_execution_time = 0")
    with pytest.raises(ClickHouseError, match="readonly"):
        client.command("SET max_result_rows = 0")
    with pytest.raises(ClickHouseError, match="TOO_MANY_ROWS_OR_BYTES"):
        client.raw_query(f"SELECT number FROM numbers({Settings().sink.analyst_max_result_rows + 1})")


def test_the_endpoint_file_is_written_private_and_whole(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "clickhouse.query.json"
    path.write_text("old")
    path.chmod(0o644)
    (tmp_path / f".{path.name}.{os.getpid()}.tmp").symlink_to(tmp_path / "elsewhere")  # a stale or planted temp
    old = os.umask(0)
    try:
        write_private(path, {"port": 1, "token": "t"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"port": 1, "token": "t"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
