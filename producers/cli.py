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
) -> None:
    """Validate and publish every event in FILE; print counts accepted/rejected and why each was rejected."""
    from fastavro.read import SchemaResolutionError

    from producers.publish import publish_file
    from schemas.validation import ValidationError
    from shekara.settings import get_settings, refuse_weak_secrets

    settings = get_settings()
    refuse_weak_secrets(settings, pseudonym=False, clickhouse=False, ops_page=False)  # producers hold no key
    try:
        report = publish_file(file, settings, record_type=type_, flush_timeout=flush_timeout, dead_letters=dead_letter)
    except (ValidationError, SchemaResolutionError, ValueError) as exc:
        typer.secho(f"error: {file}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    for rejection in report.rejected:
        typer.echo(f"rejected {rejection}")
    typer.echo(
        f"accepted {report.accepted}, rejected {len(report.rejected)}"
        + (f" (sent to {settings.topics.dead_letter})" if report.dead_lettered else "")
    )
    typer.echo(f"sent {report.sent}, spooled {report.spooled}, pending {report.pending}")
    if report.pending:
        typer.echo(
            f"{report.pending} accepted events are kept in the spool at {report.spool_dir}; "
            "the next `shekara publish` sends them first, in order."
        )
    if report.rejected:
        raise typer.Exit(1)
