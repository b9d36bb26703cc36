"""`shekara demo`: the whole pipeline end to end on this machine, the way users meet it.

Starts the embedded broker, a processor worker (with its ops page) and the ClickHouse sink; publishes 60
simulated days of traffic through the producer client; waits until the processors and the sink have
committed everything; then prints the alert summary (from ClickHouse), the evaluation against the
simulator's ground truth and the analysts' standard report. The ClickHouse data stays on disk for
`shekara sql` and `shekara report`.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.readback import AlertRecord
from shekara.settings import Mode, Settings, get_settings

# A file in the demo's chDB directory: only a directory the demo made itself is ever wiped by a later demo.
DEMO_MARKER = ".shekara-demo"
WEB_PORT = 6066


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    days: Annotated[int, typer.Option(min=1, help="Simulated days")] = 60,
    seed: Annotated[int, typer.Option(help="Simulator seed")] = 7,
    scale: Annotated[float, typer.Option(min=0.001, help="Traffic scale (1.0: about 190,000 crossings a day)")] = 0.02,
    workers: Annotated[int, typer.Option(min=1, help="Processor workers")] = 1,
    reset: Annotated[bool, typer.Option(help="Replace a warehouse directory the demo did not create")] = False,
) -> None:
    """Run the pipeline end to end on simulated traffic: alerts, evaluation and the analysts' report."""
    console = Console(width=None if sys.stdout.isatty() else 120)  # logs and pipes: no 80-column wrapping
    settings = get_settings()
    try:
        _prepare_warehouse(settings, reset)
    except RuntimeError as exc:
        console.print(f"error: {exc}", style="red")
        raise typer.Exit(2) from exc
    from shekara.admin import Unreachable
    from shekara.embedded import BrokerError

    try:
        outcome, last_day = run_demo(settings, days=days, seed=seed, scale=scale, workers=workers, console=console)
    except (Unreachable, BrokerError):
        raise  # the `shekara` command says it in one line, exit 2
    except Exception as exc:
        console.print(f"demo failed: {type(exc).__name__}: {exc}", style="red")
        raise typer.Exit(1) from exc
    _next_steps(console, settings, last_day)
    if not outcome:
        raise typer.Exit(1)


