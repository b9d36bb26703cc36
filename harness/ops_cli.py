"""Operations commands: `shekara alerts` (the ops console, with `ack`, `assign` and `note` for triage),
`shekara notify` (alerts to a webhook, `sinks.notify`) and `shekara bench` (one report of every benchmark).

Thin shells: the alert lines come from `streams.console`, the triage states from `streams.triage` (kept on the
alert-actions topic, `streams.triage_topic`), the figures from each component's ``bench.run``.
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.bench import BenchResult
from schemas.records import Alert, AlertAction, AlertTriage, TriageAction
from shekara.logs import get_logger
from shekara.settings import Mode, Settings, TopicNames, get_settings
from streams.console import AlertFilter, alert_json, format_alert, format_rejected, parse_filter
from streams.triage import TriageBoard, TriageError, TriageRequest, validate

log = get_logger(__name__)


# --- alerts: tail the alerts topic ---------------------------------------------------------------------


@dataclass
class TailStats:
    shown: int = 0
    skipped: int = 0  # decoded but filtered out
    unreadable: int = 0


def tail_alerts(
    settings: Settings,
    *,
    on_alert: Callable[[Alert], None],
    on_unreadable: Callable[[int, int, str], None],
    alert_filter: AlertFilter | None = None,
    follow: bool = False,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    poll_timeout: float = 0.5,
) -> TailStats:
    """Read alert records from the alerts topic and hand the matching ones to `on_alert`.

    Without `follow`: the history, from the start of each partition to its end.
    With `follow`: new alerts only (or everything first, with `from_beginning`) until `stop` is set; `on_ready`
    is called once the consumer has caught up with the end of every partition.
    Partitions are assigned directly with no group membership and no offset commit: a console is a
    reader, it must neither take partitions from other consumers nor move anybody's offsets.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    from schemas.serde import DecodeError, Serde

    topic = settings.topics.alerts
    serde = Serde.from_settings(settings)
    alert_filter = alert_filter or AlertFilter()
    stop = stop or threading.Event()
    stats = TailStats()
    consumer = Consumer(
        {
            **settings.kafka_config(),
            # librdkafka wants a group id even for assign(); a unique one keeps consoles apart.
            "group.id": f"shekara-alerts-console-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(
                f"alerts topic {topic!r} does not exist on {settings.bootstrap_servers}: run `shekara topics`"
            )
        history = from_beginning or not follow
        # "New alerts only" starts at the end offset the broker reports, then skips to the first end-of-partition:
        # the embedded broker (Tansu) reports the last batch's base offset as the end, so a few older records
        # may come first. `on_ready` fires once every partition has reached its end: from then on nothing is missed.
        start = OFFSET_BEGINNING if history else OFFSET_END
        partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        caught_up: set[int] = set()
        while not stop.is_set():
            msg = consumer.poll(poll_timeout)
            if msg is None:
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("alerts consumer error", error=str(err))
                    continue
                if partition not in caught_up:
                    caught_up.add(partition)
                    if len(caught_up) == len(partitions):
                        if not follow:
                            break
                        if on_ready:
                            on_ready(len(partitions))
                continue
            if partition not in caught_up and not history:
                continue  # older than the start: not new
            try:
                record = serde.decode(msg.value() or b"", topic)
            except DecodeError as exc:
                stats.unreadable += 1
                on_unreadable(partition, offset, exc.reason)
                continue
            if not isinstance(record, Alert):
                stats.unreadable += 1
                on_unreadable(partition, offset, f"a {type(record).__name__} record, not an Alert")
                continue
            if not alert_filter.matches(record):
                stats.skipped += 1
                continue
            stats.shown += 1
            on_alert(record)
            if max_alerts is not None and stats.shown >= max_alerts:
                break
    finally:
        consumer.close()
    return stats


alerts_app = typer.Typer(
    help="Print alerts from the alerts topic; acknowledge, assign and annotate them (ack, assign, note).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def load_board(settings: Settings, err: Console | None = None) -> TriageBoard:
    """Every alert's triage state, read once from the alert-actions topic (empty, with a warning, if unreadable)."""
    from streams.triage_topic import TriageUnavailable, read_board

    board = TriageBoard()
    try:
        read_board(settings, board, client_id="shekara-alerts-console")
    except TriageUnavailable as exc:
        if err is not None:
            err.print(f"warning: triage not shown: {exc}", style="yellow")
    return board


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep running and print new alerts as they come")
    ] = False,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="With --follow: print the whole topic first, then new alerts")
    ] = False,
    alert_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Alert type(s), e.g. IN_COUNTRY_OVERSTAY; repeat or comma-separate"),
    ] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option("--severity", "-s", help="Severity(ies): LOW, MEDIUM, HIGH, CRITICAL; HIGH+ = HIGH and above"),
    ] = None,
    checkpoint: Annotated[
        list[str] | None, typer.Option("--checkpoint", "-c", help="Checkpoint id(s), e.g. KZ-UZ-ZHIBEK-ZHOLY")
    ] = None,
    max_alerts: Annotated[int | None, typer.Option("--max", help="Stop after this many alerts")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (with raised/due times and triage state)")
    ] = False,
) -> None:
    """Print alerts as coloured lines: due and raised times, what, who (whole key), where, why, evidence, triage."""
    if ctx.invoked_subcommand is not None:
        return
    from shekara.admin import require_broker
    from shekara.reference import load_checkpoints
    from shekara.rules import load_rules

    try:
        alert_filter = parse_filter(alert_type or [], severity or [], checkpoint or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = get_settings()
    require_broker(settings)
    tz = load_rules(settings.rules_file).timezone
    checkpoints = load_checkpoints()
    out, err = Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False)
    board = load_board(settings, err)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(partitions: int) -> None:
        if follow:
            err.print(f"following {settings.topics.alerts} ({partitions} partitions); Ctrl-C to stop", style="dim")

    def show(alert: Alert) -> None:
        state = board.get(alert.alert_id)
        if as_json:
            # Plain print: rich would wrap or mark up a JSON line.
            print(json.dumps(alert_json(alert, checkpoints, state), ensure_ascii=False), flush=True)
        else:
            out.print(format_alert(alert, tz=tz, checkpoints=checkpoints, triaged=state))

    try:
        stats = tail_alerts(
            settings,
            on_alert=show,
            on_unreadable=lambda p, o, reason: err.print(format_rejected(p, o, reason)),
            alert_filter=alert_filter,
            follow=follow,
            from_beginning=from_beginning,
            max_alerts=max_alerts,
            stop=stop,
            on_ready=ready,
        )
    except KeyboardInterrupt:
        return
    except RuntimeError as exc:
        err.print(f"error: {exc}", style="red")
        raise typer.Exit(2) from exc
    if not follow:
        err.print(
            f"{stats.shown} alerts shown, {stats.skipped} filtered out, {stats.unreadable} unreadable", style="dim"
        )


