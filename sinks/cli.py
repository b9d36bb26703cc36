"""`shekara sink`, `shekara migrate`, `shekara sql`, `shekara report`: thin shells over `sinks`."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from shekara.settings import get_settings, refuse_weak_secrets


def register(app: typer.Typer) -> None:
    app.command()(sink)
    app.command()(migrate)
    app.command()(sql)
    app.command()(report)
    app.command("dead-letters")(dead_letters)


def sink(
    once: Annotated[bool, typer.Option("--once", help="Drain what is in the topics now, then exit")] = False,
) -> None:
    """Land the topics in ClickHouse (runs until Ctrl-C). Also answers `shekara sql` in embedded mode."""
    from shekara.admin import require_broker
    from shekara.broker_watch import EXIT_BROKER_GONE, BrokerGone
    from sinks.clickhouse import WarehouseBusy
    from sinks.sink import run_sink

    settings = get_settings()
    refuse_weak_secrets(settings, ops_page=False, metrics=True)
    require_broker(settings)  # unreachable at start: one line (an outage once running is ridden out)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not once:
        typer.echo(f"sink running: {settings.broker_url} -> {_safe_dsn(settings.clickhouse_dsn)}; Ctrl-C to stop")
    try:
        stats = run_sink(settings, stop=stop, once=once)
    except WarehouseBusy as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except BrokerGone as exc:
        # At once, the consumer unclosed: leaving the new broker's group mid-join (it rejoins on its own) can
        # leave Tansu's group stuck on a dead leader, and the next sink would never get partitions.
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.stderr.flush()
        os._exit(EXIT_BROKER_GONE)
    typer.echo(json.dumps(stats.as_dict()))


def migrate() -> None:
    """Create or upgrade the warehouse schema (idempotent)."""
    from sinks.clickhouse import WarehouseBusy, connect
    from sinks.migrate import migrate as apply

    settings = get_settings()
    try:
        client = connect(settings)
    except WarehouseBusy as exc:
        typer.secho(f"error: {exc}; the running sink migrates at start", fg="red", err=True)
        raise typer.Exit(2) from exc
    try:
        applied = apply(client)
    finally:
        client.close()
    for m in applied:
        typer.echo(f"applied {m.version:03d}_{m.name} ({len(m.statements)} statements)")
    typer.echo("warehouse schema up to date" if applied else "nothing to apply: warehouse schema up to date")


def sql(
    query: Annotated[str | None, typer.Argument(help="SQL to run, read-only; '-' reads it from stdin")] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="pretty, CSV, JSON, TSV, or a ClickHouse format (Parquet too)")
    ] = "pretty",
    saved: Annotated[str | None, typer.Option("--saved", "-s", help="Run a saved query (see --list)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value for the query")] = None,
    list_saved: Annotated[bool, typer.Option("--list", help="List the saved queries")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result to this file")] = None,
) -> None:
    """Run a read-only query against the configured ClickHouse (also while the sink runs)."""
    from sinks.analyst import (
        DEFAULT_DATA,
        QueryError,
        Reader,
        as_of_hint,
        is_binary,
        is_empty,
        saved_queries,
        split_format,
    )
    from sinks.clickhouse import WarehouseBusy, WarehouseMissing

    catalogue = saved_queries()
    if list_saved:
        for q in catalogue.values():
            defaults = ", ".join(f"{p.name}={p.default}" for p in q.params)
            typer.echo(f"{q.name:32} {q.title}" + (f"  [{defaults}]" if defaults else ""))
        return
    given = dict(_param(p) for p in (param or []))
    if saved and saved not in catalogue:
        _fail(f"no saved query {saved!r}; see `shekara sql --list`", 2)
    if not saved and not query:
        _fail("give a query, --saved NAME or --list", 2)
    text = catalogue[saved].sql if saved else (sys.stdin.read() if query == "-" else str(query))
    ch_format = split_format(text, fmt)[1]
    if is_binary(ch_format) and output is None and sys.stdout.isatty():
        _fail(f"{ch_format} is binary: pass --output FILE or redirect stdout", 2)
    try:
        with Reader(get_settings()) as reader:
            data, args = None, given
            if saved:
                try:
                    prepared = reader.prepare(catalogue[saved], given)
                except ValueError as exc:
                    _fail(str(exc), 2)
                data, args = prepared.data, prepared.args
                if prepared.as_of_from_data is not None:
                    typer.echo(as_of_hint(prepared.as_of_from_data), err=True)
            out = reader.raw(text, fmt, args)
            if is_empty(out, ch_format):
                data = data or reader.data_range(DEFAULT_DATA)
                typer.echo(f"0 rows ({data.describe()})", err=True)
    except (QueryError, WarehouseBusy, WarehouseMissing) as exc:
        _fail(str(exc), 1 if isinstance(exc, QueryError) else 2)  # 2: no warehouse to ask
    # Bytes as ClickHouse wrote them: binary formats (Parquet, Arrow, Native) must not pass through a text codec.
    if output is not None:
        output.write_bytes(out)
    else:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def report(
    html: Annotated[Path | None, typer.Option("--html", help="Also write the dashboard, with charts, here")] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Judge the report at this day")
    ] = None,
) -> None:
    """Print the standard dashboard: flows, balance, overstay rates, compliance, top alert types."""
    from sinks.analyst import QueryError
    from sinks.clickhouse import WarehouseBusy, WarehouseMissing
    from sinks.report import build_dashboard, render_html, render_text

    try:
        dashboard = build_dashboard(get_settings(), as_of=None if as_of is None else as_of.date())
    except (QueryError, WarehouseBusy, WarehouseMissing) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1 if isinstance(exc, QueryError) else 2) from exc  # 2: no warehouse to ask
    if dashboard.as_of_from_data and dashboard.as_of is not None:
        from sinks.analyst import as_of_hint

        typer.echo(as_of_hint(dashboard.as_of, "--as-of YYYY-MM-DD"), err=True)
    typer.echo(render_text(dashboard))
    if html is not None:
        html.write_text(render_html(dashboard), encoding="utf-8")
        typer.echo(f"dashboard written to {html}")


def dead_letters(
    latest: Annotated[int | None, typer.Option("--latest", "-n", min=1, help="Show the N most recent instead")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print dead letters as they land (Ctrl-C)")] = False,
) -> None:
    """Rejected messages in ClickHouse: a summary by stage and reason, the latest N, or follow them."""
    from sinks import dead_letters as letters
    from sinks.analyst import QueryError
    from sinks.clickhouse import WarehouseBusy, WarehouseMissing

    settings = get_settings()
    try:
        if follow:
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            for row in letters.follow(settings, stop=stop.is_set):
                typer.echo(letters.line(row))
            return
        out = letters.latest(settings, latest) if latest else letters.summary(settings)
        rows, distinct = letters.totals(settings)
    except (QueryError, WarehouseBusy, WarehouseMissing) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1 if isinstance(exc, QueryError) else 2) from exc  # 2: no warehouse to ask
    sys.stdout.write(out.decode(errors="replace"))
    typer.echo(f"{rows:,} dead letters ({distinct:,} distinct rejected messages)")


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"--param wants name=value, got {text!r}")
    return name.strip(), value


def _safe_dsn(dsn: str) -> str:
    if "@" in dsn:
        scheme, _, rest = dsn.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn
