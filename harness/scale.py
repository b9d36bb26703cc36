"""A benchmark warehouse of 100 M crossings made from simulator traffic, and cached between runs.

1. **Base.** The traffic simulator (`harness.simulator`, anomalies on, data faults off) runs a year - the 52
   whole weeks before the current one - at a small scale, one worker process per core over its shards. Each
   shard's events also go through the stream processors' pure core (`streams.core.step`: the shell's loop
   without Kafka, watermark 6 h behind, deadlines fired from a time index, and at the end of the period),
   which yields the stays and alerts the processors would publish for that traffic.
2. **Landing.** Every record (crossings, registrations, status changes, stays, alerts) is encoded as the
   producers and processors send it (Avro single-object), keyed as they key it (the traveller key, made with
   the sink's pseudonym key) and stamped with the time it would be sent (a source event's publish time, a
   processor's output's watermark), and written by the sink's own batch code (`sinks.batch.plan_batch` +
   `sinks.writer.Warehouse.write`: validation and key check, staging, pseudonymisation, deadlines, dedup
   check, materialized views), batches of 100,000 messages; only Kafka is left out. A single rejected message
   fails the build.
3. **Scale-up.** Copy 0 is the base as landed. Copies 1..n-1 of the crossings, registrations, stays and alerts
   are ``INSERT ... SELECT`` from a snapshot of the base through the real tables, so the materialized views
   fill as they do from the sink: every id gets the suffix ``~<copy>`` (event, registration, stay and alert
   ids, evidence lists), every pseudonym (traveller, host, address key) becomes MD5 of (copy, key), and copy
   c moves by ``364 * (c mod years)`` days (52 weeks: same weekday, season within a day a year). The
   warehouse therefore holds `years` years, each one the simulated year overlaid (copies / years) times: the
   checkpoint, nationality, hourly, weekday and seasonal shares and the entry/exit balance are the
   simulator's exactly.

The result lives in a chDB directory under ``var/bench/`` named by `GENERATOR_VERSION`, the spec and the
period, with ``bench-meta.json`` written last: a later run of the same week reuses it.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from math import ceil
from pathlib import Path
from typing import Any, NamedTuple

from clickhouse_connect.driver.client import Client

from harness.simulator import FaultRates, SimulationConfig
from harness.simulator.export import ShardRun
from schemas.serde import Serde
from shekara.logs import get_logger
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import Settings
from sinks.batch import Intent, Message, batch_token, plan_batch, ranges_of
from sinks.clickhouse import chdb_path, connect, engine_owner, is_embedded
from sinks.framing import Framer
from sinks.migrate import migrate
from sinks.writer import Warehouse, routes
from streams.core.traveller import TravellerState, step
from streams.deadlines import DeadlineIndex

log = get_logger(__name__)

# Bump when anything below changes the rows made: cached warehouses of other versions are not reused.
GENERATOR_VERSION = 1
META_FILE = "bench-meta.json"
LATENESS = timedelta(hours=6)  # settings.allowed_lateness_seconds: the processors' watermark lag
LAND_BATCH = 100_000
INSERT_ROWS = 20_000_000  # rows per scale-up INSERT (several copies each)
YEAR_SHIFT_DAYS = 364  # 52 weeks

TABLES = ("crossings", "registrations", "status_changes", "stays", "alerts")
REPLICATED = ("crossings", "registrations", "stays", "alerts")  # what the dashboard reads (through its views)
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "crossings": ("event_id",),
    "registrations": ("event_id", "registration_id"),
    "stays": ("stay_id", "entry_event_id", "exit_event_id"),
    "alerts": ("alert_id",),
}
ID_LIST_COLUMNS = ("evidence_event_ids",)
KEY_COLUMNS = ("traveller_key", "host_key", "address_key")
AGGREGATES = ("daily_flows", "monthly_balance", "stay_outcomes", "registration_compliance", "alert_counts")
_KIND_TABLE = {"crossing": "crossings", "registration": "registrations", "status_change": "status_changes"}


@dataclass(frozen=True)
class WarehouseSpec:
    """What to build: a base simulation of `days` days at `scale`, copied up to `target_crossings`."""

    name: str  # "full", "quick", or a test's
    days: int
    scale: float
    target_crossings: int
    years: int = 2
    seed: int = 7
    start: date | None = None  # None: the `days` days before this week's Monday (Asia/Almaty calendar)

    def config(self, today: date, pseudonym_key: bytes) -> SimulationConfig:
        """The simulation, keying travellers with `pseudonym_key`: the sink's, so the alerts and stays computed here
        carry the traveller keys the sink derives for the facts."""
        return SimulationConfig(
            days=self.days,
            seed=self.seed,
            scale=self.scale,
            start=self.period_start(today),
            faults=FaultRates.none(),
            pseudonym_key=pseudonym_key,
        )

    def period_start(self, today: date) -> date:
        if self.start is not None:
            return self.start
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(days=self.days)

    def key(self, today: date) -> str:
        return (
            f"v{GENERATOR_VERSION}-{self.name}-{self.period_start(today).isoformat()}-{self.days}d"
            f"-s{self.scale:g}-seed{self.seed}-{self.target_crossings}-{self.years}y"
        )


FULL = WarehouseSpec("full", days=364, scale=0.01, target_crossings=100_000_000)
QUICK = WarehouseSpec("quick", days=364, scale=0.002, target_crossings=5_000_000)


@dataclass
class BuildReport:
    """How the warehouse was made (or found), for the printed result and docs."""

    key: str
    path: str
    reused: bool
    period: tuple[str, str]  # first and last day of the simulated year
    base: dict[str, int]  # rows per table after landing (copy 0)
    copies: int
    years: int
    totals: dict[str, int]  # rows per table after the scale-up
    simulated_events: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # landed per table, none rejected (or no build)
    core_steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # simulate+core, land, scale, optimise
    views_consistent: bool = False

    def describe(self) -> str:
        c = self.base.get("crossings", 0)
        return (
            f"{c:,} simulator crossings ({self.period[0]}..{self.period[1]}) x {self.copies} copies over "
            f"{self.years} year(s) = {self.totals.get('crossings', 0):,} crossings"
        )


# --- 1. base: simulator + processors' core, per shard (worker processes) ------------------------------------


class Outgoing(NamedTuple):
    """One message as its sender would produce it."""

    key: bytes  # the traveller key (what the producers and processors key by; the sink checks a source's)
    timestamp: int  # ms: the Kafka timestamp the message would get (the sink judges source events' times by it)
    value: bytes  # Avro single-object encoding


@dataclass
class ShardOutput:
    shard: int
    values: dict[str, list[Outgoing]]  # table -> messages in emission order
    events: int
    steps: int
    core_rejected: int


def simulate_shard(config: SimulationConfig, shard: int) -> ShardOutput:
    """One shard's traffic and what the processors' core makes of it, encoded as the sources send it."""
    run = ShardRun(config, shard)
    rules = load_rules(config.rules_path)
    checkpoints = load_checkpoints(config.checkpoints_path)
    serde = Serde(None)
    values: dict[str, list[Outgoing]] = {t: [] for t in TABLES}
    states: dict[str, TravellerState] = {}
    deadlines = DeadlineIndex()  # the shell's time-ordered index, one partition
    counts = Counter[str]()

    def apply(key: str, batch: list[Any], wm: datetime) -> None:
        state = states.get(key) or TravellerState.empty(key)
        r = step(state, batch, watermark=wm, emitted_time=wm, rules=rules, checkpoints=checkpoints)
        states[key] = r.state
        counts["steps"] += 1
        counts["rejected"] += len(r.rejected)
        k, ts = key.encode(), _ms(wm)  # the processors key their output by traveller and emit it at `wm`
        values["stays"].extend(Outgoing(k, ts, serde.encode(s, "")) for s in r.stays)
        values["alerts"].extend(Outgoing(k, ts, serde.encode(a, "")) for a in r.alerts)
        deadlines.set(key, r.next_due)

    def fire(wm: datetime) -> None:
        # A step may set a deadline that is already due: ask again until nothing is.
        while keys := deadlines.pop_due(wm):
            for k in keys:
                apply(k, [], wm)

    high: datetime | None = None
    for ev in run.events():
        counts["events"] += 1
        if ev.record is None:
            continue  # malformed payloads (none with faults off)
        # keyed and sent as the source sends it: the traveller key, at the publish time (late uploads: later)
        values[_KIND_TABLE[ev.kind]].append(Outgoing(ev.key, _ms(ev.publish_time), serde.encode(ev.record, "")))
        t = ev.record.event_time
        high = t if high is None or t > high else high
        wm = high - LATENESS
        fire(wm)
        apply(ev.key.decode(), [ev.record], wm)
    fire(run.end)  # the period is over: deadlines due by its end fire (the shell's wall-clock watermark)
    return ShardOutput(shard, values, counts["events"], counts["steps"], counts["rejected"])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(t: datetime) -> int:
    """A Kafka timestamp (whole ms since the epoch, as the client takes it) of an aware datetime."""
    return (t - _EPOCH) // timedelta(milliseconds=1)


def simulate_base(config: SimulationConfig, workers: int) -> list[ShardOutput]:
    shards = range(config.shards)
    if workers <= 1:
        return [simulate_shard(config, s) for s in shards]
    # spawn: this process may hold chDB and Kafka client threads, which a fork would copy half-alive.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(simulate_shard, config, s) for s in shards]
        return [f.result() for f in futures]


# --- 2. landing through the sink's batch code ---------------------------------------------------------------


def land(client: Client, settings: Settings, outputs: Sequence[ShardOutput]) -> tuple[dict[str, int], dict[str, int]]:
    """Write every shard's messages with the sink's framing and writer; returns the messages written and the rows
    staged, per table. Raises if the sink rejects (would dead-letter) any message: the base is the simulator's
    traffic, all of it."""
    framer = Framer(settings)
    warehouse = Warehouse(client, settings, framer.explain)
    # A shard is not a Kafka partition (its travellers' keys hash anywhere): the partition check is off here.
    warehouse.source_partitions = dict.fromkeys(warehouse.source_partitions, 0)
    warehouse.load_rules(load_rules(settings.rules_file), settings.rules_file.read_bytes())
    route = routes(settings)
    topic_of = {r.table: topic for topic, r in route.items()}
    staged, sent = Counter[str](), Counter[str]()
    for table in TABLES:  # stays after crossings, revisions of a stay in their order: as the sink sees them
        messages = [
            Message(topic_of[table], out.shard, offset, key, value, ts)
            for out in outputs
            for offset, (key, ts, value) in enumerate(out.values[table])
        ]
        for i in range(0, len(messages), LAND_BATCH):
            batch = messages[i : i + LAND_BATCH]
            ranges = ranges_of(batch)
            plan = plan_batch(batch, Intent(batch_token("bench-scale", ranges), ranges), route, framer)
            result = warehouse.write(plan)
            rejected = plan.rejected + result.rejected
            if rejected:
                reasons = Counter(f"{r.stage}: {r.reason}" for r in rejected).most_common(3)
                raise RuntimeError(f"the sink rejected {len(rejected)} of {len(batch)} {table} messages: {reasons}")
            sent[table] += len(batch)
            staged[table] += sum(t.staged for t in result.tables.values())
    return dict(sent), dict(staged)


# --- 3. scale-up ---------------------------------------------------------------------------------------------


def copy_select(client: Client, table: str, years: int) -> tuple[list[str], str]:
    """Columns and SELECT expressions of one copy (`_copy`) of a base row (from `bench_base_<table>`)."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}"
        " AND default_kind = '' ORDER BY position",
        parameters={"t": table},
    ).result_rows
    shift = f"({YEAR_SHIFT_DAYS} * (_copy % {years}))"
    names, exprs = [], []
    for name, ctype in rows:
        if name in ID_COLUMNS.get(table, ()):
            expr = f"if({name} = '', '', concat({name}, '~', toString(_copy)))"
        elif name in ID_LIST_COLUMNS:
            expr = f"arrayMap(x -> concat(x, '~', toString(_copy)), {name})"
        elif name in KEY_COLUMNS:
            expr = f"if({name} = '', '', lower(hex(MD5(concat(toString(_copy), '~', {name})))))"
        elif name == "_batch":
            expr = "concat('bench-copy-', toString(_copy))"
        elif "Date" in str(ctype):
            expr = f"subtractDays({name}, {shift})"
        else:
            expr = name
        names.append(name)
        exprs.append(expr)
    return names, ", ".join(exprs)


