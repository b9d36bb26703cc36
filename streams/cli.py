"""`shekara process` (run processor workers) and `shekara evaluate` (measure alert quality end to end)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from shekara.logs import get_logger
from shekara.settings import get_settings, refuse_weak_secrets
from streams.app import DEFAULT_APP_ID

log = get_logger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(process)
    app.command()(evaluate)


def process(
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; they share the partitions")] = 1,
    app_id: Annotated[str, typer.Option(help="Faust app id = consumer group")] = DEFAULT_APP_ID,
    web_port: Annotated[int | None, typer.Option(help="Ops web port (worker i uses port + i)")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level: crit, error, warn, info, debug")] = "warn",
) -> None:
    """Run the stream processors (matcher, address check) until Ctrl-C.

    Each worker is a child process, supervised: one that exits (a fatal error, its broker replaced by a new
    one) is started again after a back-off that grows while it keeps failing, with one line saying so.
    """
    from shekara.supervise import Backoff, exit_line
    from streams.worker import spawn_worker

    settings = get_settings()
    refuse_weak_secrets(settings, clickhouse=False)
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


def evaluate(
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
) -> None:
    """Run simulated traffic through the real broker and workers; compare the alerts with the ground truth."""
    from streams.evaluate import EvaluationConfig, run_evaluation

    config = EvaluationConfig(
        days=days, seed=seed, scale=scale, faults=faults, crash_after=crash_after, workers=workers, broker_url=broker
    )
    report = run_evaluation(config, work_dir=work_dir, progress=lambda line: typer.echo(line, err=True))
    for line in report.lines():
        typer.echo(line)
    if not report.complete:
        raise typer.Exit(1)
