"""Clear data at rest around the sink: a sink killed mid-batch leaves no clear records behind once it restarts,
and what exists while it runs is owner-only (the chDB directory 0700, its scratch files 0600 in a 0700 directory).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness import samples
from schemas.serde import Serde
from shekara.pseudonym import partition_key
from shekara.settings import Settings
from sinks.clickhouse import chdb_path, connect, scratch_dir
from sinks.migrate import migrate

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_chdb_drivers_temp_files_go_to_the_private_scratch_directory(settings: Settings) -> None:
    from clickhouse_connect.driver._backend import chdb_backend

    client = connect(settings)
    try:
        scratch = scratch_dir(settings)
        assert mode(chdb_path(settings)) == 0o700 and mode(scratch) == 0o700
        with chdb_backend.tempfile.NamedTemporaryFile(suffix=".raw") as tmp:
            assert Path(tmp.name).parent == scratch and mode(Path(tmp.name)) == 0o600
        migrate(client)  # inserts through the driver's temp files (schema_migrations): they are gone after
        assert list(scratch.iterdir()) == []
    finally:
        client.close()


def test_a_looser_warehouse_directory_is_tightened(settings: Settings) -> None:
    path = chdb_path(settings)
    path.mkdir(parents=True)
    os.chmod(path, 0o755)
    connect(settings).close()
    assert mode(path) == 0o700


def _publish_crossings(settings: Settings, n: int) -> None:
    serde = Serde.from_settings(settings)
    topic = settings.topics.crossings
    producer = Producer({**settings.kafka_config(), "linger.ms": 50})
    for c in samples.traffic(n, start=datetime.now(UTC) - timedelta(days=1)):
        key = partition_key(c.traveller.document.issuing_country, c.traveller.document.number)
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=serde.encode(c, topic))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _sink_env(settings: Settings, tmpdir: Path) -> dict[str, str]:
    topics = {f"SHEKARA_TOPICS__{k.upper()}": v for k, v in settings.topics.model_dump().items()}
    return {
        **os.environ,
        **topics,
        "TMPDIR": str(tmpdir),
        "SHEKARA_BROKER_URL": settings.broker_url,
        "SHEKARA_DATA_DIR": str(settings.data_dir),
        "SHEKARA_CLICKHOUSE_DSN": settings.clickhouse_dsn,
        "SHEKARA_PARTITIONS": str(settings.partitions),
        "SHEKARA_SINK__GROUP_ID": f"at-rest-{settings.topics.crossings}",
    }


@pytest.mark.slow
def test_a_sink_killed_mid_batch_leaves_no_clear_records(settings: Settings, tmp_path: Path) -> None:
    _publish_crossings(settings, 60_000)
    tmpdir = tmp_path / "tmp"  # the process's TMPDIR: the driver used to write its batches here
    tmpdir.mkdir()
    scratch = scratch_dir(settings)
    sink = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sink"],
        env=_sink_env(settings, tmpdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[str, int] = {}

    def staging() -> bool:  # a batch of the sink's (an Avro container, ``.raw``) is being written or read
        return any(name.endswith(".raw") and size > 1_000_000 for name, size in seen.items())

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not staging():
            try:
                seen = {p.name: p.stat().st_size for p in scratch.iterdir()}
                modes = {mode(p) for p in scratch.iterdir()}
            except FileNotFoundError:  # not created yet, or the file went between listing and stat
                continue
            assert modes <= {0o600}, "a scratch file readable by others"
            time.sleep(0.002)
        assert staging(), f"no batch seen in the scratch directory: {seen}"
        assert mode(scratch) == 0o700 and mode(chdb_path(settings)) == 0o700
    finally:
        sink.send_signal(signal.SIGKILL)
        sink.wait()
    # The kill left the batch being staged (clear document numbers) where the sink put it, and nothing elsewhere.
    left = [p for p in scratch.iterdir() if p.suffix == ".raw"]
    if left:
        assert b"kz.shekara.Crossing" in left[0].read_bytes()
    else:  # the kill came just after ClickHouse read the file: leave one as it would have been
        (scratch / "tmpkilled.raw").write_bytes(b"Obj\x01 kz.shekara.Crossing")
    assert list(tmpdir.iterdir()) == []
    # ClickHouse's own leftovers of a kill: a part being written, a spill file.
    table_dir = next(p for p in (chdb_path(settings) / "store").glob("*/*") if p.is_dir())
    (table_dir / "tmp_insert_202612_99_99_0").mkdir()
    (table_dir / "tmp_insert_202612_99_99_0" / "data.bin").write_bytes(b"clear")
    (chdb_path(settings) / "tmp" / "tmp_spill_1").write_bytes(b"clear")

    client = connect(settings)  # the next start of the warehouse, as a restarted sink does first
    try:
        assert list(scratch.iterdir()) == []
        assert not (table_dir / "tmp_insert_202612_99_99_0").exists()
        assert not (chdb_path(settings) / "tmp" / "tmp_spill_1").exists()
    finally:
        client.close()