def scale_up(client: Client, copies: int, years: int) -> None:
    """Copies 1..copies-1 of the replicated tables, inserted through the tables (views fill as usual)."""
    for table in REPLICATED:
        base = f"bench_base_{table}"
        client.command(f"DROP TABLE IF EXISTS {base}")
        client.command(f"CREATE TABLE {base} AS {table}")
        client.command(f"INSERT INTO {base} SELECT * FROM {table}", settings={"insert_deduplicate": 0})
        rows = int(client.query(f"SELECT count() FROM {base}").result_rows[0][0])
        names, select = copy_select(client, table, years)
        step_copies = max(1, INSERT_ROWS // max(rows, 1))
        for c0 in range(1, copies, step_copies):
            c1 = min(copies, c0 + step_copies)
            client.command(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM {base}"
                f" ARRAY JOIN range({c0}, {c1}) AS _copy",
                settings={"insert_deduplicate": 0},
            )
            log.info("bench warehouse copies inserted", table=table, copies=f"{c0}..{c1 - 1}", of=copies)
        client.command(f"DROP TABLE {base}")


def optimise_aggregates(client: Client, wait_merges: float = 120.0) -> None:
    """Merge the views' tables as background merges would have by now, then let running merges finish."""
    for table in AGGREGATES:
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    deadline = time.monotonic() + wait_merges
    while time.monotonic() < deadline:
        running = client.query("SELECT count() FROM system.merges WHERE database = currentDatabase()").result_rows
        if not running[0][0]:
            return
        time.sleep(2)


def table_counts(client: Client) -> dict[str, int]:
    return {t: int(client.query(f"SELECT count() FROM {t}").result_rows[0][0]) for t in TABLES}


def views_consistent(client: Client) -> bool:
    """Every view holds exactly what its fact table says (the checks `tests/test_sink_bench.py` makes)."""
    q = client.query(
        """
        SELECT
            (SELECT sum(crossings) FROM daily_flows) = (SELECT count() FROM crossings),
            (SELECT sum(entries) FROM monthly_balance) = (SELECT countIf(direction = 'ENTRY') FROM crossings),
            (SELECT sum(exits) FROM monthly_balance) = (SELECT countIf(direction = 'EXIT') FROM crossings),
            (SELECT sum(registrations) FROM registration_compliance)
                = (SELECT countIf(action = 'REGISTERED') FROM registrations),
            (SELECT sum(alerts) FROM alert_counts) = (SELECT count() FROM alerts),
            (SELECT sum(stays) FROM stay_outcomes)
                = (SELECT countIf(outcome IN ('OPEN', 'ON_TIME', 'LATE') AND allowed_until IS NOT NULL)
                   FROM stays FINAL)
        """
    ).result_rows[0]
    return all(bool(v) for v in q)


# --- the cached warehouse ------------------------------------------------------------------------------------


def build(client: Client, settings: Settings, spec: WarehouseSpec, *, today: date, workers: int) -> BuildReport:
    """Make the warehouse in the (migrated, empty) database `client` points at."""
    config = spec.config(today, settings.pseudonym_key_bytes)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    outputs = simulate_base(config, workers)
    seconds["simulate_and_core"] = time.monotonic() - started
    log.info(
        "bench base simulated", seconds=round(seconds["simulate_and_core"], 1), events=sum(o.events for o in outputs)
    )
    started = time.monotonic()
    sent, staged = land(client, settings, outputs)
    seconds["land_through_sink_writer"] = time.monotonic() - started
    base = table_counts(client)
    if base["crossings"] != staged.get("crossings"):
        raise RuntimeError(f"landed {base} but the sink staged {staged}")
    copies = max(1, ceil(spec.target_crossings / max(base["crossings"], 1)))
    started = time.monotonic()
    scale_up(client, copies, spec.years)
    seconds["scale_up"] = time.monotonic() - started
    started = time.monotonic()
    optimise_aggregates(client)
    seconds["optimise_views"] = time.monotonic() - started
    end = config.start + timedelta(days=config.days - 1)
    return BuildReport(
        key=spec.key(today),
        path="",
        reused=False,
        period=(config.start.isoformat(), end.isoformat()),
        base=base,
        copies=copies,
        years=spec.years,
        totals=table_counts(client),
        simulated_events=sum(o.events for o in outputs),
        messages=sent,
        core_steps=sum(o.steps for o in outputs),
        seconds={k: round(v, 1) for k, v in seconds.items()},
        views_consistent=views_consistent(client),
    )


def cache_root(settings: Settings) -> Path:
    return settings.data_dir / "bench"


def cached_warehouse(
    settings: Settings, spec: WarehouseSpec, cache: Path, *, today: date | None = None, workers: int | None = None
) -> tuple[Settings, BuildReport]:
    """Settings pointing at the spec's warehouse, built unless a finished one for this week is under `cache`.

    Embedded mode only: the warehouse is a chDB directory ``<cache>/sink-warehouse-<key>``. Older directories
    of the same spec name are removed when a new one is built (each is several GB).
    """
    if not is_embedded(settings):
        raise RuntimeError("the cached benchmark warehouse is a chDB directory: run the bench in embedded mode")
    today = today or datetime.now(UTC).date()
    key = spec.key(today)
    path = cache / f"sink-warehouse-{key}"
    bench_settings = settings.model_copy(update={"clickhouse_dsn": f"chdb://{path}"})
    meta = path / META_FILE
    if meta.exists():
        report = BuildReport(**json.loads(meta.read_text()))
        report.reused, report.path = True, str(path)
        report.period = (report.period[0], report.period[1])
        return bench_settings, report
    if engine_owner(bench_settings).other:
        raise RuntimeError(f"{path} is in use by another process (another bench?)")
    for stale in cache.glob(f"sink-warehouse-v*-{spec.name}-*"):
        if stale != path and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)  # an unfinished build (no meta file)
    path.mkdir(parents=True)
    client = connect(bench_settings)
    try:
        migrate(client)
        report = build(client, bench_settings, spec, today=today, workers=workers or _workers())
    finally:
        client.close()
    report.path = str(chdb_path(bench_settings))
    meta.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return bench_settings, report


def _workers() -> int:
    import os

    return max(1, min(4, os.cpu_count() or 1))
