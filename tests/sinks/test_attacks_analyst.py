"""Attacks on the analyst path, run the way an analyst (or anyone else on the machine) could run them.

A real `shekara sink` process owns the chDB directory and lands events from the real embedded broker; the
attacks go through its query endpoint exactly as `shekara sql` does (`sinks.query_server.ask`, or the command
itself), and through raw HTTP for the credential checks. Each must fail with one clear line and leave no trace:
no file written, no query of the sink killed, nothing of another session shown.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness import samples
from shekara.embedded import EmbeddedBroker
from shekara.settings import Settings, SinkSettings
from sinks import writer
from sinks.analyst import QueryError
from sinks.clickhouse import query_endpoint_file
from sinks.query_server import ask
from sinks.report import build_dashboard
from tests.sink_process import sink_process
from tests.sinks.test_sink import publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Small limits, so that the limit attacks are quick.
LIMITS = {"max_execution_time": 3, "max_memory_usage": 200_000_000, "max_result_rows": 10_000}


@dataclass
class Sink:
    settings: Settings
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def sql(self, query: str) -> bytes:
        return ask(self.settings, query, "TabSeparated", timeout=60)

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count() FROM {table}"))

    def shekara(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def endpoint(self) -> tuple[int, str]:
        import json

        doc = json.loads(query_endpoint_file(self.settings).read_text())
        return int(doc["port"]), str(doc["token"])


@pytest.fixture(scope="module")
def sink(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    """A `shekara sink` process of its own, with the test's topics, a fresh chDB directory and small limits."""
    import uuid

    from shekara.admin import ensure_topics, wait_for_broker
    from shekara.settings import TopicNames

    tmp = tmp_path_factory.mktemp("attacks")
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()})
    settings = Settings(
        broker_url=broker.url,
        data_dir=tmp / "var",
        clickhouse_dsn=f"chdb://{tmp / 'clickhouse'}",
        partitions=4,
        topics=topics,
        sink=SinkSettings.model_validate({"flush_interval": 0.2, **{f"analyst_{k}": v for k, v in LIMITS.items()}}),
    )
    wait_for_broker(settings)
    ensure_topics(settings)
    extra = {
        "SHEKARA_PARTITIONS": "4",
        "SHEKARA_SINK__FLUSH_INTERVAL": "0.2",
        **{f"SHEKARA_SINK__ANALYST_{k.upper()}": str(v) for k, v in LIMITS.items()},
    }
    with sink_process(settings, tmp, extra) as (process, env):
        yield Sink(settings, process, env)


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def refused(sink: Sink, query: str, *pieces: str) -> str:
    """The attack's error: one line, containing every piece."""
    with pytest.raises(QueryError) as caught:
        sink.sql(query)
    message = str(caught.value)
    assert "\n" not in message.strip(), message
    for piece in pieces:
        assert piece in message, message
    return message


# --- the endpoint's credentials -------------------------------------------------------------------------------


def test_the_endpoint_file_is_private(sink: Sink) -> None:
    path = query_endpoint_file(sink.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(f".{path.name}.*.tmp"))  # no temporary copy left beside it


