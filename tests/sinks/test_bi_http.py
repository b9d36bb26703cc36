"""BI tools on the embedded warehouse: ClickHouse's HTTP interface, served by a real `shekara sink` process.

The warehouse is simulator traffic landed by the sink's own batch code (`harness.scale`, built in a child process:
chDB allows one engine per directory and the sink must own it). Then a `shekara sink` process owns it and the
tests connect as BI tools do: clickhouse-connect's real HTTP client (`get_client(host, port, username, password)`),
and raw HTTP for what clickhouse-go (Grafana's datasource) sends. No mocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from shekara.embedded import EmbeddedBroker
from shekara.settings import Settings, TopicNames
from sinks.clickhouse import query_endpoint_file
from sinks.http_interface import BLOCK_INFO
from tests.sink_process import sink_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "bi-test-analyst-password"
# Sixty simulated days (about 33,000 crossings, 7,000 stays, 100 alerts): every view has rows.
BUILD = """
import sys
from datetime import date
from pathlib import Path
from harness.scale import WarehouseSpec, cached_warehouse
from shekara.settings import Settings

tmp = Path(sys.argv[1])
spec = WarehouseSpec("bi", days=60, scale=0.003, target_crossings=1, years=1, start=date(2026, 9, 7))
settings = Settings(data_dir=tmp / "var", clickhouse_dsn=f"chdb://{tmp / 'unused'}")
_, report = cached_warehouse(settings, spec, tmp / "cache", today=date(2026, 11, 23), workers=1)
print(report.path)
"""
FIRST_DAY, LAST_DAY = date(2026, 9, 7), date(2026, 11, 6)  # 60 days, the last one may spill past midnight


@dataclass
class Warehouse:
    """The sink's ClickHouse HTTP endpoint and what a BI tool needs to reach it."""

    settings: Settings
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def client(self, password: str = PASSWORD) -> Client:
        user = self.settings.clickhouse_analyst_user
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user, password=password)

    def auth(self) -> dict[str, str]:
        return {"X-ClickHouse-User": self.settings.clickhouse_analyst_user, "X-ClickHouse-Key": PASSWORD}


@pytest.fixture(scope="module")
def warehouse(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    from shekara.admin import ensure_topics, wait_for_broker

    tmp = tmp_path_factory.mktemp("bi")
    built = subprocess.run([sys.executable, "-c", BUILD, str(tmp)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    path = built.stdout.strip().splitlines()[-1]
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()})
    settings = Settings(broker_url=broker.url, data_dir=tmp / "var", clickhouse_dsn=f"chdb://{path}", topics=topics)
    wait_for_broker(settings)
    ensure_topics(settings)
    extra = {
        "SHEKARA_SINK__ANALYST_PASSWORD": PASSWORD,
        "SHEKARA_METRICS__SINK_PORT": "0",  # tests run side by side: no fixed metrics port
    }
    with sink_process(settings, tmp, extra, wait=120):
        doc = json.loads(query_endpoint_file(settings).read_text())
        yield Warehouse(settings, int(doc["port"]), str(doc["token"]))


def clickhouse_error(exc: pytest.ExceptionInfo[DatabaseError], code: int, *pieces: str) -> str:
    message = str(exc.value)
    assert f"Code: {code}. DB::Exception:" in message, message
    for piece in pieces:
        assert piece in message, message
    return message


# --- clickhouse-connect, as an analyst's notebook or Superset uses it ----------------------------------------


def test_the_client_connects_and_queries(warehouse: Warehouse) -> None:
    client = warehouse.client()
    # At connect it read version(), timezone() and system.settings, and found the Native block info it asked for.
    assert client.server_version and client.server_version[0].isdigit()
    assert client.protocol_version == 54405
    assert client.command("SELECT currentDatabase()") == "shekara"
    crossings = client.query("SELECT count() FROM crossings").result_rows[0][0]
    assert crossings > 10_000
    days = client.query(
        "SELECT day, sumIf(crossings, direction = 'ENTRY') AS entries FROM daily_flows GROUP BY day ORDER BY day"
    )
    assert days.column_names == ("day", "entries")
    assert days.result_rows[0][0] >= FIRST_DAY and days.result_rows[-1][0] <= LAST_DAY
    assert sum(r[1] for r in days.result_rows) == client.command("SELECT countIf(direction = 'ENTRY') FROM crossings")
    # LowCardinality, Nullable, DateTime64 and arrays come through the Native conversion.
    row = client.query(
        "SELECT nationality, checkpoint_id, event_time, [1, 2] AS a, toNullable(1) AS n FROM crossings LIMIT 1"
    ).result_rows[0]
    assert len(row[0]) == 3 and row[3] == [1, 2] and row[4] == 1
    client.close()


def test_dataframes_arrow_and_parquet(warehouse: Warehouse) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    client = warehouse.client()
    sql = "SELECT nationality, sum(entries) AS entries FROM monthly_balance GROUP BY nationality ORDER BY nationality"
    expected = client.query(sql).result_rows
    assert len(expected) > 5
    table = client.query_arrow(sql)
    assert table.num_rows == len(expected) and table.column_names == ["nationality", "entries"]
    parquet = client.raw_query(sql, fmt="Parquet")
    assert pq.read_table(pa.BufferReader(parquet)).num_rows == len(expected)
    try:
        import pandas  # noqa: F401
    except ImportError:
        return
    frame = client.query_df(sql)
    assert list(frame.columns) == ["nationality", "entries"]
    assert frame["entries"].sum() == sum(r[1] for r in expected)
    client.close()


def test_query_parameters_bind_on_the_server(warehouse: Warehouse) -> None:
    client = warehouse.client()
    counted = client.query(
        "SELECT count() FROM crossings WHERE nationality = {n:String} AND event_date <= {d:Date}",
        parameters={"n": "UZB", "d": date(2026, 10, 1)},
    ).result_rows[0][0]
    literal = client.command("SELECT count() FROM crossings WHERE nationality = 'UZB' AND event_date <= '2026-10-01'")
    assert counted == literal and counted > 0
    awkward = "it's a \\ back\tslash"
    assert client.query("SELECT {s:String} AS s", parameters={"s": awkward}).result_rows == [(awkward,)]
    words = ["x'y", "z"]
    assert client.query("SELECT {a:Array(String)} AS a", parameters={"a": words}).result_rows == [(words,)]
    client.close()


def test_wrong_credentials_get_error_516(warehouse: Warehouse) -> None:
    for password in ("wrong", warehouse.token[:-1], ""):
        with pytest.raises(DatabaseError) as caught:
            warehouse.client(password=password)
        clickhouse_error(caught, 516, "AUTHENTICATION_FAILED")
    with pytest.raises(DatabaseError) as caught:
        clickhouse_connect.get_client(host="127.0.0.1", port=warehouse.port, username="default", password=PASSWORD)
    clickhouse_error(caught, 516, "default: Authentication failed")
    answer = httpx.get(warehouse.url, params={"query": "SELECT 1"}, timeout=10)
    assert answer.status_code == 403 and answer.headers["X-ClickHouse-Exception-Code"] == "516"
    assert answer.text.startswith("Code: 516. DB::Exception: ") and answer.text.count("\n") == 1
    # The endpoint file's token is the analyst's password too (what `shekara sql` holds).
    assert warehouse.client(password=warehouse.token).command("SELECT 1") == 1


def test_writes_are_refused(warehouse: Warehouse) -> None:
    client = warehouse.client()
    before = client.command("SELECT count() FROM crossings")
    for statement, code in (
        ("INSERT INTO crossings (event_id) VALUES ('x')", 164),
        ("CREATE TABLE stolen (a UInt8) ENGINE = Memory", 164),
        ("DROP TABLE crossings", 164),
        ("ALTER TABLE crossings DELETE WHERE 1", 164),
        ("SELECT * FROM crossings INTO OUTFILE '/tmp/stolen.tsv'", 497),
        ("SELECT 1 SETTINGS readonly = 0", 164),
    ):
        with pytest.raises(DatabaseError) as caught:
            client.command(statement)
        message = clickhouse_error(caught, code)
        assert message.count("Code:") == 1 and message.count("(version") == 1, message
    with pytest.raises(DatabaseError) as caught:
        client.insert("daily_flows", [[date(2026, 9, 7), "x", "ENTRY", "UZB", "road", 1]])
    clickhouse_error(caught, 164, "INSERT is not allowed")
    assert client.command("SELECT count() FROM crossings") == before
    client.close()


def test_system_tables_stay_closed_but_for_what_clients_send(warehouse: Warehouse) -> None:
    client = warehouse.client()
    for sql in (
        "SELECT query FROM system.processes",
        "SELECT * FROM system.settings",
        "SELECT name, value, readonly FROM system.settings WHERE name = 'readonly'",
        "SELECT * FROM system.query_log",
    ):
        with pytest.raises(DatabaseError) as caught:
            client.query(sql)
        clickhouse_error(caught, 497, "ACCESS_DENIED", "is not readable on the analyst path")
    # Exactly the clients' own queries pass: clickhouse-connect's settings read, Grafana's function list.
    settings = client.query("SELECT name, value, readonly FROM system.settings LIMIT 10000").result_rows
    assert ("readonly", "1", 1) in settings
    functions = client.query(
        "SELECT name, is_aggregate, case_insensitive, alias_to, origin, description, syntax, arguments, "
        "returned_value, examples, categories FROM system.functions LIMIT 10000"
    ).result_rows
    assert {"sum", "toStartOfMonth"} <= {r[0] for r in functions}
    # The catalogue BI tools browse (Grafana: SHOW DATABASES, SHOW TABLES, DESC TABLE, system.columns).
    assert "crossings" in {r[0] for r in client.query('SHOW TABLES FROM "shekara"').result_rows}
    assert client.query('DESC TABLE "shekara"."daily_flows"').result_rows[0][:2] == ("day", "Date")
    columns = client.query("SELECT name, type, table FROM system.columns WHERE database IN ('shekara')").result_rows
    assert ("day", "Date", "daily_flows") in columns
    client.close()


# --- hostile requests: framing, headers ------------------------------------------------------------------------


def exchange(warehouse: Warehouse, data: bytes) -> list[bytes]:
    """Every HTTP status line the endpoint answers `data` with, read until it closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", warehouse.port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):  # a connection left open ends the test in a timeout
            received += chunk
    return [line.strip() for line in received.split(b"\n") if line.startswith(b"HTTP/1.")]


def test_ambiguous_framing_cannot_smuggle_a_second_request(warehouse: Warehouse) -> None:
    """Request smuggling: where a body ends must be certain, or its rest would be read as the next request."""
    a = warehouse.auth()
    auth = f"X-ClickHouse-User: {a['X-ClickHouse-User']}\r\nX-ClickHouse-Key: {a['X-ClickHouse-Key']}\r\n"
    chunked = b"8\r\nSELECT 1\r\n0\r\n\r\n"
    smuggled = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    for head, body, status in (
        # Another Transfer-Encoding than plain chunked: its chunks were taken for a request ("Bad request syntax").
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n", chunked, b"501"),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", chunked, b"501"),
        # Both headers: a proxy reading Content-Length would pass the smuggled request on inside this one.
        ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n", chunked, b"400"),
        ("POST /query HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n", chunked, b"400"),
        # A GET's body is never read: it was served as the next request on the kept-alive connection.
        ("GET /?query=SELECT%201 HTTP/1.1\r\nContent-Length: 35\r\n", b"", b"200"),
        ("GET /health HTTP/1.1\r\nContent-Length: 35\r\n", b"", b"200"),
    ):
        statuses = exchange(warehouse, f"{head}Host: x\r\n{auth}\r\n".encode() + body + smuggled)
        assert len(statuses) == 1 and statuses[0].split()[1] == status, (head, statuses)
    # Plain chunked and Content-Length bodies still work, and keep-alive still serves a second request.
    statuses = exchange(
        warehouse, f"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\n{auth}\r\n".encode() + chunked
        + b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )  # fmt: skip
    assert [s.split()[1] for s in statuses] == [b"200", b"200"], statuses


def test_a_query_id_cannot_add_response_headers(warehouse: Warehouse) -> None:
    """The query_id is echoed as X-ClickHouse-Query-Id: a line break in it wrote headers of the client's making."""
    answer = httpx.get(
        warehouse.url,
        params={"query": "SELECT 1", "query_id": "a\r\nSet-Cookie: session=stolen"},
        headers=warehouse.auth(),
        timeout=10,
    )
    assert answer.status_code == 400 and "set-cookie" not in answer.headers, answer.headers
    assert answer.headers["X-ClickHouse-Exception-Code"] == "36"
    assert answer.text.count("\n") == 1 and "query_id must be 1 to 128 printable ASCII" in answer.text
    assert "\n" not in answer.headers["X-ClickHouse-Query-Id"]
    fine = httpx.get(warehouse.url, params={"query": "SELECT 1", "query_id": "bi-2"}, headers=warehouse.auth())
    assert fine.status_code == 200 and fine.headers["X-ClickHouse-Query-Id"] == "bi-2"


# --- the protocol, as clickhouse-go (Grafana's datasource in HTTP mode) and curl speak it -----------------------


def test_ping_headers_formats_and_settings(warehouse: Warehouse) -> None:
    assert httpx.get(f"{warehouse.url}ping", timeout=10).text == "Ok.\n"
    assert httpx.get(warehouse.url, timeout=10).text == "Ok.\n"
    answer = httpx.get(
        warehouse.url,
        params={"query": "SELECT count() AS n FROM crossings FORMAT JSONCompact", "query_id": "bi-1"},
        headers=warehouse.auth(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text)["data"][0][0] > 10_000
    assert answer.headers["X-ClickHouse-Format"] == "JSONCompact"
    assert answer.headers["X-ClickHouse-Query-Id"] == "bi-1"
    assert answer.headers["X-ClickHouse-Timezone"] and answer.headers["X-ClickHouse-Server-Display-Name"]
    assert int(json.loads(answer.headers["X-ClickHouse-Summary"])["result_bytes"]) == len(answer.content)
    assert "Content-Encoding" not in answer.headers
    # The query in the body, the format from default_format, HTTP Basic credentials, the project database.
    user = warehouse.settings.clickhouse_analyst_user
    answer = httpx.post(
        warehouse.url,
        params={"default_format": "CSVWithNames", "database": "shekara"},
        content=b"SELECT 1 AS one",
        auth=(user, PASSWORD),
        timeout=10,
    )
    assert answer.text == '"one"\n1\n' and answer.headers["Content-Type"].startswith("text/csv")
    # Compression only when asked twice, as ClickHouse does.
    answer = httpx.post(
        warehouse.url,
        params={"enable_http_compression": "1"},
        content=b"SELECT 'x' FROM numbers(1000) FORMAT TSV",
        headers=warehouse.auth() | {"Accept-Encoding": "gzip"},
        timeout=10,
    )
    assert answer.headers["Content-Encoding"] == "gzip" and answer.text == "x\n" * 1000  # httpx decompressed it
    assert int(answer.headers["Content-Length"]) < 1000
    plain = httpx.post(warehouse.url, content=b"SELECT 1", headers=warehouse.auth() | {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in plain.headers and plain.content == b"1\n"
    # Settings: readonly, as a readonly=1 server: the session's own value passes, any change is refused.
    for params, code, status in (
        ({"max_threads": "1"}, 164, 403),
        ({"readonly": "0"}, 164, 403),
        ({"no_such_setting": "1"}, 115, 400),
        ({"database": "system"}, 497, 403),
    ):
        answer = httpx.post(warehouse.url, params=params, content=b"SELECT 1", headers=warehouse.auth(), timeout=10)
        assert answer.status_code == status, (params, answer.text)
        assert answer.headers["X-ClickHouse-Exception-Code"] == str(code)
        assert answer.text.startswith(f"Code: {code}. DB::Exception: "), answer.text
    same = httpx.post(warehouse.url, params={"readonly": "1"}, content=b"SELECT 1", headers=warehouse.auth())
    assert same.content == b"1\n"
    missing = httpx.post(warehouse.url, content=b"SELECT * FROM nowhere", headers=warehouse.auth(), timeout=10)
    assert missing.status_code == 404 and missing.text.startswith("Code: 60. DB::Exception: ")
    assert "(UNKNOWN_TABLE)" in missing.text and missing.text.count("\n") == 1


def read_native(data: bytes, revision: int) -> list[tuple[str, str, list[object]]]:
    """Native as clickhouse-go reads it at `revision` (block info, custom serialization flag), for the hello's types."""
    at = 0

    def leb() -> int:
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def string() -> str:
        nonlocal at
        size = leb()
        at += size
        return data[at - size : at].decode()

    assert data[:8] == BLOCK_INFO
    at = 8
    columns, rows = leb(), leb()
    out = []
    for _ in range(columns):
        name, kind = string(), string()
        if revision >= 54454:
            assert data[at] == 0  # no custom serialization
            at += 1
        values: list[object] = []
        for _ in range(rows):
            if kind == "String":
                values.append(string())
            else:
                assert kind == "UInt32", kind
                values.append(int.from_bytes(data[at : at + 4], "little"))
                at += 4
        out.append((name, kind, values))
    assert at == len(data)
    return out


def test_grafana_driver_hello_in_native_at_its_protocol_version(warehouse: Warehouse) -> None:
    """clickhouse-go over HTTP: default_format=Native, its TCP revision as client_protocol_version, and first of
    all this query (conn_http.go, queryHello)."""
    params = {"default_format": "Native", "client_protocol_version": "54460", "database": "shekara"}
    answer = httpx.post(
        warehouse.url,
        params=params,
        content=b"SELECT displayName(), version(), revision(), timezone()",
        headers=warehouse.auth(),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    (_, _, name), (_, _, version), (_, kind, revision), (_, _, zone) = read_native(answer.content, 54460)
    assert kind == "UInt32" and int(str(revision[0])) > 54454
    assert name[0] == answer.headers["X-ClickHouse-Server-Display-Name"]
    assert zone[0] == answer.headers["X-ClickHouse-Timezone"]
    client = warehouse.client()
    assert version[0] == client.server_version
    client.close()


def test_the_json_protocol_of_shekara_sql_still_works(warehouse: Warehouse) -> None:
    from sinks.query_server import ask

    assert int(ask(warehouse.settings, "SELECT count() > 0 FROM crossings", "TabSeparated")) == 1


def test_binding_beyond_loopback_needs_the_analyst_password() -> None:
    from shekara.settings import SinkSettings, check_secrets

    def problems(**sink: str) -> list[str]:
        settings = Settings(sink=SinkSettings.model_validate(sink))
        return check_secrets(settings, pseudonym=False, kafka=False, ops_page=False)

    assert problems() == [] and problems(query_bind="127.0.0.1") == []
    (line,) = problems(query_bind="0.0.0.0")
    assert line.startswith("SHEKARA_SINK__ANALYST_PASSWORD is empty") and "SHEKARA_SINK__QUERY_BIND=0.0.0.0" in line
    (line,) = problems(query_bind="0.0.0.0", analyst_password="change-me-analyst")
    assert "is a placeholder" in line
    assert problems(query_bind="0.0.0.0", analyst_password=PASSWORD) == []
