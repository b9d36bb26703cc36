"""The `shekara` command. Each subcommand is a thin shell over a module that does the work."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

from shekara import logs
from shekara.settings import Settings, get_settings


class _App(typer.Typer):
    """The command, saying in one line (exit 2, no traceback) that the broker or the warehouse cannot be reached.

    Commands check up front (`shekara.admin.require_broker`); this also catches the same failure met later on.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from shekara.admin import Unreachable, WrongLayout, is_unreachable, unreachable_line
        from shekara.embedded import BrokerError

        try:
            return super().__call__(*args, **kwargs)
        # BrokerError: the embedded broker cannot start; WrongLayout: topics another partition count (say why)
        except (Unreachable, BrokerError, WrongLayout) as exc:
            line = str(exc)
        except Exception as exc:
            if is_unreachable(exc):
                line = unreachable_line(get_settings())
            elif found := clickhouse_unreachable_line(get_settings(), exc):
                line = found
            else:
                raise
        typer.secho(f"error: {line}", fg="red", err=True)
        sys.exit(2)


def clickhouse_unreachable_line(settings: Settings, exc: Exception) -> str | None:
    """The one line for a ClickHouse server that did not answer (also `shekara status`); None for other errors."""
    if not _clickhouse_unreachable(exc):
        return None
    where = urlsplit(settings.clickhouse_dsn)
    return f"cannot reach ClickHouse at {where.hostname}:{where.port} (is `docker compose up` running?)"


def _clickhouse_unreachable(exc: Exception) -> bool:
    """clickhouse-connect's OperationalError: the server did not answer (a query error is another class)."""
    if "clickhouse_connect" not in sys.modules:  # not imported: not its error (and its import costs 0.15 s)
        return False
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(exc, OperationalError)


app = _App(
    help="Shekara: border-crossing and migration-registration event pipeline.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING (default), ERROR")] = None,
) -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad SHEKARA_* variable or shekara.toml entry: one line each, no traceback
        for err in exc.errors():
            name = "SHEKARA_" + "__".join(str(part) for part in err["loc"]).upper()
            secret = any(word in name for word in ("KEY", "PASSWORD", "SECRET", "TOKEN"))
            value = "(not shown)" if secret else repr(err.get("input"))
            typer.echo(f"bad setting {name}={value}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    logs.configure(log_level or settings.log_level, settings.log_format)
    # The HTTP clients' retry and failure lines repeat what the command says in one line: theirs only at DEBUG.
    # A handler filter, not a logger level: clickhouse-connect sets urllib3's level when it is imported.
    if (log_level or settings.log_level).upper() != "DEBUG":
        for handler in logging.root.handlers:
            handler.addFilter(_not_http_client)


def _not_http_client(record: logging.LogRecord) -> bool:
    return not record.name.startswith(("urllib3", "clickhouse_connect"))


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="Broker port (default: from SHEKARA_BROKER_URL)")] = None,
) -> None:
    """Start the embedded broker, create the project's topics, and run until Ctrl-C."""
    from shekara.admin import ensure_topics, wait_for_broker
    from shekara.embedded import BrokerError, launch

    settings = get_settings()
    port = port or int(settings.bootstrap_servers.rsplit(":", 1)[1])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        broker = launch(port, log_path=settings.data_dir / "broker.log")
    except BrokerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        local = Settings(broker_url=broker.url)
        wait_for_broker(local)
        created = ensure_topics(local)
        typer.echo(f"broker ready on {broker.bootstrap} (Tansu, in memory); topics created: {len(created)}")
        typer.echo("press Ctrl-C to stop")
        while not stop.wait(0.5):
            if not broker.alive():
                typer.secho("error: the broker exited unexpectedly", fg="red", err=True)
                raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
        typer.echo("broker stopped")


@app.command()
def topics() -> None:
    """Create the project's topics on the configured broker (idempotent) and list them."""
    from shekara.admin import ensure_topics, require_broker
    from shekara.topics import catalogue

    settings = get_settings()
    require_broker(settings)
    created = set(ensure_topics(settings))
    for spec in catalogue(settings):
        mark = "created" if spec.name in created else "exists"
        typer.echo(f"{spec.name:40} {spec.partitions:3}  {spec.config.get('cleanup.policy', ''):8} {mark}")


# Subcommands of the runtime stages (producers, streams, sinks) and of the harness register below.
def _register_optional() -> None:
    import importlib

    for module in (
        "producers.cli",  # publish
        "harness.simulator.cli",  # simulate
        "streams.cli",  # process
        "harness.evaluate",  # evaluate
        "sinks.cli",  # sink, migrate, sql, report
        "harness.ops_cli",  # alerts, bench
        "harness.demo",  # demo
        "harness.faults",  # faults
        "harness.check",  # check
        "harness.status",  # status
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # a real import error inside an existing module
            continue
        mod.register(app)


_register_optional()


if __name__ == "__main__":
    app()