def test_requests_without_the_token_get_401(sink: Sink) -> None:
    port, token = sink.endpoint()
    url = f"http://127.0.0.1:{port}/query"
    body = {"sql": "SELECT count() FROM crossings", "format": "TabSeparated"}
    user = sink.settings.clickhouse_analyst_user
    for headers, auth in (
        ({}, None),
        ({"Authorization": "Bearer wrong"}, None),
        ({"Authorization": f"Bearer {token[:-1]}"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Basic !!!"}, None),
        ({}, ("someone", token)),
        ({}, (user, "wrong")),
        ({"X-ClickHouse-User": user, "X-ClickHouse-Key": "wrong"}, None),
        ({"X-ClickHouse-User": "default", "X-ClickHouse-Key": token}, None),
    ):
        answer = httpx.post(url, json=body, headers=headers, auth=auth, timeout=10)
        assert answer.status_code == 401, (headers, auth)
        assert answer.text == "unauthorized: the query endpoint wants its token"
    # The three ways to send the token, the last two as ClickHouse's HTTP clients do.
    for headers, auth in (
        ({"Authorization": f"Bearer {token}"}, None),
        ({}, (user, token)),
        ({"X-ClickHouse-User": user, "X-ClickHouse-Key": token}, None),
    ):
        answer = httpx.post(url, json=body, headers=headers, auth=auth, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.text.strip().isdigit()


def test_bad_requests_get_one_line(sink: Sink) -> None:
    port, token = sink.endpoint()
    url = f"http://127.0.0.1:{port}/query"
    headers = {"Authorization": f"Bearer {token}"}
    for content, piece in (
        (b"not json", "bad request"),
        (b"[1, 2]", "bad request"),
        (b'{"format": "CSV"}', "bad request"),
        (b'{"sql": "SELECT 1", "format": "CSV FORMAT JSON"}', "is not a format name"),
        (b'{"sql": "SELECT 1", "params": [1]}', "params must be an object"),
        (b'{"sql": ""}', "empty query"),
    ):
        answer = httpx.post(url, content=content, headers=headers, timeout=10)
        assert answer.status_code == 400, content
        assert piece in answer.text and "\n" not in answer.text.strip(), answer.text


def test_a_request_never_finished_does_not_hold_the_endpoint(tmp_path: Path) -> None:
    """Slowloris: each connection holds one of the endpoint's threads; one that never ends its request is closed.

    A query endpoint of its own (in a process of its own), with the idle timeout shortened to one second and
    the deadline for a whole request to two.
    """
    import select
    import socket

    code = (
        "import sys, time\n"
        "from shekara.settings import Settings\n"
        "from sinks import query_server\n"
        "from sinks.clickhouse import connect\n"
        "query_server.IDLE_TIMEOUT_SECONDS = 1.0\n"
        "query_server.REQUEST_DEADLINE_SECONDS = 2.0\n"
        "settings = Settings(clickhouse_dsn=sys.argv[1], data_dir=sys.argv[2])\n"
        "writer = connect(settings)  # creates the database\n"
        "server = query_server.QueryServer.start(settings)\n"
        "print(server.port, flush=True)\n"
        "time.sleep(300)\n"
    )
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    process = subprocess.Popen([sys.executable, "-c", code, dsn, str(tmp_path / "var")], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = b""
        while not line.strip().isdigit():  # the port, after the server's log lines
            line = process.stdout.readline()
            assert line, "the query endpoint did not start"
        port = int(line)
        settings = Settings(clickhouse_dsn=dsn, data_dir=tmp_path / "var")
        stalled = []
        for partial in (
            b"POST /query HTTP/1.1\r\nHost: x\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nSEL",
            b"",
        ):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(partial)
            stalled.append(conn)
        started = time.monotonic()
        for conn in stalled:
            with conn:
                while conn.recv(65536):  # the server's answer, if any, then the end: a timeout fails the test
                    pass
        assert time.monotonic() - started < 8
        # Trickling: a byte every 0.3 s is never idle for a second, yet the request never ends.
        trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
        trickle.sendall(b"POST /query HTTP/1.1\r\nX-Slow: ")
        started, closed = time.monotonic(), False
        while not closed and time.monotonic() - started < 15:
            try:
                trickle.sendall(b"a")
                if select.select([trickle], [], [], 0.3)[0]:
                    closed = trickle.recv(65536) == b""
            except OSError:  # reset: closed too
                closed = True
        trickle.close()
        assert closed and time.monotonic() - started < 6, time.monotonic() - started
        # The endpoint still answers whoever finishes a request.
        answer = ask(settings, "SELECT 41 + 1", "TabSeparated", timeout=30)
        assert answer == b"42\n"
        # A BI client's password in the URL is not written to the log (this process logs every request).
        token = json.loads(query_endpoint_file(settings).read_text())["token"]
        url = f"http://127.0.0.1:{port}/"
        answer = httpx.get(url, params={"query": "SELECT 1", "user": "analyst", "password": token}, timeout=10)
        assert answer.status_code == 200, answer.text
    finally:
        process.kill()
        process.wait(30)
    assert process.stdout is not None
    logged = process.stdout.read().decode()
    assert "GET /?query=SELECT+1&user=analyst&password=*** HTTP/1.1" in logged, logged[-2000:]
    assert token not in logged


# --- reading what is not the analyst's ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table", ["processes", "query_log", "settings", "functions", "named_collections", "macros", "users"]
)
def test_system_tables_are_closed(sink: Sink, table: str) -> None:
    refused(sink, f"SELECT * FROM system.{table}", "refused:", f"system.{table} is not readable")


def test_other_sessions_queries_stay_hidden_whatever_the_spelling(sink: Sink) -> None:
    refused(sink, "SELECT * FROM merge(system, '^proc')", "table function merge() is not allowed")
    refused(sink, "SELECT * FROM merge('system', 'query_log')", "table function merge() is not allowed")
    refused(sink, 'SELECT query FROM "system".`processes`', "system.processes is not readable")
    refused(sink, "SELECT 1 FROM crossings WHERE event_id IN system.processes", "system.processes is not readable")
    refused(sink, "WITH p AS (SELECT * FROM system.processes) SELECT * FROM p", "system.processes is not readable")
    refused(sink, "SHOW PROCESSLIST", "SHOW PROCESSLIST is not allowed")
    refused(sink, "SHOW SETTINGS LIKE '%'", "SHOW SETTINGS is not allowed")
    refused(sink, "SELECT getServerSetting('tcp_port')", "function getServerSetting() is not allowed")
    refused(sink, "SELECT getMacro('shard')", "function getMacro() is not allowed")
    refused(sink, "SELECT 1; SELECT query FROM system.processes", "refused: one statement at a time")
    refused(sink, "SELECT * FROM remote('127.0.0.1', system.processes)", "table function remote() is not allowed")
    refused(sink, "SELECT * FROM view(SELECT * FROM system.query_log)", "table function view() is not allowed")


def test_the_key_pads_do_not_show_while_the_sink_inserts(sink: Sink) -> None:
    """The sink hashes with HMAC pads passed per query: while it inserts, no analyst query can see its queries."""
    before = sink.count("crossings")
    publish(sink.settings, [samples.crossing(f"pad{i}") for i in range(300)])
    seen: list[str] = []
    while not seen or sink.count("crossings") < before + 300:
        for query in ("SELECT query FROM system.processes", "SELECT * FROM system.query_log"):
            seen.append(refused(sink, query, "is not readable"))
    assert sink.count("crossings") == before + 300
    # The writer's session keeps the pads in a temporary table: no other session sees it, by any name.
    pads = getattr(writer, "PADS_TABLE", "_pseudonym_pads")
    refused(sink, f"SELECT * FROM {pads}", "UNKNOWN_TABLE")
    refused(sink, f"SELECT * FROM _temporary_and_external_tables.{pads}", "only the shekara database is")
    assert sink.sql("SELECT count() FROM system.tables WHERE is_temporary") == b"0\n"
    assert sink.sql(f"SELECT count() FROM system.tables WHERE name = '{pads}'") == b"0\n"


# --- writing files, reaching the network -----------------------------------------------------------------------


def test_into_outfile_writes_nothing(sink: Sink, tmp_path: Path) -> None:
    target = tmp_path / "stolen.tsv"
    for query in (
        f"SELECT * FROM crossings INTO OUTFILE '{target}'",
        f"SELECT * FROM crossings INTO OUTFILE '{target}' TRUNCATE",
        f"SELECT * FROM crossings INTO OUTFILE '{target}' APPEND COMPRESSION 'gzip'",
        f"SELECT 1 INTO OUTFILE '{target}' AND STDOUT",
        f"SHOW TABLES INTO OUTFILE '{target}'",
        f"DESCRIBE TABLE crossings INTO OUTFILE '{target}'",
        f"EXISTS TABLE crossings INTO OUTFILE '{target}'",
    ):
        refused(sink, query, "INTO OUTFILE is not allowed")
    assert not target.exists()
    assert not list(tmp_path.iterdir())
    # Nor relative to the sink's working directory.
    refused(sink, "SELECT 1 INTO OUTFILE 'relative.tsv'", "INTO OUTFILE is not allowed")
    assert not Path("relative.tsv").exists()


def test_files_and_network_are_out_of_reach(sink: Sink) -> None:
    refused(sink, "SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file() is not allowed")
    refused(sink, "SELECT file('/etc/passwd')", "function file() is not allowed")
    refused(sink, "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')", "table function url() is not allowed")
    refused(sink, "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')", "table function s3() is not allowed")
    refused(sink, "SELECT * FROM executable('id', 'CSV', 'a String')", "table function executable() is not allowed")
    refused(sink, "SELECT addressToSymbol(toUInt64(1))", "function addressToSymbol() is not allowed")
    refused(sink, "INSERT INTO FUNCTION file('x.csv') SELECT 1", "not allowed")


# --- interfering with the sink ---------------------------------------------------------------------------------


def test_kill_cannot_touch_the_sinks_inserts(sink: Sink) -> None:
    before = sink.count("crossings")
    stop = threading.Event()
    attempts: list[str] = []

    def attack() -> None:
        while not stop.is_set():
            for query in (
                "KILL QUERY WHERE 1",
                "KILL QUERY WHERE 1 SYNC",
                "KILL MUTATION WHERE 1",
                "SELECT 1; KILL QUERY WHERE 1",
            ):
                attempts.append(refused(sink, query))

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        publish(sink.settings, [samples.crossing(f"kill{i}") for i in range(2_000)])
        wait_for(lambda: sink.count("crossings") >= before + 2_000)
    finally:
        stop.set()
        thread.join(30)
    assert sink.count("crossings") == before + 2_000
    assert int(sink.sql("SELECT uniqExact(event_id) FROM crossings WHERE event_id LIKE 'kill%'")) == 2_000
    assert attempts and all("KILL is not allowed" in a or "refused: one statement at a time" in a for a in attempts), (
        set(attempts)
    )
    assert sink.process.poll() is None


def test_nothing_changes_settings_or_writes(sink: Sink) -> None:
    refused(sink, "SELECT 1 SETTINGS max_execution_time = 0", "readonly")
    refused(sink, "SET max_result_rows = 0", "SET is not allowed")
    refused(sink, "INSERT INTO crossings (event_id) VALUES ('x')", "INSERT is not allowed", "readonly")
    refused(sink, "DROP TABLE crossings", "readonly")
    refused(sink, "TRUNCATE TABLE crossings", "readonly")
    refused(sink, "SYSTEM SHUTDOWN", "readonly")
    refused(sink, "USE system", "USE is not allowed")


# --- limits --------------------------------------------------------------------------------------------------------


def test_a_runaway_query_hits_the_time_limit(sink: Sink) -> None:
    started = time.monotonic()
    refused(sink, "SELECT count() FROM numbers(1000000000000)", "TIMEOUT_EXCEEDED")
    assert time.monotonic() - started < LIMITS["max_execution_time"] + 10


def test_a_huge_result_hits_the_result_limit(sink: Sink) -> None:
    refused(sink, f"SELECT number FROM numbers({LIMITS['max_result_rows'] * 10})", "TOO_MANY_ROWS_OR_BYTES")


def test_a_memory_hog_hits_the_memory_limit(sink: Sink) -> None:
    refused(sink, "SELECT groupArray(toString(number)) FROM numbers(100000000)", "MEMORY_LIMIT_EXCEEDED")


# --- and the analysts' own work still runs -------------------------------------------------------------------------


def test_shekara_sql_and_report_work_and_an_attack_is_one_line(sink: Sink) -> None:
    publish(sink.settings, [samples.crossing("warm")])
    wait_for(lambda: sink.count("crossings") > 0)
    ok = sink.shekara("sql", "SELECT count() > 0 AS landed FROM crossings", "--format", "CSV")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ['"landed"', "1"]
    saved = sink.shekara("sql", "--saved", "daily_flows", "--format", "CSV")
    assert saved.returncode == 0, saved.stderr
    assert build_dashboard(sink.settings) is not None  # every query of the report passes the guard

    attack = sink.shekara("sql", "SELECT query FROM system.processes")
    assert attack.returncode == 1
    lines = attack.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refused: system.processes is not readable"), lines

    # A query that is not UTF-8 (a Latin-1 byte from the shell or a file): one line, not the client's traceback.
    latin1 = sink.shekara("sql", "SELECT 'caf\udce9'")  # the argument's bytes: SELECT 'caf\xe9'
    assert latin1.returncode == 1
    lines = latin1.stderr.strip().splitlines()
    assert lines == ["error: bad request: the query is not valid UTF-8 text (at character 12)"], lines


def test_parquet_through_the_endpoint_is_byte_for_byte(sink: Sink, tmp_path: Path) -> None:
    # The sink owns the directory: the bytes cross its HTTP endpoint and must come out as ClickHouse wrote them.
    import pyarrow.parquet as pq

    path = tmp_path / "out.parquet"
    run = sink.shekara(
        "sql", "SELECT toUInt8(200) AS x, toDate('2025-03-01') AS d", "-f", "Parquet", "--output", str(path)
    )
    assert run.returncode == 0, run.stderr
    assert [(r["x"], str(r["d"])) for r in pq.read_table(path).to_pylist()] == [(200, "2025-03-01")]
