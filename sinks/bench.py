"""Benchmarks of the sink and the warehouse, each beside a baseline measured in the same run.

1. Sink throughput: rows/s from Kafka into ClickHouse through `run_sink` (staging, pseudonymisation, dedup
   check, materialized views), against (a) a raw ``client.insert`` of the same rows pre-built in Python into a
   copy of the table without views, and (b) a bare confluent-kafka consume loop over the same messages.
2. Dashboard queries: p95 latency of every query of `shekara report` over a warehouse with 100 M crossings
   (quick: 2 M), against the daily-flows chart computed from the fact table instead of its view. Those rows
   are generated inside ClickHouse (``INSERT ... SELECT FROM numbers()``) with the traffic shape of
   `sinks.samples` (checkpoint capacities, nationality weights from domain.md), spread over a year; the
   views fill as they would from the sink.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, Producer

from schemas.serde import Serde
from shekara.admin import ensure_topics, wait_for_broker
from shekara.bench import BenchResult
from shekara.logs import get_logger
from shekara.pseudonym import traveller_key
from shekara.reference import load_checkpoints
from shekara.settings import Settings, TopicNames
from sinks import samples
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
        results += dashboard_latency(bench, 2_000_000 if quick else 100_000_000, repeats=5 if quick else 20)
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
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 50, "batch.num.messages": 10000})
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=str(i % 1009).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError("benchmark messages were not all delivered")

    consume_rate = _bare_consume_rate(settings, topic, n)
    insert_rate = _raw_insert_rate(settings, crossings)
    stats = run_sink(settings, once=True)
    if stats.staged.get("crossings") != n:
        raise RuntimeError(f"the sink stored {stats.staged} of {n} crossings: benchmark invalid")
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
            "bootstrap.servers": settings.bootstrap_servers,
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


def _raw_insert_rate(settings: Settings, crossings: list[Any]) -> float:
    """Rows built in Python (pseudonym included, not timed), then only `client.insert`, in sink-sized batches."""
    key = settings.pseudonym_key_bytes
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
            traveller_key(c.traveller.document.issuing_country, c.traveller.document.number, key),
            c.traveller.nationality,
            c.traveller.birth_date.year,
            c.traveller.sex.value,
            c.purpose.value,
            c.entry_basis.kind.value,
            c.conveyance.kind.value if c.conveyance else "",
            c.source_system,
            "raw",
        ]
        for c in crossings
    ]
    client = connect(settings)
    try:
        migrate(client)
        client.command("CREATE TABLE IF NOT EXISTS bench_raw_crossings AS crossings")  # same table, no views
        batch = settings.sink.batch_size
        started = time.monotonic()
        for i in range(0, len(rows), batch):
            client.insert("bench_raw_crossings", rows[i : i + batch], column_names=columns)
        elapsed = time.monotonic() - started
        client.command("DROP TABLE bench_raw_crossings")
    finally:
        client.close()
    return len(rows) / elapsed


# --- 2. dashboard query latency -------------------------------------------------------------------------------


def dashboard_latency(settings: Settings, n: int, repeats: int) -> list[BenchResult]:
    client = connect(settings)
    try:
        migrate(client)
        started = time.monotonic()
        generate_warehouse(client, n)
        generated = time.monotonic() - started
        total = int(client.query("SELECT count() FROM crossings").result_rows[0][0])
    finally:
        client.close()
    catalogue = saved_queries()
    baseline_sql = (
        "SELECT event_date AS day, countIf(direction = 'ENTRY') AS entries, countIf(direction = 'EXIT') AS exits"
        " FROM crossings WHERE event_date > toDate(now(), 'Asia/Almaty') - 30 GROUP BY day ORDER BY day"
    )
    results = []
    with Reader(settings) as reader:  # one connection, as a dashboard refresh uses
        baseline = _p95(lambda: reader.raw(baseline_sql, "JSONCompact"), repeats)
        for panel in DASHBOARD:
            q = catalogue[panel.query]
            args = q.arguments({k: str(v) for k, v in panel.params.items()})
            p95 = _p95(lambda q=q, args=args: reader.raw(q.sql, "JSONCompact", args), repeats)
            results.append(
                BenchResult(
                    "query",
                    f"p95 of dashboard query {q.name} over {total:,} crossings",
                    p95,
                    "ms",
                    "daily flows from the crossings fact table (no view), p95",
                    baseline,
                    f"< {QUERY_TARGET_MS:.0f} ms",
                    {"repeats": repeats, "crossings": total, "generate_seconds": round(generated, 1)},
                )
            )
    return results


def _p95(run_once: Any, repeats: int) -> float:
    run_once()  # warm caches, as a dashboard refresh would find them
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_once()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]


def generate_warehouse(client: Client, n: int, chunk: int = 10_000_000) -> None:
    """`n` crossings over the last 365 days, plus stays (n/4), registrations (n/20) and alerts (n/200).

    Rows go into an empty copy of each table and are attached as whole partitions; the views are then filled
    by running their own SELECT (read from system.tables) once over the table: the same contents as
    triggering them per insert block, in half the time.
    """
    cps = list(load_checkpoints().values())
    nats = list(samples.NATIONALITY_WEIGHTS)
    params: dict[str, Any] = {
        "cp_ids": [c.id for c in cps],
        "cp_kinds": [c.kind.value for c in cps],
        "cp_borders": [c.border_country or "" for c in cps],
        "cp_slots": _slots([float(c.daily_capacity) for c in cps]),
        "nats": nats,
        "nat_slots": _slots(list(samples.NATIONALITY_WEIGHTS.values())),
        "foreign_slots": _slots([0.0, *list(samples.NATIONALITY_WEIGHTS.values())[1:]]),  # KAZ is first: no limit
        "pool": max(1, n // 4),
    }
    for table, sql, rows in (
        ("crossings", _CROSSINGS_SQL, n),
        ("stays", _STAYS_SQL, n // 4),
        ("registrations", _REGISTRATIONS_SQL, n // 20),
        ("alerts", _ALERTS_SQL, n // 200),
    ):
        scratch = f"bench_load_{table}"
        client.command(f"DROP TABLE IF EXISTS {scratch}")
        client.command(f"CREATE TABLE {scratch} AS {table}")  # same structure, no views attached
        for start in range(0, rows, chunk):
            client.command(
                sql.replace("INSERT INTO table", f"INSERT INTO {scratch}"),
                parameters={**params, "start": start, "count": min(chunk, rows - start)},
            )
        partitions = client.query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = {t:String}"
            " AND active",
            parameters={"t": scratch},
        ).result_rows
        for (partition_id,) in partitions:
            client.command(f"ALTER TABLE {table} ATTACH PARTITION ID '{partition_id}' FROM {scratch}")
        client.command(f"DROP TABLE {scratch}")
        for view in VIEWS[table]:
            as_select, create = client.query(
                "SELECT as_select, create_table_query FROM system.tables"
                " WHERE database = currentDatabase() AND name = {v:String}",
                parameters={"v": view},
            ).result_rows[0]
            target = re.search(r"\bTO\s+(\S+)", str(create))
            if target is None:
                raise RuntimeError(f"cannot find the target table of view {view}")
            client.command(f"INSERT INTO {target.group(1)} {as_select}")


# The materialized views fed by each fact table (sinks/migrations/004_views.sql).
VIEWS = {
    "crossings": ("daily_flows_mv", "monthly_balance_mv"),
    "stays": ("stay_outcomes_mv",),
    "registrations": ("registration_compliance_mv",),
    "alerts": ("alert_counts_mv",),
}


SLOTS = 20_000


def _slots(weights: list[float]) -> list[int]:
    """A lookup table for weighted picks: slot k holds the 1-based index whose cumulative share covers k/SLOTS.

    O(1) per generated row instead of a search through the weights (a share below 1/SLOTS may get no slot).
    """
    total = sum(weights)
    bounds = [w / total for w in accumulate(weights)]
    out, i = [], 0
    for k in range(SLOTS):
        while i < len(bounds) - 1 and bounds[i] <= (k + 0.5) / SLOTS:
            i += 1
        out.append(i + 1)
    return out


# u(i, salt): a uniform number in [0, 1) from the row number, so the data is the same every run.
_U = "(cityHash64(number, {salt}) / 18446744073709551616.0)"


def _u(salt: int) -> str:
    return _U.replace("{salt}", str(salt))


_CROSSINGS_SQL = f"""
INSERT INTO table (event_id, event_time, received_time, event_date, checkpoint_id, checkpoint_kind, border_country,
    direction, traveller_key, document_type, issuing_country, nationality, birth_year, sex, purpose, entry_basis,
    has_migration_card, conveyance_kind, carrier, source_system, source_partition, source_offset, _batch)
