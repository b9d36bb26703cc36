"""Alert quality, measured end to end: simulated traffic -> real broker -> real workers -> alerts vs ground truth.

`run_evaluation` starts an embedded broker (or uses the one given), starts the workers as subprocesses,
publishes the simulator's traffic through the producer client (malformed payloads raw), waits until the
workers have committed everything, reads the output topics back and compares the **final alert set** (ids with
a RAISED record and no later RETRACTED one) with the simulator's expected alert ids. Both sides are restricted
to alerts due by a cutoff: the end of the simulated period less the allowed lateness (the watermark cannot pass
it) less a margin (a partition's last event comes a little before the end).

With `warehouse` (the default) a sink lands the output in ClickHouse (chDB) too, and the analysts' figures the
warehouse reports are compared exactly with the same figures worked out from the simulated events
(`harness.simulator.truth.figures`): daily entries and exits per checkpoint, open overstays per day, overstay
rates per month and nationality, registration compliance. Every difference is printed and makes the run
incomplete. Days whose overstays the watermark cannot have judged yet (after the cutoff) are not compared.

With `crash_after=N`, worker 0 is killed with SIGKILL once the group has committed N source events and a new
worker is started in its place: the output must still give the same final alerts and stays.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from harness import readback
from harness.scoring import ExpectedAlert, Score, expected_from_truth, score
from harness.simulator.truth import Figures, figures
from schemas.records import Alert, Stay
from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker, launch
from shekara.logs import get_logger
from shekara.rules import load_rules
from shekara.settings import Settings, TopicNames
from streams.worker import read_status, spawn_worker

log = get_logger(__name__)

DEFAULT_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class EvaluationConfig:
    days: int = 60
    seed: int = 7
    scale: float = 0.02
    start: date | None = None  # None: the simulator's default start
    faults: bool = True
    anomalies: bool = True
    workers: int = 1
    crash_after: int | None = None  # SIGKILL worker 0 after the group committed this many source events
    broker_url: str | None = None  # None: start an embedded broker
    partitions: int = 4
    margin: timedelta = DEFAULT_MARGIN
    timeout: float = 900.0  # seconds to wait for the workers to catch up
    speed: float | None = None  # simulated seconds per second while publishing (None: as fast as possible)
    warehouse: bool = True  # land the output in ClickHouse and score the analysts' figures too


@dataclass
class EvaluationReport:
    config: EvaluationConfig
    cutoff: datetime
    score: Score
    published: int
    malformed_expected: int
    dead_letters: int
    dead_letters_by_stage: dict[str, int]
    alert_records: int
    final_alerts: dict[str, Alert]
    stays: dict[str, Stay]
    crashes: int
    worker_events: list[int]  # source events each (last) worker process consumed, from its status file
    publish_seconds: float
    process_seconds: float
    notes: list[str] = field(default_factory=list)
    offsets_skipped: int = 0  # source offsets never delivered to a processor, over every worker process
    figure_sizes: dict[str, int] | None = None  # rows of each warehouse figure compared (None: not compared)
    figure_differences: list[str] = field(default_factory=list)  # warehouse vs truth, one line each
    figures: tuple[Figures, Figures] | None = None  # (truth, warehouse) when compared

    @property
    def rejected_input(self) -> int:
        """Messages refused as input (decode/validate): must equal the simulator's malformed payloads."""
        return self.dead_letters_by_stage.get("decode", 0) + self.dead_letters_by_stage.get("validate", 0)

    @property
    def complete(self) -> bool:
        """Every expected alert found, nothing spurious, every malformed payload and nothing else dead-lettered."""
        s = self.score
        return (
            s.missed == 0
            and s.spurious == 0
            and self.dead_letters == self.malformed_expected
            and self.offsets_skipped == 0
            and not self.figure_differences
        )

    def lines(self) -> list[str]:
        c = self.config
        out = [
            f"evaluation: {c.days} days, seed {c.seed}, scale {c.scale}, faults {'on' if c.faults else 'off'}, "
            f"{c.workers} worker(s), crash after: {c.crash_after if c.crash_after is not None else '-'}"
            + (f" (crashes: {self.crashes})" if c.crash_after is not None else "")
            + f"; source events consumed per worker: {self.worker_events}"
            + f"; source offsets never delivered: {self.offsets_skipped}",
            f"published {self.published:,} events in {self.publish_seconds:.1f} s; "
            f"all processed {self.process_seconds:.1f} s after publishing began",
            f"compared alerts due up to {self.cutoff:%Y-%m-%d %H:%M} UTC: end of the simulated period less the "
            f"allowed lateness and a margin of {c.margin}",
            "",
            f"{'type':26} {'expected':>9} {'found':>9} {'true pos':>9} {'missed':>9} {'spurious':>9}",
        ]
        for t in self.score.per_type:
            out.append(f"{t.type:26} {t.expected:9d} {t.found:9d} {t.true_positives:9d} {t.missed:9d} {t.spurious:9d}")
        total_e = sum(t.expected for t in self.score.per_type)
        total_f = sum(t.found for t in self.score.per_type)
        out.append(
            f"{'all':26} {total_e:9d} {total_f:9d} {self.score.true_positives:9d} "
            f"{self.score.missed:9d} {self.score.spurious:9d}"
        )
        out.append("")
        stages = ", ".join(f"{k}: {v}" for k, v in sorted(self.dead_letters_by_stage.items())) or "none"
        out.append(
            f"dead letters: {self.dead_letters} ({stages}); simulator's malformed payloads: {self.malformed_expected}"
        )
        out.append(f"stays: {len(self.stays)} (latest revisions); alert records on the topic: {self.alert_records}")
        for id_ in self.score.missed_ids[:10]:
            out.append(f"missed: {id_}")
        for id_ in self.score.spurious_ids[:10]:
            a = self.final_alerts.get(id_)
            out.append(f"spurious: {id_} {a.type if a else ''} {a.reason if a else ''}")
        out.extend(self.notes)
        out.extend(self.figure_lines())
        out.append(f"precision={self.score.precision:.3f} recall={self.score.recall:.3f}")
        return out

    def figure_lines(self) -> list[str]:
        if self.figure_sizes is None:
            return []
        sizes = "; ".join(f"{name}: {n}" for name, n in self.figure_sizes.items())
        diffs = self.figure_differences
        out = [f"warehouse figures against the truth ({sizes}): {len(diffs)} difference(s)"]
        out.extend(f"  {d}" for d in diffs[:30])
        if len(diffs) > 30:
            out.append(f"  ... and {len(diffs) - 30} more")
        return out


