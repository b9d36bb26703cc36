"""A command that cannot reach the broker or the warehouse says so in one line (issue 17, item 1).

Each command runs as a user runs it, in its own process, against a local port nobody listens on and a
warehouse directory that does not exist; the ops page's staleness through `BrokerContact` and `broker_answers`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.web import BrokerContact, broker_answers

REACH_TIMEOUT = 1.0  # seconds: how long each command waits for the closed port
BOUND = 20.0  # seconds a command may take in all (interpreter start, imports, the wait)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections to it are refused


@pytest.fixture
def nowhere(tmp_path: Path) -> tuple[dict[str, str], str]:
    address = f"127.0.0.1:{closed_port()}"
    env = {
        **os.environ,
        "SHEKARA_BROKER_URL": f"kafka://{address}",
        "SHEKARA_REACH_TIMEOUT_SECONDS": str(REACH_TIMEOUT),
        "SHEKARA_DATA_DIR": str(tmp_path / "var"),
        "SHEKARA_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'var' / 'clickhouse'}",
        "SHEKARA_LOG_LEVEL": "WARNING",
    }
    return env, address


def run(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND * 2,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "args",
    [
        ("topics",),
        ("alerts",),
        ("alerts", "--follow"),
        ("sink", "--once"),
        ("sink",),
        ("process",),
        ("simulate", "--to-kafka", "--scale", "0.001"),
    ],
    ids=lambda a: " ".join(a),
)
def test_no_broker_is_one_line(nowhere: tuple[dict[str, str], str], args: tuple[str, ...]) -> None:
    env, address = nowhere
    done, seconds = run(env, *args)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert lines == [f"error: cannot reach the Kafka broker at {address} (is `shekara up` running?)"], lines[:5]
    assert "Traceback" not in done.stdout + done.stderr
    assert seconds < BOUND


@pytest.mark.parametrize("args", [("sql", "SELECT 1"), ("report",), ("dead-letters",)], ids=lambda a: a[0])
def test_no_warehouse_is_one_line(nowhere: tuple[dict[str, str], str], args: tuple[str, ...]) -> None:
    env, _ = nowhere
    done, seconds = run(env, *args)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1, lines[:5]
    assert "clickhouse" in lines[0] and "shekara migrate" in lines[0], lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert seconds < BOUND


@pytest.mark.parametrize(
    "args", [("sql", "SELECT 1"), ("report",), ("dead-letters",), ("migrate",)], ids=lambda a: a[0]
)
def test_no_clickhouse_server_is_one_line(nowhere: tuple[dict[str, str], str], args: tuple[str, ...]) -> None:
    env, _ = nowhere
    port = closed_port()
    done, seconds = run({**env, "SHEKARA_CLICKHOUSE_DSN": f"http://analyst:pw@127.0.0.1:{port}/shekara"}, *args)
    assert done.returncode == 2, done.stderr[-2000:]
    expected = f"error: cannot reach ClickHouse at 127.0.0.1:{port} (is `docker compose up` running?)"
    assert done.stderr.splitlines() == [expected]
    assert seconds < BOUND


def test_publish_spools_when_the_broker_is_down(nowhere: tuple[dict[str, str], str], tmp_path: Path) -> None:
    """By design the publisher keeps what it cannot send on disk; librdkafka's reconnect lines stay out."""
    env, _ = nowhere
    bad = tmp_path / "one.jsonl"
    bad.write_text("{}\n")
    done, _ = run(env, "publish", str(bad), "--flush-timeout", "1")
    assert done.returncode in (1, 3)
    assert "Connect to" not in done.stderr and "Traceback" not in done.stderr
    assert "spool" in done.stdout


def test_contact_goes_stale_after_silence() -> None:
    t0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    contact = BrokerContact(stale_after=5.0, started=t0)
    assert contact.status(t0 + timedelta(seconds=4))["reachable"]
    never = contact.status(t0 + timedelta(seconds=6))
    assert never == {"reachable": False, "last_heard": None, "unreachable_since": t0.isoformat()}
    heard = t0 + timedelta(seconds=10)
    contact.heard(heard)
    assert contact.status(heard + timedelta(seconds=5))["reachable"]
    stale = contact.status(heard + timedelta(seconds=7))
    assert stale["reachable"] is False and stale["unreachable_since"] == heard.isoformat()


