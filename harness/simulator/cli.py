"""`shekara simulate`: generate traffic with ground truth to files, or publish it to Kafka."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from harness.simulator.config import AnomalyRates, FaultRates, SimulationConfig
from harness.simulator.output import SUMMARY_FILE, TRUTH_FILE, SimSummary
from shekara.settings import Settings, get_settings


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def simulate(
    days: Annotated[int, typer.Option(min=1, help="Days to simulate")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed: same arguments, same bytes")] = 1,
    scale: Annotated[float, typer.Option(min=0.0001, help="1.0 = about 190,000 crossings a day")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Directory for the Avro files, ground truth and summary")] = None,
    start: Annotated[str, typer.Option(help="First simulated day (YYYY-MM-DD, Asia/Almaty)")] = "2026-06-01",
    no_anomalies: Annotated[bool, typer.Option("--no-anomalies", help="Normal traffic only")] = False,
    no_faults: Annotated[bool, typer.Option("--no-faults", help="No duplicates, delays or malformed payloads")] = False,
    to_kafka: Annotated[
        bool, typer.Option("--to-kafka", help="Publish through the producer client instead of writing files")
    ] = False,
    speed: Annotated[
        float | None, typer.Option(help="--to-kafka pacing: simulated seconds per second (3600 = an hour a second)")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes for file generation (default: cores)")] = None,
    codec: Annotated[str, typer.Option(help="Avro container codec: deflate or null")] = "deflate",
) -> None:
    """Generate deterministic border traffic with the alerts it must raise (ground truth)."""
    settings = get_settings()
    try:
        first = date.fromisoformat(start)
    except ValueError:
        typer.secho(f"error: --start must be a date YYYY-MM-DD, got {start!r}", fg="red", err=True)
        raise typer.Exit(2) from None
    if codec not in ("deflate", "null"):
        typer.secho(f"error: --codec must be deflate or null, got {codec!r}", fg="red", err=True)
        raise typer.Exit(2)
    if not to_kafka and out is None:
        typer.secho("error: give --out DIR (files) or --to-kafka", fg="red", err=True)
        raise typer.Exit(2)
    config = SimulationConfig(
        days=days,
        seed=seed,
        scale=scale,
        start=first,
        anomalies=AnomalyRates.none() if no_anomalies else AnomalyRates(),
        faults=FaultRates.none() if no_faults else FaultRates(),
        rules_path=settings.rules_file,
        pseudonym_key=settings.pseudonym_key_bytes,
    )
    if to_kafka:
        from shekara.admin import require_broker

        require_broker(settings)  # a generator run against no broker would only fill the spool: say so instead
        summary = _to_kafka(config, settings, speed, out)
    else:
        assert out is not None
        summary = _to_files(config, out, workers, codec)
    _print_summary(summary, out)


def _to_files(config: SimulationConfig, out: Path, workers: int | None, codec: str) -> SimSummary:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from harness.simulator.output import write_files

    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("simulate", total=1.0)
        return write_files(config, out, workers=workers, codec=codec, progress=lambda f: bar.update(task, completed=f))


def _to_kafka(config: SimulationConfig, settings: Settings, speed: float | None, out: Path | None) -> SimSummary:
    from harness.simulator.generate import Simulation
    from harness.simulator.kafka import publish

    try:
        summary = publish(config, settings, speed=speed, progress=True)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if out is not None:  # the ground truth of what was sent, for evaluation
        out.mkdir(parents=True, exist_ok=True)
        with (out / TRUTH_FILE).open("w", encoding="utf-8") as f:
            for x in Simulation(config).expected():
                f.write(json.dumps(x.to_json(), sort_keys=True) + "\n")
        (out / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2, sort_keys=True) + "\n")
    return summary


def _print_summary(s: SimSummary, out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"simulated {s.config['start']} .. {s.config['end_exclusive']} (exclusive, Asia/Almaty days)")
    t.add_column("what")
    t.add_column("count", justify="right")
    for kind, n in s.events.items():
        t.add_row(f"{kind} events", f"{n:,}")
    t.add_row("duplicates (same event id)", f"{s.duplicates:,}")
    t.add_row("uploaded late (post offline)", f"{s.late_uploads:,}")
    t.add_row("held back (out of order)", f"{s.out_of_order:,}")
    t.add_row("malformed payloads", f"{sum(s.malformed.values()):,}")
    t.add_row("messages sent", f"{s.messages:,}")
    for kind, n in sorted(s.expected_alerts.items()):
        t.add_row(f"expected {kind}", f"{n:,}")
    if s.rejected_by_client:
        t.add_row("[red]refused by the producer client", f"{s.rejected_by_client:,}")
    console.print(t)
    rate = s.messages / s.elapsed_s if s.elapsed_s else 0.0
    console.print(f"{s.messages:,} messages in {s.elapsed_s:.1f} s ({rate:,.0f}/s)")
    if out is not None:
        console.print(f"written to {out}")