# --- the analysts' figures ---------------------------------------------------------------------------------


def compare_figures(truth: Figures, warehouse: Figures) -> list[str]:
    """Every key whose value differs between the truth and the warehouse, one line each (exact). Pure."""
    out: list[str] = []
    pairs: list[tuple[str, Mapping[Any, Any], Mapping[Any, Any]]] = [
        ("entries/exits (day, checkpoint, direction)", truth.flows, warehouse.flows),
        ("open overstays (as of day: travellers)", truth.open_overstays, warehouse.open_overstays),
        (
            f"overstay rates as of {truth.rates_as_of} (month, nationality: due, out, in)",
            truth.overstay_rates,
            warehouse.overstay_rates,
        ),
        (
            "registration compliance (month, region, host kind: filed, on time, late, no deadline)",
            truth.registrations,
            warehouse.registrations,
        ),
    ]
    for name, want, got in pairs:
        for k in sorted(set(want) | set(got), key=str):
            w, g = want.get(k), got.get(k)
            if w != g:
                out.append(f"{name} {_key(k)}: warehouse {g}, truth {w}")
    return out


def _key(k: Any) -> str:
    return " ".join(str(x) for x in k) if isinstance(k, tuple) else str(k)


def warehouse_figures(settings: Settings, as_of: list[date]) -> Figures:
    """The same figures as the warehouse reports them (its views and saved queries' sources)."""
    from sinks.clickhouse import connect

    client = connect(settings, readonly=True)
    try:
        q = client.query
        flows = {
            (d, cp, direction): int(n)
            for d, cp, direction, n in q(
                "SELECT day, checkpoint_id, direction, sum(crossings) FROM daily_flows"
                " GROUP BY ALL HAVING sum(crossings) > 0"
            ).result_rows
        }
        open_overstays = {
            d: int(
                q("SELECT sum(travellers) FROM open_overstays_at(as_of = {d:Date})", parameters={"d": d}).result_rows[
                    0
                ][0]
            )
            for d in as_of
        }
        last = max(as_of) if as_of else None
        rates = {}
        if last is not None:
            rates = {
                (m, nat): (int(due), int(out), int(inside))
                for m, nat, due, out, inside in q(
                    "SELECT expected_departure_month, nationality, expected_departures, out_of_country_overstays,"
                    " in_country_overstays FROM overstay_rates_at(as_of = {d:Date})",
                    parameters={"d": last},
                ).result_rows
            }
        regs = {
            (m, region, kind): (int(a), int(b), int(c), int(d))
            for m, region, kind, a, b, c, d in q(
                "SELECT month, region, host_kind, sum(registrations), sum(on_time), sum(late), sum(no_deadline)"
                " FROM registration_compliance GROUP BY ALL HAVING sum(registrations) > 0"
            ).result_rows
        }
    finally:
        client.close()
    return Figures(flows, open_overstays, rates, last, regs)