def test_broker_answers_is_false_and_quick_on_a_closed_port() -> None:
    from confluent_kafka.admin import AdminClient

    from shekara.settings import Settings

    settings = Settings(broker_url=f"kafka://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    assert broker_answers(AdminClient(settings.kafka_config()), timeout=0.5) is False
    assert time.monotonic() - started < 3.0


def test_broker_answers_a_live_broker(settings: object) -> None:
    from confluent_kafka.admin import AdminClient

    from shekara.settings import Settings

    assert isinstance(settings, Settings)
    assert broker_answers(AdminClient(settings.kafka_config()), timeout=5.0) is True


@pytest.mark.slow
def test_ops_page_status_says_since_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    """A page whose broker stops: /api/status turns from reachable to 'unreachable since' within seconds."""
    from shekara.embedded import launch
    from tests.streams.test_web import start_page, topic_settings

    broker = launch(log_path=tmp_path / "broker.log")
    try:
        server = start_page(topic_settings(broker, tmp_path / "var"), "ops-web-stale", tmp_path / "var")
    except BaseException:
        broker.stop()
        raise
    try:
        up = server.wait_for("/api/status", lambda b: b["broker"]["reachable"] and b["broker"]["last_heard"])
        assert up["broker"]["address"] == broker.bootstrap
        broker.stop()
        stopped = datetime.now(UTC)
        down = server.wait_for("/api/status", lambda b: not b["broker"]["reachable"], timeout=30.0)
        since = datetime.fromisoformat(down["broker"]["unreachable_since"])
        assert stopped - timedelta(seconds=5) <= since <= stopped + timedelta(seconds=1)
        assert down["broker"]["unreachable_since"] == down["broker"]["last_heard"]
    finally:
        server.stop()
        broker.stop()


@pytest.mark.parametrize("args", [("demo", "--days", "1", "--scale", "0.001"), ("evaluate", "--days", "1")], ids=str)
def test_broker_that_cannot_start_is_one_line(nowhere: tuple[dict[str, str], str], args: tuple[str, ...]) -> None:
    env, _ = nowhere
    done, seconds = run({**env, "CALF_TANSU_BIN": "/nonexistent/tansu"}, *args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "error: cannot find the Tansu broker binary: CALF_TANSU_BIN='/nonexistent/tansu' does not point at an "
        "executable file."
    ]
    assert seconds < BOUND


@pytest.mark.slow
def test_evaluate_against_no_broker_is_one_line(nowhere: tuple[dict[str, str], str]) -> None:
    """`evaluate --broker` waits its own 30 s for the broker (harness.stack), then says so in one line."""
    env, address = nowhere
    done, seconds = run(env, "evaluate", "--broker", f"kafka://{address}", "--days", "1", "--scale", "0.001")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"error: cannot reach the Kafka broker at {address} (is `shekara up` running?)"]
    assert seconds < 60


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(("level", "shown"), [("WARNING", False), ("INFO", True), ("DEBUG", True)])
def test_librdkafka_logs_through_the_project_logger(level: str, shown: bool) -> None:
    """Every client's lines go to `shekara.kafka`, throttled; silent at the default level."""
    from confluent_kafka import Consumer

    from shekara.broker_watch import Throttle
    from shekara.settings import Settings

    config = Settings(broker_url=f"kafka://127.0.0.1:{closed_port()}", log_level=level).kafka_config()
    logger = config["logger"]
    assert logger.name == "shekara.kafka"
    assert any(isinstance(f, Throttle) for f in logger.filters)
    kept, filters = _Keep(), logger.filters
    logger.filters = [Throttle()]  # a fresh one: the process's own may have seen refusals of other tests
    logger.addHandler(kept)
    records = kept.records
    try:
        consumer = Consumer({**config, "group.id": "shekara-unreachable-test"})
        consumer.subscribe(["nothing"])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            consumer.poll(0.1)
        consumer.close()
    finally:
        logger.removeHandler(kept)
        logger.filters = filters
    refused = [r for r in records if "Connect to" in r.getMessage()]
    if not shown:
        assert records == []
    else:
        assert len(refused) == 1, [r.getMessage() for r in records]  # about 40 refusals in 2 s: one line
