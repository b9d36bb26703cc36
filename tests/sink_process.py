"""A `shekara sink` process of a test's own, for tests that drive it from outside (analyst attacks, BI clients)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shekara.settings import Settings
from sinks.clickhouse import query_endpoint_file


@contextmanager
def sink_process(
    settings: Settings, log_dir: Path, extra: dict[str, str], wait: float = 60.0
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """Start the sink with `settings`' broker, data dir, warehouse and topics (plus `extra` environment), wait for
    its query endpoint file, and stop it afterwards; yields the process and its environment.

    The sink has a consumer group of its own: a member of the shared default group that the embedded broker does
    not see leave would hold the next test's sink in a rebalance until its session times out.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    env |= {
        "SHEKARA_BROKER_URL": settings.broker_url,
        "SHEKARA_DATA_DIR": str(settings.data_dir),
        "SHEKARA_CLICKHOUSE_DSN": settings.clickhouse_dsn,
        "SHEKARA_SINK__GROUP_ID": f"shekara-sink-{uuid.uuid4().hex[:8]}",
        **{f"SHEKARA_TOPICS__{k.upper()}": v for k, v in settings.topics.model_dump().items()},
        **extra,
    }
    log = (log_dir / "sink.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "sink"], env=env, stdout=log, stderr=log)
    endpoint = query_endpoint_file(settings)
    deadline = time.monotonic() + wait
    while not endpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert endpoint.exists(), (log_dir / "sink.log").read_text()
        yield process, env
    finally:
        process.terminate()
        process.wait(30)
        log.close()