def figure_days(sim_config: Any, days: int, cutoff: datetime, rules: Any) -> list[date]:
    """The as-of days whose start the watermark has surely passed: the days after the first up to the cutoff."""
    out = []
    for i in range(1, days + 1):
        d = sim_config.start + timedelta(days=i)
        if rules.day_start(d) <= cutoff:
            out.append(d)
    return out


def truth_figures(sim_config: Any, as_of: list[date], end: datetime) -> Figures:
    """The figures of the simulated events (an independent generation of the same seed)."""
    from harness.simulator import Simulation

    rules = load_rules(sim_config.rules_path)
    events = (em.event for em in Simulation(sim_config).emissions() if em.event is not None)
    return figures(events, rules=rules, end=end, as_of=as_of)


# --- the simulator's side ---------------------------------------------------------------------------------


def simulation_config(config: EvaluationConfig, settings: Settings) -> Any:
    from harness.simulator import AnomalyRates, FaultRates, SimulationConfig

    kwargs: dict[str, Any] = {
        "days": config.days,
        "seed": config.seed,
        "scale": config.scale,
        "anomalies": AnomalyRates() if config.anomalies else AnomalyRates.none(),
        "faults": FaultRates() if config.faults else FaultRates.none(),
        "pseudonym_key": settings.pseudonym_key_bytes,
        "rules_path": settings.rules_file,
    }
    if config.start is not None:
        kwargs["start"] = config.start
    return SimulationConfig(**kwargs)


def ground_truth(sim_config: Any) -> tuple[list[ExpectedAlert], int]:
    """The simulator's expected alerts for the run (an independent generation of the same seed)."""
    from harness.simulator import Simulation

    return expected_from_truth(Simulation(sim_config).expected())


# --- the run --------------------------------------------------------------------------------------------------