def _prepare_warehouse(settings: Settings, reset: bool) -> None:
    """Start from an empty chDB directory: the demo's counts must be its own, not added to an older run's."""
    from sinks.clickhouse import chdb_path, is_embedded

    if not is_embedded(settings):
        return  # server mode: the sink deduplicates; nothing of the analysts' data is ever deleted
    path = chdb_path(settings)
    if path.exists() and any(path.iterdir()):
        if not (path / DEMO_MARKER).exists() and not reset:
            raise RuntimeError(
                f"{path} holds a warehouse the demo did not create; run `shekara demo --reset` to replace it, "
                "or point SHEKARA_CLICKHOUSE_DSN elsewhere"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text("made by `shekara demo`; the next demo replaces this directory\n")


def run_demo(
    settings: Settings, *, days: int, seed: int, scale: float, workers: int, console: Console
) -> tuple[bool, date]:
    """Run the demo: (ok, last simulated day); ok when ClickHouse has every accepted event and alert once.

    The evaluation is printed and a shortfall is reported, but it does not fail the run (`shekara evaluate` and
    the tests gate on it).
    """
    from harness.evaluate import EvaluationConfig, ground_truth, simulation_config
    from harness.simulator import publish
    from harness.stack import Stack

    work_dir = settings.data_dir / "demo"
    if work_dir.exists():
        shutil.rmtree(work_dir)
    config = EvaluationConfig(days=days, seed=seed, scale=scale, workers=workers)
    sim_config = simulation_config(config, settings)
    embedded = settings.mode == Mode.EMBEDDED
    console.print(
        f"[bold]Shekara demo[/]: {days} simulated days from {sim_config.start} (seed {seed}, scale {scale}) "
        "through the whole pipeline on this machine"
    )

    started = time.monotonic()
    with console.status("computing the simulator's ground truth ..."):
        expected, malformed = ground_truth(sim_config)
    console.print(f"  ground truth: {len(expected):,} expected alerts, {malformed:,} malformed payloads to reject")

    with Stack(settings, work_dir, workers=workers, web_port=WEB_PORT, embedded_broker=embedded) as stack:
        settings = stack.settings
        console.print(f"  broker      {settings.bootstrap_servers} ({'Tansu, in memory' if embedded else 'server'})")
        console.print(
            f"  processors  {workers} worker(s); live ops page: http://127.0.0.1:{stack.web_port}/ (while it runs)"
        )
        console.print(f"  sink        ClickHouse at {_where(settings)}; logs in {work_dir}")

        with _bars(console) as bars:
            pub = bars.add_task("publishing", total=1000, detail="")

            def on_publish(fraction: float, messages: int) -> None:
                bars.update(pub, completed=int(fraction * 1000), detail=f"{messages:,} messages")

            t0 = time.monotonic()
            summary = publish(sim_config, settings, speed=None, progress=on_publish)
            publish_s = time.monotonic() - t0
            bars.update(pub, completed=1000, detail=f"{summary.messages:,} messages in {publish_s:.0f} s")
            _follow(bars, "processing", lambda on_lag: stack.wait_processed(on_lag=on_lag))
            process_s = time.monotonic() - t0
            _follow(bars, "landing in ClickHouse", lambda on_lag: stack.wait_landed(on_lag=on_lag))
            land_s = time.monotonic() - t0

        report, alert_pairs = _evaluate(stack, config, sim_config, expected, malformed, summary, publish_s, process_s)
        from harness.readback import read_dead_letters
        from sinks.dead_letters import tally

        letters = tally(read_dead_letters(settings))
        stack.stop_sink()  # releases the chDB directory for the queries below

    last_day: date = sim_config.start + timedelta(days=days - 1)
    console.print(
        f"\npublished {summary.messages:,} messages in {publish_s:.0f} s; processed {process_s:.0f} s and landed in "
        f"ClickHouse {land_s:.0f} s after publishing began ({time.monotonic() - started:.0f} s in all)"
    )
    _alert_summary(console, settings)
    console.rule("evaluation against the simulator's ground truth")
    for line in report.lines():
        console.print(line, markup=False, highlight=False)
    console.rule("landed in ClickHouse")
    landed_ok = _landed_check(console, settings, summary, alert_pairs)
    landed_ok &= _dead_letter_check(console, settings, letters)
    console.rule(f"analysts' report as of the last simulated day (shekara report --as-of {last_day})")
    from sinks.report import build_dashboard, render_text

    sys.stdout.write(render_text(build_dashboard(settings, as_of=last_day)))
    if not report.complete:
        # The demo ran end to end; the alert quality is the processors' open problem, said plainly, not a
        # failure of the run. Lost or doubled data (landed_ok) is.
        s = report.score
        console.print(
            f"\nalert quality below target: precision={s.precision:.3f} recall={s.recall:.3f} "
            f"({s.missed} missed, {s.spurious} spurious; target 1.000 and 1.000)",
            style="bold yellow",
        )
    return landed_ok, last_day


def _bars(console: Console) -> Progress:
    return Progress(
        TextColumn("  [bold]{task.description:22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _follow(bars: Progress, name: str, wait: Any) -> None:
    """Show a consumer group's progress as the share of its lag worked off since the wait began."""
    task = bars.add_task(name, total=None, detail="")
    most = 0

    def on_lag(lag: int) -> None:
        nonlocal most
        most = max(most, lag)
        bars.update(task, total=max(most, 1), completed=most - lag, detail=f"{lag:,} to go")

    wait(on_lag)
    bars.update(task, total=max(most, 1), completed=max(most, 1), detail="caught up")


def _evaluate(
    stack: Any,
    config: Any,
    sim_config: Any,
    expected: Any,
    malformed: int,
    summary: Any,
    publish_s: float,
    process_s: float,
) -> tuple[Any, set[AlertRecord]]:
    """Score the processors' final alerts on the topic against the ground truth (as `shekara evaluate` does)."""
    from harness import readback
    from harness.evaluate import EvaluationReport
    from harness.scoring import final_alerts, score
    from shekara.rules import load_rules

    settings = stack.settings
    alerts = readback.read_alerts(settings)
    final = final_alerts(alerts)
    letters = readback.read_dead_letters(settings)
    dead = {(d.source_topic, d.source_partition, d.source_offset): d.stage for d in letters}
    # A validation reason starts with its field already ("traveller.birth_date: is in the future ..."): once is enough.
    reasons = Counter(
        f"{d.stage}: {d.reason[:200]}"
        if d.field and d.reason.startswith(f"{d.field}:")
        else f"{d.stage}: {d.field or '-'}: {d.reason[:200]}"
        for d in letters
    )
    rules = load_rules(settings.rules_file)
    end = rules.day_start(sim_config.start + timedelta(days=config.days))
    cutoff = end - timedelta(seconds=settings.allowed_lateness_seconds) - config.margin
    report = EvaluationReport(
        config=config,
        cutoff=cutoff.astimezone(UTC),
        score=score(expected, final, cutoff),
        published=summary.messages,
        malformed_expected=malformed,
        dead_letters=len(dead),
        dead_letters_by_stage=dict(Counter(dead.values())),
        alert_records=len(alerts),
        final_alerts=final,
        stays=readback.read_stays(settings),
        crashes=0,
        worker_events=[],
        publish_seconds=publish_s,
        process_seconds=process_s,
        notes=[f"dead letters {n:6d} x {why}" for why, n in _top_per_stage(reasons, 5)],
    )
    return report, {(a.alert_id, a.revision, a.action.value) for a in alerts}


def _top_per_stage(reasons: Counter[str], n: int) -> list[tuple[str, int]]:
    """The `n` commonest reasons of each stage ("stage: field: reason" keys), so rare stages are not hidden."""
    by_stage: dict[str, list[tuple[str, int]]] = {}
    for why, count in reasons.most_common():
        by_stage.setdefault(why.split(":", 1)[0], []).append((why, count))
    return [item for stage in sorted(by_stage) for item in by_stage[stage][:n]]


def _alert_summary(console: Console, settings: Settings) -> None:
    from sinks.clickhouse import connect

    client = connect(settings, readonly=True)
    try:
        rows = client.query(
            """
            SELECT type, any(severity),
                   count() AS alerts,
                   countIf(action = 'RAISED') AS open,
                   countIf(action = 'RESOLVED') AS resolved,
                   countIf(action = 'RETRACTED') AS retracted,
                   argMax(reason, updated_time)
            FROM alert_states
            GROUP BY type
            ORDER BY alerts DESC, type
            """
        ).result_rows
    finally:
        client.close()
    table = Table(title="alerts landed in ClickHouse (each alert id by its current state)", title_justify="left")
    counts = ("alerts", "open", "resolved", "retracted")
    for name in ("type", "severity", *counts, "latest reason"):
        table.add_column(name, justify="right" if name in counts else "left")
    for type_, severity, alerts, open_, resolved, retracted, reason in rows:
        figures = (f"{n:,}" for n in (alerts, open_, resolved, retracted))
        table.add_row(type_, severity, *figures, _short(reason, 70))
    console.print(table)


def _landed_check(console: Console, settings: Settings, summary: Any, alert_pairs: set[AlertRecord]) -> bool:
    """Every accepted event and every alert record in ClickHouse exactly once: the sink lost and doubled nothing."""
    from sinks.clickhouse import connect

    tables = {"crossing": "crossings", "registration": "registrations", "status_change": "status_changes"}
    client = connect(settings, readonly=True)
    try:
        rows = {
            kind: client.query(f"SELECT count(), uniqExact(event_id) FROM {table} FINAL").result_rows[0]
            for kind, table in tables.items()
        }
        landed = {
            (str(a), int(r), str(b))
            for a, r, b in client.query("SELECT alert_id, revision, action FROM alerts FINAL").result_rows
        }
    finally:
        client.close()
    ok = True
    for kind, table in tables.items():
        accepted = int(summary.events.get(kind, 0))
        count, distinct = rows[kind]
        good = count == distinct == accepted
        ok &= good
        console.print(
            f"{table:15} accepted {accepted:>9,}  in ClickHouse {count:>9,} rows, {distinct:>9,} distinct ids  "
            + ("exactly once" if good else "MISMATCH"),
            style=None if good else "red",
        )
    good = landed == alert_pairs
    ok &= good
    missing, extra = len(alert_pairs - landed), len(landed - alert_pairs)
    console.print(
        f"{'alerts':15} records on the topic {len(alert_pairs):,} (distinct id, revision and action), in ClickHouse "
        f"{len(landed):,}: " + ("the same" if good else f"{missing} missing, {extra} extra"),
        style=None if good else "red",
    )
    return ok


def _dead_letter_check(console: Console, settings: Settings, letters: Any) -> bool:
    """Each rejected message dead-lettered once (counted by source coordinates), and landed in ClickHouse once."""
    from sinks.dead_letters import totals

    rows, distinct = totals(settings)
    good = letters.twice == 0 and rows == distinct == letters.messages
    console.print(
        f"{'dead letters':15} {letters.line()}; in ClickHouse {rows:,} rows, {distinct:,} source messages",
        style=None if good else "red",
    )
    return good


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _where(settings: Settings) -> str:
    from sinks.clickhouse import chdb_path, is_embedded

    if is_embedded(settings):
        path = chdb_path(settings)
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return settings.clickhouse_dsn.split("@")[-1]


def _next_steps(console: Console, settings: Settings, last_day: date) -> None:
    exe = "shekara" if shutil.which("shekara") else ".venv/bin/shekara"
    console.rule("next")
    console.print(
        f"""The warehouse stays on disk at {_where(settings)}. Try:
  {exe} sql --list                           the saved analyst queries
  {exe} sql --saved open_overstays -p as_of={last_day}
  {exe} sql "SELECT type, count() FROM alerts FINAL GROUP BY type"
  {exe} report --as-of {last_day} --html report.html
Live, one command per terminal:
  {exe} up                                   the embedded broker and topics
  {exe} process                              the processors (ops page on http://127.0.0.1:6066/)
  {exe} sink                                 the ClickHouse sink
  {exe} simulate --days 30 --start 2026-10-01 --to-kafka --speed 86400
  {exe} alerts --follow --severity high      the ops console
Quality and speed: {exe} evaluate --days 60 --seed 7, make bench, make faults""",
        markup=False,
        highlight=False,
    )