SELECT
    concat('bench-', toString(number)),
    t,
    t + toIntervalSecond(1 + number % 90),
    toDate(t, 'Asia/Almaty'),
    {{cp_ids:Array(String)}}[cp],
    {{cp_kinds:Array(String)}}[cp],
    {{cp_borders:Array(String)}}[cp],
    if({_u(2)} < 0.505, 'ENTRY', 'EXIT'),
    lower(hex(MD5(toString(number % {{pool:UInt64}})))),
    'PASSPORT',
    nat,
    nat,
    1950 + number % 60,
    if({_u(3)} < 0.69, 'M', 'F'),
    ['WORK', 'PRIVATE', 'TOURISM', 'BUSINESS'][1 + number % 4],
    if(nat = 'KAZ', 'CITIZEN', 'VISA_FREE'),
    false,
    multiIf({{cp_kinds:Array(String)}}[cp] = 'AIR', 'FLIGHT', {{cp_kinds:Array(String)}}[cp] = 'RAIL', 'TRAIN', 'CAR'),
    '',
    'bench',
    number % 8,
    number,
    'bench'
FROM
(
    SELECT
        number,
        now64(3) - toIntervalMillisecond(toUInt64({_u(1)} * 365 * 86400000)) AS t,
        {{cp_slots:Array(UInt16)}}[1 + toUInt32({_u(4)} * {SLOTS})] AS cp,
        {{nats:Array(String)}}[{{nat_slots:Array(UInt16)}}[1 + toUInt32({_u(5)} * {SLOTS})]] AS nat
    FROM numbers({{start:UInt64}}, {{count:UInt64}})
)
"""

_STAYS_SQL = f"""
INSERT INTO table (stay_id, revision, traveller_key, nationality, entry_basis, purpose, entry_event_id, exit_event_id,
    entry_time, exit_time, anchor_date, entry_checkpoint, exit_checkpoint, days, allowed_days, days_over,
    allowed_until, outcome, rule_id, rule_version, _batch)