class _Workers:
    """The worker subprocesses of one run, with the crash-and-restart of worker 0."""

    def __init__(self, settings: Settings, app_id: str, count: int, work_dir: Path) -> None:
        self.settings = settings
        self.app_id = app_id
        self.work_dir = work_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.crashes = 0
        self.retired: list[dict[str, Any]] = []  # the last status of each worker killed
        for i in range(count):
            self.procs.append(self._spawn(i))

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        return spawn_worker(
            self.settings,
            app_id=self.app_id,
            status_file=self.work_dir / f"worker-{i}.json",
            log_path=self.work_dir / f"worker-{i}.log",
        )

    def kill_and_restart(self, i: int = 0) -> None:
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        status = read_status(self.work_dir / f"worker-{i}.json")
        if status is not None:
            self.retired.append(status)
        self.crashes += 1
        log.warning("worker killed with SIGKILL", worker=i, pid=proc.pid)
        self.procs[i] = self._spawn(i)

    def events(self) -> list[int]:
        out = []
        for i in range(len(self.procs)):
            status = read_status(self.work_dir / f"worker-{i}.json")
            out.append(int(status["events"]) if status else 0)
        return out

    def offsets_skipped(self) -> int:
        """Source offsets never delivered to a processor (`streams.positions`), in every worker process of the run."""
        current = [read_status(self.work_dir / f"worker-{i}.json") for i in range(len(self.procs))]
        return sum(int(st.get("offsets_skipped", 0)) for st in (*self.retired, *current) if st is not None)

    def check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                raise RuntimeError(f"worker {i} exited with code {p.returncode}; see {self.work_dir}/worker-{i}.log")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _crash_monitor(
    workers: _Workers, settings: Settings, topics: list[str], after: int, done: threading.Event
) -> threading.Thread:
    def watch() -> None:
        group = readback.GroupProgress(settings, workers.app_id, topics)
        while not done.is_set():
            try:
                progress = sum(group.committed().values())
            except Exception as exc:  # the broker may be busy; try again
                log.debug("crash monitor: cannot read offsets", error=str(exc))
                progress = 0
            if progress >= after:
                workers.kill_and_restart(0)
                break
            time.sleep(0.05)
        group.close()

    thread = threading.Thread(target=watch, name="crash-monitor", daemon=True)
    thread.start()
    return thread