# --- alerts ack / assign / note: triage from the console ------------------------------------------------

MIN_ID_PREFIX = 8  # a shorter prefix of a sha256 id is too likely to be ambiguous


def find_alert(settings: Settings, given: str) -> Alert:
    """The RAISED record of the alert whose id is `given` or starts with it; TriageError if none or several."""
    wanted = given.strip().lower()
    if len(wanted) < MIN_ID_PREFIX:
        raise TriageError(f"alert id {given!r} is too short: give the whole id or at least {MIN_ID_PREFIX} characters")
    found: dict[str, Alert] = {}

    def keep(alert: Alert) -> None:
        if alert.alert_id.startswith(wanted) and (alert.alert_id not in found or alert.action is AlertAction.RAISED):
            found[alert.alert_id] = alert

    tail_alerts(settings, on_alert=keep, on_unreadable=lambda *_: None)
    if not found:
        raise TriageError(f"no alert with id {given!r} on {settings.topics.alerts} (see `shekara alerts`)")
    if len(found) > 1:
        raise TriageError(f"alert id {given!r} matches {len(found)} alerts: give more characters")
    return next(iter(found.values()))


def triage_command(
    settings: Settings, action: TriageAction, alert: str, who: str | None, **texts: str | None
) -> AlertTriage:
    """Validate, find the alert, apply the action to its current state and publish the new state."""
    from streams.triage_topic import TriagePublisher, read_board

    request = validate(
        TriageRequest(alert_id=alert, action=action, who=who or getpass.getuser(), **texts), settings.limits
    )
    found = find_alert(settings, request.alert_id)
    board = TriageBoard()
    read_board(settings, board, client_id="shekara-alerts-console")
    publisher = TriagePublisher(settings, client_id="shekara-alerts-console")
    return publisher.act(board, TriageRequest(found.alert_id, action, request.who, request.note, request.assignee))


def _run_triage(action: TriageAction, alert: str, who: str | None, **texts: str | None) -> None:
    from shekara.admin import require_broker
    from streams.triage import summary
    from streams.triage_topic import TriageUnavailable

    settings = get_settings()
    require_broker(settings)
    try:
        state = triage_command(settings, action, alert, who, **texts)
    except (TriageError, TriageUnavailable) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{state.alert_id}: {summary(state)} (revision {state.revision}, by {state.updated_by})")


AlertId = Annotated[str, typer.Argument(help="The alert id (as `shekara alerts` prints it) or a unique prefix")]
Note = Annotated[str | None, typer.Option("--note", "-n", help="A note to append")]
As = Annotated[str | None, typer.Option("--as", help="Act as this officer (default: your OS user name)")]


