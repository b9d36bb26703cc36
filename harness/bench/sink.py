"""Benchmarks of the sink and the warehouse, each beside a baseline measured in the same run.

1. Sink throughput: rows/s from Kafka into ClickHouse through `run_sink` (staging, pseudonymisation, dedup
   check, materialized views), against (a) a raw ``client.insert`` of the same rows pre-built in Python into a
   copy of the table without views, and (b) a bare confluent-kafka consume loop over the same messages.
2. Dashboard queries: p95 latency (20 warm runs; quick: 10) of every query of `shekara report` over a warehouse
   of at least 100 M crossings (quick: 5 M), against the daily-flows chart computed from the fact table
   instead of its view. The warehouse is simulator traffic landed by the sink's writer and copied up inside
   ClickHouse (`harness.scale`: how, exactly), cached under ``var/bench/`` and reused by later runs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from harness import samples
from harness.bench import BenchResult
from harness.scale import FULL, QUICK, WarehouseSpec, cache_root, cached_warehouse
from schemas.serde import Serde
from shekara.admin import ensure_topics, wait_for_broker
from shekara.logs import get_logger
from shekara.pseudonym import partition_key
from shekara.settings import Settings, TopicNames, get_settings
from sinks.analyst import Reader, saved_queries
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.report import DASHBOARD
from sinks.sink import run_sink

log = get_logger(__name__)
QUERY_TARGET_MS = 1000.0
SINK_TARGET = 100_000.0


def run(settings: Settings, quick: bool) -> list[BenchResult]:
    """Both benchmarks on a throw-away warehouse (a temp chDB directory) and throw-away topics."""
    with tempfile.TemporaryDirectory(prefix="shekara-sink-bench-") as tmp:
        bench = _bench_settings(settings, Path(tmp))
        results = sink_throughput(bench, 300_000 if quick else 2_000_000)
        results += dashboard_latency(bench, QUICK if quick else FULL, repeats=10 if quick else 20)
    return results


def _bench_settings(settings: Settings, tmp: Path) -> Settings:
    suffix = "bench-" + uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}.{suffix}" for k, v in settings.topics.model_dump().items()})
    sink = settings.sink.model_copy(update={"group_id": f"shekara-sink-{suffix}", "batch_size": 100_000})
    dsn = settings.clickhouse_dsn if not settings.clickhouse_dsn.startswith("chdb:") else f"chdb://{tmp / 'ch'}"
    return settings.model_copy(
        update={"topics": topics, "sink": sink, "clickhouse_dsn": dsn, "data_dir": tmp / "var", "partitions": 4}
    )


# --- 1. sink throughput ---------------------------------------------------------------------------------------


def sink_throughput(settings: Settings, n: int) -> list[BenchResult]:
    wait_for_broker(settings)
    ensure_topics(settings)
    topic = settings.topics.crossings
    serde = Serde.from_settings(settings)
    crossings = list(samples.traffic(n, start=datetime.now(UTC) - timedelta(days=1)))
    values = [serde.encode(c, topic) for c in crossings]
    # Keyed as the producers key them: the sink dead-letters a source event whose key is not its partition key.
    keys = [partition_key(c.traveller.document.issuing_country, c.traveller.document.number) for c in crossings]
    producer = Producer({**settings.kafka_config(), "linger.ms": 50, "batch.num.messages": 10000})
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError("benchmark messages were not all delivered")

    consume_rate = _bare_consume_rate(settings, topic, n)
    insert_rate = _raw_insert_rate(settings, crossings, keys)
    stats = run_sink(settings, once=True)
    if stats.staged.get("crossings") != n or stats.dead_lettered:
        raise RuntimeError(
            f"the sink stored {stats.staged} of {n} crossings, dead-lettered {stats.dead_lettered}: benchmark invalid"
        )
    rate = n / stats.active_seconds
    details = {
        "rows": n,
        "batches": stats.batches,
        "sink_active_seconds": round(stats.active_seconds, 2),
        "sink_wall_seconds_with_group_join_and_migrations": round(stats.seconds, 2),
        "bare_consume_rows_per_s": round(consume_rate),
        "raw_insert_rows_per_s": round(insert_rate),
    }
    target = f">= {SINK_TARGET:,.0f} rows/s"
    return [
        BenchResult(
            "sink",
            "rows/s from Kafka into ClickHouse (crossings: stage, pseudonymise, dedup, 2 views)",
            rate,
            "rows/s",
            "raw client.insert of the same pre-built rows (no views, no dedup, no Kafka)",
            insert_rate,
            target,
            details,
        ),
        BenchResult(
            "sink",
            "rows/s from Kafka into ClickHouse vs consuming alone",
            rate,
            "rows/s",
            "bare confluent-kafka consume loop over the same messages",
            consume_rate,
            target,
            details,
        ),
    ]


def _bare_consume_rate(settings: Settings, topic: str, n: int) -> float:
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": int(settings.faust.session_timeout * 1000),
            "max.poll.interval.ms": int(settings.faust.max_poll_interval * 1000),
            "fetch.max.bytes": 100 * 1024 * 1024,
            "max.partition.fetch.bytes": 10 * 1024 * 1024,
            "queued.min.messages": 200_000,
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.subscribe([topic])
    seen, first = 0, None
    deadline = time.monotonic() + 300
    try:
        while seen < n and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                        log.warning("bench consumer error", error=str(m.error()))
                    continue
                if first is None:
                    first = time.monotonic()
                m.value()
                seen += 1
    finally:
        consumer.close()
    if first is None or seen < n:
        raise RuntimeError(f"bare consumer read {seen} of {n} messages")
    return n / (time.monotonic() - first)


def _raw_insert_rate(settings: Settings, crossings: list[Any], keys: list[str]) -> float:
    """Rows built in Python (pseudonym included, not timed), then only `client.insert`, in sink-sized batches."""
    columns = ["event_id", "event_time", "received_time", "event_date", "checkpoint_id", "checkpoint_kind"]
    columns += ["border_country", "direction", "traveller_key", "nationality", "birth_year", "sex", "purpose"]
    columns += ["entry_basis", "conveyance_kind", "source_system", "_batch"]
    rows = [
        [
            c.event_id,
            c.event_time,
            c.received_time,
            c.event_time.date(),
            c.checkpoint.id,
            c.checkpoint.kind.value,
            c.checkpoint.border_country or "",
            c.direction.value,
            key,
            c.traveller.nationality,
            c.traveller.birth_date.year,
            c.traveller.sex.value,
            c.purpose.value,
            c.entry_basis.kind.value,
            c.conveyance.kind.value if c.conveyance else "",
            c.source_system,
            "raw",
        ]
        for c, key in zip(crossings, keys, strict=True)
    ]
    client = connect(settings)
    try:
        migrate(client)
        client.command("CREATE TABLE IF NOT EXISTS bench_raw_crossings AS crossings")  # same table, no views
        batch = settings.sink.batch_size
        started = time.monotonic()
        for i in range(0, len(rows), batch):
            # As the sink inserts (`Warehouse._transform`): without collapsing each block again on insert.
            client.insert(
                "bench_raw_crossings", rows[i : i + batch], column_names=columns, settings={"optimize_on_insert": 0}
            )
        elapsed = time.monotonic() - started
        client.command("DROP TABLE bench_raw_crossings")
    finally:
        client.close()
    return len(rows) / elapsed


# --- 2. dashboard query latency -------------------------------------------------------------------------------


def dashboard_latency(settings: Settings, spec: WarehouseSpec, repeats: int) -> list[BenchResult]:
    """p95 of every dashboard query over the simulator-made warehouse of `spec` (built or reused, see
    `harness.scale`), beside the daily-flows chart computed from the fact table instead of its view."""
    started = time.monotonic()
    warehouse, report = cached_warehouse(settings, spec, cache_root(get_settings()))
    prepared = time.monotonic() - started
    how = report.describe()
    details: dict[str, Any] = {
        "warehouse": how,
        "reused": report.reused,
        "cache": report.path,
        "prepare_seconds": round(prepared, 1),
        "build": asdict(report),
        "repeats": repeats,
    }
    catalogue = saved_queries()
    baseline_sql = (
        "SELECT event_date AS day, countIf(direction = 'ENTRY') AS entries, countIf(direction = 'EXIT') AS exits"
        " FROM crossings WHERE event_date > toDate(now(), 'Asia/Almaty') - 30 GROUP BY day ORDER BY day"
    )
    status = f"reused {Path(report.path).name}" if report.reused else f"built in {prepared:.0f} s"
    results = [
        BenchResult(
            "query",
            f"warehouse ({status}): {how}; stays {report.totals.get('stays', 0):,}, registrations "
            f"{report.totals.get('registrations', 0):,}, alerts {report.totals.get('alerts', 0):,}; views "
            f"{'consistent' if report.views_consistent else 'INCONSISTENT'}",
            prepared,
            "s",
            target="generated once, reused while the simulated year is current",
            details=details,
        )
    ]
    with Reader(warehouse) as reader:  # one connection, as a dashboard refresh uses
        baseline, _ = _p95(lambda: reader.raw(baseline_sql, "JSONCompact"), repeats)
        for panel in DASHBOARD:
            q = catalogue[panel.query]
            args = q.arguments({k: str(v) for k, v in panel.params.items()})
            p95, times = _p95(lambda q=q, args=args: reader.raw(q.sql, "JSONCompact", args), repeats)
            verdict = "PASS" if p95 < QUERY_TARGET_MS else "MISS"
            results.append(
                BenchResult(
                    "query",
                    f"p95 of dashboard query {q.name} ({repeats} warm runs) over {report.totals['crossings']:,}"
                    " crossings",
                    p95,
                    "ms",
                    "daily flows from the crossings fact table (no view), p95",
                    baseline,
                    f"< {QUERY_TARGET_MS:.0f} ms: {verdict}",
                    {**details, "verdict": verdict, "median_ms": round(statistics.median(times), 2)},
                )
            )
    return results


def _p95(run_once: Any, repeats: int) -> tuple[float, list[float]]:
    run_once()  # warm caches, as a dashboard refresh would find them
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_once()
        times.append((time.perf_counter() - started) * 1000)
    # inclusive: interpolated between the measured times, never extrapolated past the slowest one
    p95 = statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) >= 2 else times[0]
    return p95, times