def run_evaluation(
    config: EvaluationConfig,
    *,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Run the whole evaluation and return its report (see the module doc)."""
    from harness.simulator import publish

    say = progress or (lambda _line: None)
    own_dir = work_dir is None
    wd = Path(tempfile.mkdtemp(prefix="shekara-eval-")) if work_dir is None else work_dir
    wd.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | None = None
    workers: _Workers | None = None
    sink: Any = None  # harness.stack.Stack running the sink alone
    try:
        if config.broker_url is None:
            broker = launch(log_path=wd / "broker.log")
            broker_url = broker.url
        else:
            broker_url = config.broker_url
        run = uuid.uuid4().hex[:8]
        topics = TopicNames(**{k: f"{v}.eval-{run}" for k, v in TopicNames().model_dump().items()})
        settings = Settings(
            broker_url=broker_url,
            data_dir=wd / "var",
            clickhouse_dsn=f"chdb://{wd / 'clickhouse'}",  # a warehouse of the run's own, never the shared one
            partitions=config.partitions,
            topics=topics,
        )
        settings.faust.web_enabled = False
        wait_for_broker(settings)
        ensure_topics(settings)
        app_id = f"shekara-eval-{run}"
        sim_config = simulation_config(config, settings)

        say("computing the ground truth ...")
        expected, malformed = ground_truth(sim_config)

        say(f"starting {config.workers} worker(s) ...")
        workers = _Workers(settings, app_id, config.workers, wd)
        if config.warehouse:
            from harness.stack import Stack

            say("starting the ClickHouse sink ...")
            sink = Stack(settings, wd / "sink", workers=0, sink=True, embedded_broker=False)
            sink.start()
        sources = [topics.crossings, topics.registrations, topics.status_changes]
        done = threading.Event()
        monitor = None
        if config.crash_after is not None:
            monitor = _crash_monitor(workers, settings, sources, config.crash_after, done)

        say("publishing the simulated traffic ...")
        t0 = time.monotonic()
        summary = publish(sim_config, settings, speed=config.speed, progress=False)
        publish_seconds = time.monotonic() - t0
        published = _published_count(summary)

        say("waiting for the workers to catch up ...")
        if monitor is not None:
            monitor.join(timeout=config.timeout)
            if workers.crashes == 0:
                done.set()
                raise RuntimeError(
                    f"--crash-after {config.crash_after}: the workers never committed that many source events"
                )
        deadline = time.monotonic() + config.timeout
        # identity-links: renewals' handoffs are processed like source messages (streams.handoff)
        group = readback.GroupProgress(
            settings, app_id, [*sources, topics.address_registrations, topics.identity_links]
        )
        while True:
            workers.check_alive()
            try:
                group.wait_until_caught_up(timeout=5.0, settle=2.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        group.close()
        process_seconds = time.monotonic() - t0
        done.set()
        time.sleep(1.5)  # let every worker write its status once more
        if sink is not None:
            say("waiting for the sink to land everything ...")
            sink.wait_landed(timeout=config.timeout)
            sink.stop()  # releases the chDB directory for the figures' queries
            sink = None

        alerts = readback.read_alerts(settings)
        final = readback.final_alerts(alerts)
        stays = readback.read_stays(settings)
        # Dead letters are at-least-once like everything else: count each rejected source message once.
        letters = readback.read_dead_letters(settings)
        dead = {(d.source_topic, d.source_partition, d.source_offset): d.stage for d in letters}
        reasons = Counter(f"{d.stage}: {d.field or '-'}: {d.reason[:90]}" for d in letters)
        rules = load_rules(settings.rules_file)
        end = rules.day_start(sim_config.start + timedelta(days=config.days))
        cutoff = end - timedelta(seconds=settings.allowed_lateness_seconds) - config.margin
        report = EvaluationReport(
            config=config,
            cutoff=cutoff.astimezone(UTC),
            score=score(expected, final, cutoff),
            published=published,
            malformed_expected=malformed,
            dead_letters=len(dead),
            dead_letters_by_stage=dict(Counter(dead.values())),
            alert_records=len(alerts),
            final_alerts=final,
            stays=stays,
            crashes=workers.crashes,
            worker_events=workers.events(),
            offsets_skipped=workers.offsets_skipped(),
            publish_seconds=publish_seconds,
            process_seconds=process_seconds,
            notes=[f"dead letters {n:6d} x {why}" for why, n in reasons.most_common(20)],
        )
        if config.warehouse:
            say("comparing the warehouse's figures with the truth ...")
            days = figure_days(sim_config, config.days, cutoff, rules)
            truth = truth_figures(sim_config, days, end)
            found = warehouse_figures(settings, days)
            report.figures = (truth, found)
            report.figure_sizes = truth.sizes()
            report.figure_differences = compare_figures(truth, found)
        return report
    finally:
        if sink is not None:
            sink.stop()
        if workers is not None:
            workers.stop()
        if broker is not None:
            broker.stop()
        if own_dir:
            shutil.rmtree(wd, ignore_errors=True)


def _published_count(summary: Any) -> int:
    messages = getattr(summary, "messages", 0)
    return messages if isinstance(messages, int) else 0


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    days: Annotated[int, typer.Option(min=1, help="Simulated days")] = 60,
    seed: Annotated[int, typer.Option(help="Simulator seed")] = 7,
    scale: Annotated[float, typer.Option(help="Traffic scale (1.0 = about 190,000 crossings a day)")] = 0.02,
    faults: Annotated[
        bool, typer.Option("--faults/--no-faults", help="Late, out-of-order, duplicate, malformed")
    ] = True,
    crash_after: Annotated[
        int | None, typer.Option(help="SIGKILL worker 0 once the group committed N source events, then restart it")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    broker: Annotated[
        str | None, typer.Option(help="Use this broker (kafka://host:port) instead of an embedded one")
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="Where logs and state go (default: a temp dir)")] = None,
    warehouse: Annotated[
        bool,
        typer.Option(
            "--warehouse/--no-warehouse", help="Land the output in ClickHouse and score the analysts' figures"
        ),
    ] = True,
) -> None:
    """Run simulated traffic through the real broker and workers (and the sink); compare the alerts and the
    warehouse's figures with the ground truth."""
    config = EvaluationConfig(
        days=days,
        seed=seed,
        scale=scale,
        faults=faults,
        crash_after=crash_after,
        workers=workers,
        broker_url=broker,
        warehouse=warehouse,
    )
    report = run_evaluation(config, work_dir=work_dir, progress=lambda line: typer.echo(line, err=True))
    for line in report.lines():
        typer.echo(line)
    if not report.complete:
        raise typer.Exit(1)