@alerts_app.command("ack")
def ack(alert: AlertId, note: Note = None, as_: As = None) -> None:
    """Acknowledge an alert (optionally with a note)."""
    _run_triage(TriageAction.ACKNOWLEDGE, alert, as_, note=note)


@alerts_app.command("assign")
def assign(
    alert: AlertId,
    to: Annotated[str, typer.Option("--to", help="The officer who takes the alert")],
    note: Note = None,
    as_: As = None,
) -> None:
    """Assign an alert to an officer (optionally with a note)."""
    _run_triage(TriageAction.ASSIGN, alert, as_, note=note, assignee=to)


@alerts_app.command("note")
def note_(
    alert: AlertId,
    note: Annotated[str, typer.Option("--note", "-n", help="The note to append")],
    as_: As = None,
) -> None:
    """Append a note to an alert."""
    _run_triage(TriageAction.NOTE, alert, as_, note=note)


# --- bench: every component's figures in one report ----------------------------------------------------

# (name for --only, module exposing run(settings, quick) -> list[BenchResult]), in pipeline order.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("simulator", "harness.bench.simulator"),
    ("producer", "harness.bench.producer"),
    ("streams", "harness.bench.processor"),
    ("sink", "harness.bench.sink"),
)
NOT_AVAILABLE = "not available"
# Run after the others, and only with --against REF: the working tree's processor and sink beside REF's.
AGAINST: tuple[str, str] = ("against", "harness.bench.against")


@dataclass
class ComponentOutcome:
    name: str
    module: str
    status: str  # "ok", "not available" or "error"
    seconds: float = 0.0
    results: list[BenchResult] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "results": [r.as_dict() for r in self.results],
        }


