"""`shekara publish FILE`: send a JSON-lines or Avro container file of events through the producer client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)


def publish(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON lines or .avro file")],
    type_: Annotated[
        str | None,
        typer.Option(
            "--type",
            help='Crossing, Registration or StatusChange (default: the Avro schema name or each line\'s "record_type")',
        ),
    ] = None,
    flush_timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to acknowledge")] = 30.0,
    dead_letter: Annotated[
        bool, typer.Option(help="Also write each rejected line, with its reason, to the dead-letter topic")
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every line as publishing would, send nothing (no broker needed)")
    ] = False,
) -> None:
    """Validate and publish every event in FILE, reading it to the end whatever it holds.

    Each rejected line prints `line N: FIELD: REASON`; then the counts: sent, rejected, spooled (on disk).

    Exit code: 0 all sent, 1 a line rejected, 2 the file cannot be read, 3 messages still wait in the spool.
    """
    from fastavro.read import SchemaResolutionError

    from producers.publish import publish_file
    from producers.spool import SpoolBusyError
    from schemas.validation import ValidationError
    from shekara.settings import get_settings, refuse_weak_secrets

    settings = get_settings()
    refuse_weak_secrets(
        settings, pseudonym=False, clickhouse=False, ops_page=False, metrics=settings.metrics.publish_port > 0
    )  # producers hold no key
    try:
        report = publish_file(
            file,
            settings,
            record_type=type_,
            flush_timeout=flush_timeout,
            dead_letters=dead_letter,
            dry_run=dry_run,
            on_reject=lambda rejection: typer.echo(str(rejection)),
        )
    except (ValidationError, SchemaResolutionError, ValueError, OSError, SpoolBusyError) as exc:
        typer.secho(f"error: {file}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    rejected = len(report.rejected)
    if report.dry_run:
        typer.echo(f"read {report.read}: valid {report.valid}, rejected {rejected} (dry run: nothing sent)")
        raise typer.Exit(1 if rejected else 0)
    typer.echo(f"read {report.read}: sent {report.sent}, rejected {rejected}, spooled {report.spooled}")
    if report.dead_lettered:
        typer.echo(
            f"dead letters to {settings.topics.dead_letter}: "
            f"sent {report.dead_letters_sent}, spooled {report.dead_letters_spooled}"
        )
    if report.spool_left:
        typer.echo(
            f"{report.spool_left} messages wait in the spool at {report.spool_dir} (the broker did not take them); "
            "the next `shekara publish` sends them first, in order."
        )
    elif report.drained:
        typer.echo(f"the spool sent {report.drained} messages during this run and is empty")
    if rejected:
        raise typer.Exit(1)
    if report.spool_left:
        raise typer.Exit(3)
