"""`shekara process` (run processor workers). `shekara evaluate` is tooling: it registers from `harness.evaluate`."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from typing import Annotated

import typer

from shekara.logs import get_logger
from shekara.settings import get_settings, refuse_weak_secrets

log = get_logger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(process)


def process(
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; they share the partitions")] = 1,
    app_id: Annotated[str | None, typer.Option(help="Faust app id = consumer group (default: settings)")] = None,
    web_port: Annotated[int | None, typer.Option(help="Ops web port (worker i uses port + i)")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level: crit, error, warn, info, debug")] = "warn",
) -> None:
    """Run the stream processors (matcher, address check) until Ctrl-C.

    Each worker is a child process, supervised: one that exits (a fatal error, its broker replaced by a new
    one) is started again after a back-off that grows while it keeps failing, with one line saying so.
    """
    from shekara.admin import require_broker
    from streams.supervise import Backoff, exit_line
    from streams.worker import spawn_worker

    settings = get_settings()
    refuse_weak_secrets(settings, clickhouse=False)
    require_broker(settings)  # unreachable at start: one line, rather than workers restarting in a loop
    base_port = web_port or settings.faust.web_port
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    children: list[subprocess.Popen[bytes] | None] = [None] * workers
    backoffs = [Backoff() for _ in range(workers)]
    due: dict[int, float] = {}  # worker -> when to start it again

    def start(i: int) -> None:
        children[i] = spawn_worker(
            settings, app_id=app_id, web_port=base_port + i, loglevel=loglevel, inherit_output=True
        )
        backoffs[i].started(time.monotonic())
        typer.echo(f"worker {i} started (pid {children[i].pid}, web port {base_port + i})")  # type: ignore[union-attr]

    for i in range(workers):
        start(i)
    try:
        while not stop.wait(0.5):
            now = time.monotonic()
            for i, child in enumerate(children):
                if child is None or child.poll() is None:
                    continue
                # A worker exits without acknowledging its batch (fatal error, broker replaced): a new one replays it.
                if i not in due:
                    delay = backoffs[i].exited(now)
                    due[i] = now + delay
                    line = exit_line(f"worker {i}", child.returncode, delay, backoffs[i].restarts)
                    typer.secho(line, fg="yellow", err=True)
                elif now >= due[i]:
                    del due[i]
                    start(i)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child is not None and child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in children:
            if child is not None:
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        typer.echo("workers stopped")