def load_component(module: str) -> Callable[[Settings, bool], list[BenchResult]] | None:
    """The component's ``run``, or None when its bench module does not exist (yet)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise  # a real import error inside an existing module
    run = getattr(mod, "run", None)
    if not callable(run):
        raise TypeError(f"{module} has no run(settings, quick) function")
    return run


def run_component(
    name: str, module: str, settings: Settings, quick: bool, options: dict[str, Any] | None = None
) -> ComponentOutcome:
    """Run one component's benchmark (`options`: keyword arguments of its ``run``); a failure is reported as
    such, never turned into figures."""
    started = time.perf_counter()
    try:
        run: Callable[..., list[BenchResult]] | None = load_component(module)
        if run is None:
            return ComponentOutcome(name, module, NOT_AVAILABLE, error=f"module {module} is missing")
        results = run(settings, quick, **(options or {}))
        bad = [r for r in results if not isinstance(r, BenchResult)]
        if bad:
            raise TypeError(f"{module}.run returned {type(bad[0]).__name__}, not BenchResult")
        return ComponentOutcome(name, module, "ok", time.perf_counter() - started, list(results))
    except Exception as exc:
        log.error("benchmark failed", component=name, error=repr(exc), traceback=traceback.format_exc())
        return ComponentOutcome(
            name, module, "error", time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}"
        )


def component_settings(base: Settings, broker_url: str, workdir: Path, name: str) -> Settings:
    """Settings for one component: the bench broker, its own topic names and its own data/chDB directories."""
    suffix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    topics = TopicNames(**{k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()})
    data_dir = workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return base.model_copy(
        update={
            # Self-contained: the embedded broker and chDB, whatever the environment points at.
            "mode": Mode.EMBEDDED,
            "schema_registry_url": None,
            "broker_url": broker_url,
            "data_dir": data_dir,
            "clickhouse_dsn": f"chdb://{data_dir / 'clickhouse'}",
            "topics": topics,
        }
    )


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.1f}"


def report_table(outcomes: Sequence[ComponentOutcome], *, quick: bool) -> Table:
    table = Table(title=f"Shekara benchmarks{' (quick)' if quick else ''}", show_lines=False)
    for column, justify in (
        ("component", "left"),
        ("figure", "left"),
        ("value", "right"),
        ("baseline (same run)", "left"),
        ("ratio", "right"),
        ("target", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for outcome in outcomes:
        if outcome.status != "ok":
            style = "yellow" if outcome.status == NOT_AVAILABLE else "red"
            table.add_row(outcome.name, f"[{style}]{outcome.status}[/]", "", outcome.error or "", "", "")
            continue
        if not outcome.results:
            table.add_row(outcome.name, "[yellow]no figures returned[/]", "", "", "", "")
        for r in outcome.results:
            baseline = ""
            if r.baseline_value is not None:
                baseline = f"{r.baseline_name or 'baseline'}: {_number(r.baseline_value)} {r.unit}"
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            table.add_row(r.component, r.name, f"{_number(r.value)} {r.unit}", baseline, ratio, r.target or "")
    return table


def report_json(outcomes: Sequence[ComponentOutcome], *, quick: bool, started: datetime) -> dict[str, Any]:
    return {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "quick": quick,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "components": [o.as_dict() for o in outcomes],
    }


def select_components(only: str | None, against: str | None = None) -> list[tuple[str, str]]:
    available = [*COMPONENTS, AGAINST] if against else list(COMPONENTS)
    if only is None:
        return available
    chosen = [c for c in available if c[0] == only.lower()]
    if not chosen:
        names = ", ".join(name for name, _ in available)
        raise typer.BadParameter(f"unknown component {only!r}; use one of {names}", param_hint="--only")
    return chosen


def run_bench(
    components: Sequence[tuple[str, str]],
    base: Settings,
    *,
    quick: bool,
    console: Console,
    against: str | None = None,
) -> list[ComponentOutcome]:
    """Start an embedded broker and a temp directory, then run the components one after the other."""
    from shekara.admin import ensure_topics, wait_for_broker
    from shekara.embedded import launch

    workdir = Path(tempfile.mkdtemp(prefix="shekara-bench-"))
    broker = launch(log_path=workdir / "broker.log")
    outcomes: list[ComponentOutcome] = []
    try:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            for name, module in components:
                task = progress.add_task(f"{name}: running {module}.run(quick={quick})", total=1)
                settings = component_settings(base, broker.url, workdir, name)
                wait_for_broker(settings)
                ensure_topics(settings)
                options = {"ref": against} if (name, module) == AGAINST else None
                outcome = run_component(name, module, settings, quick, options)
                outcomes.append(outcome)
                done = {"ok": f"{len(outcome.results)} figures", NOT_AVAILABLE: NOT_AVAILABLE}
                summary = done.get(outcome.status, f"error: {outcome.error}")
                progress.update(task, completed=1, description=f"{name}: {summary} in {outcome.seconds:.1f}s")
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return outcomes


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="A short run of every benchmark")] = False,
    only: Annotated[
        str | None,
        typer.Option("--only", help="Run one component: simulator, producer, streams, sink (against: with --against)"),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the figures here (default var/bench.json)")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="REF",
            help="Also run the processor's and the sink's throughput of commit REF and of the working tree, taking"
            " turns (3 rounds, 1 with --quick); --only against runs just that",
        ),
    ] = None,
) -> None:
    """Run every component's benchmark on a fresh embedded broker and print one report with baselines."""
    components = select_components(only, against)
    if against is not None:
        from harness.bench.against import resolve

        try:
            resolve(against)
        except ValueError as exc:  # before the broker and every other benchmark, not after them
            raise typer.BadParameter(str(exc), param_hint="--against") from None
    base = get_settings()
    # A report piped to a file or a CI log would otherwise be squeezed into 80 columns.
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=200)
    started = datetime.now(UTC)
    outcomes = run_bench(components, base, quick=quick, console=console, against=against)
    console.print(report_table(outcomes, quick=quick))
    path = json_path or base.data_dir / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_json(outcomes, quick=quick, started=started), indent=2) + "\n")
    console.print(f"figures written to {path}", style="dim")
    if any(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


# --- notify: CRITICAL/HIGH alerts to a webhook ------------------------------------------------------------


def notify(
    once: Annotated[bool, typer.Option("--once", help="Notify what is in the alerts topic now, then exit")] = False,
) -> None:
    """Send CRITICAL/HIGH alerts to SHEKARA_NOTIFY__WEBHOOK_URL (Alertmanager's webhook payload), with retries."""
    from shekara import metrics
    from shekara.admin import require_broker
    from shekara.settings import refuse_weak_secrets
    from sinks.notify import run_notify

    settings = get_settings()
    if not settings.notify.webhook_url:
        typer.secho(
            "error: notifications are off: set SHEKARA_NOTIFY__WEBHOOK_URL to the receiver's URL", fg="red", err=True
        )
        raise typer.Exit(2)
    refuse_weak_secrets(settings, pseudonym=False, clickhouse=False, ops_page=False, metrics=not once)
    require_broker(settings)
    m = settings.metrics
    if m.notify_port and not once:  # a drain ends before anyone would scrape it
        metrics.serve(m.notify_port, m.bind, m.password.get_secret_value())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stats = run_notify(settings, stop=stop, once=once)
    except KeyboardInterrupt:
        return
    typer.echo(
        f"{stats.delivered} delivered, {stats.dead_lettered} dead-lettered, {stats.filtered} below the severities,"
        f" {stats.attempts} attempts",
        err=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.command("notify")(notify)
    app.command("bench")(bench)