SELECT
    concat('stay-', toString(number)), 0, lower(hex(MD5(toString(number)))), nat, 'VISA_FREE', 'WORK',
    concat('bench-', toString(number)), if(left_at IS NULL, '', concat('x-', toString(number))),
    entry, left_at, toDate(entry, 'Asia/Almaty'), {{cp_ids:Array(String)}}[cp], '', stayed, allowed,
    greatest(0, stayed - allowed), until,
    multiIf(left_at IS NULL, 'OPEN', stayed > allowed, 'LATE', 'ON_TIME'), 'visa-free-general', '2023-01-27', 'bench'
FROM
(
    SELECT
        number,
        now64(3) - toIntervalMillisecond(toUInt64({_u(11)} * 365 * 86400000)) AS entry,
        if({_u(12)} < 0.8, 30, 90) AS allowed,
        toUInt32(1 + {_u(13)} * allowed * if({_u(14)} < 0.015, 1.5, 0.95)) AS stayed,
        entry + toIntervalDay(stayed) AS would_leave,
        if(would_leave > now64(3) OR {_u(15)} < 0.0125, NULL, would_leave) AS left_at,
        toDate32(toDate(entry, 'Asia/Almaty')) + (allowed - 1) AS until,
        {{cp_slots:Array(UInt16)}}[1 + toUInt32({_u(16)} * {SLOTS})] AS cp,
        {{nats:Array(String)}}[{{foreign_slots:Array(UInt16)}}[1 + toUInt32({_u(17)} * {SLOTS})]] AS nat
    FROM numbers({{start:UInt64}}, {{count:UInt64}})
)
"""

_REGISTRATIONS_SQL = f"""
INSERT INTO table (event_id, event_time, received_time, event_date, action, registration_id, traveller_key,
    nationality, birth_year, sex, host_kind, host_key, region, address_key, valid_from, valid_until, deadline,
    days_late, rule_id, source_system, _batch)
SELECT
    concat('reg-', toString(number)), filed, filed, toDate(filed, 'Asia/Almaty'), 'REGISTERED', toString(number),
    lower(hex(MD5(toString(number)))), 'UZB', 1980, 'M', ['HOTEL', 'PRIVATE_HOST', 'EMPLOYER'][1 + number % 3],
    lower(hex(MD5(concat('host', toString(number % 5000))))),
    ['KZ-75', 'KZ-71', 'KZ-61', 'KZ-79', 'KZ-19', 'KZ-31'][1 + number % 6],
    lower(hex(MD5(concat('addr', toString(number % 20000))))),
    arrival, arrival + 14, arrival + 5, if({_u(21)} < 0.1, 1 + number % 9, 0), 'host-registration', 'bench', 'bench'
FROM
(
    SELECT number, toDate32(today() - toUInt32({_u(22)} * 365)) AS arrival,
           toDateTime64(arrival, 3) + toIntervalHour(toUInt32(24 + {_u(23)} * 24 * 7)) AS filed
    FROM numbers({{start:UInt64}}, {{count:UInt64}})
)
"""

_ALERTS_SQL = f"""
INSERT INTO table (alert_id, action, type, severity, traveller_key, nationality, checkpoint_id, evidence_event_ids,
    rule_id, rule_version, reason, due_time, emitted_time, due_date, _batch)
SELECT
    concat('alert-', toString(number)), if({_u(31)} < 0.7, 'RAISED', 'RESOLVED'),
    ['IN_COUNTRY_OVERSTAY', 'OUT_OF_COUNTRY_OVERSTAY', 'UNREGISTERED_STAY', 'WINDOW_BREACH', 'DOUBLE_ENTRY',
     'IMPOSSIBLE_TRAVEL'][1 + toUInt32({_u(32)} * 6)],
    'HIGH', lower(hex(MD5(toString(number)))), 'UZB', '', [], 'bench', '1', 'bench', due, due,
    toDate(due, 'Asia/Almaty'), 'bench'
FROM (SELECT number, now64(3) - toIntervalMillisecond(toUInt64({_u(33)} * 90 * 86400000)) AS due
      FROM numbers({{start:UInt64}}, {{count:UInt64}}))
"""
