"""Run one processor worker: ``python -m streams.worker --app-id ID`` (settings from ``SHEKARA_*``).

Also the helpers to start workers as subprocesses (evaluation, tests, `shekara process --workers N`): the
parent's `Settings` travel to the child as environment variables, so a child sees exactly the same topics,
broker, keys and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shekara import logs
from shekara.settings import REPO_ROOT, Settings, dump_with_secrets, refuse_weak_secrets


def worker_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that rebuilds `settings` in a child process (``Settings()`` reads ``SHEKARA_*``)."""
    env = dict(os.environ if base is None else base)
    for name in [k for k in env if k.startswith("SHEKARA_")]:
        del env[name]
    data = dump_with_secrets(settings)  # masked secrets would reach the child as "**********"
    for name, value in data.items():
        if value is None:
            continue
        env[f"SHEKARA_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    # Children must not pick up a different TOML file than the one the parent already folded into `settings`.
    env["SHEKARA_CONFIG"] = str(Path(settings.data_dir) / "no-such-config.toml")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn_worker(
    settings: Settings,
    *,
    app_id: str | None = None,
    status_file: Path | None = None,
    web_port: int | None = None,
    log_path: Path | None = None,
    loglevel: str = "warn",
    inherit_output: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``python -m streams.worker`` in a new process group (so it can be killed alone).

    Its output goes to `log_path`, else to this process's (`inherit_output`: a supervisor's console), else nowhere.
    """
    cmd = [sys.executable, "-m", "streams.worker", "--app-id", app_id or settings.faust.app_id, "--loglevel", loglevel]
    if status_file is not None:
        cmd += ["--status-file", str(status_file)]
    if web_port is not None:
        cmd += ["--web-port", str(web_port)]
    out: Any = open(log_path, "ab") if log_path else None if inherit_output else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            cmd,
            env=worker_env(settings),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=None if out is None else subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()


def read_status(path: Path) -> dict[str, Any] | None:
    """A worker's last status (written every second), or None if it has not written one yet."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for_assignment(paths: list[Path], timeout: float = 60.0) -> None:
    """Block until every worker reports owning at least one partition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [read_status(p) for p in paths]
        if all(s is not None and s.get("partitions") for s in statuses):
            return
        time.sleep(0.2)
    raise TimeoutError(f"workers did not get partitions within {timeout:.0f}s: {paths}")


def run_worker(
    settings: Settings,
    *,
    app_id: str | None = None,
    status_file: Path | None = None,
    web_port: int | None = None,
    loglevel: str = "warn",
) -> None:
    """Run a processor worker in this process until stopped (Ctrl-C / SIGTERM).

    Exits with `EXIT_BROKER_GONE` and one line when the broker was replaced by a new one or the Kafka consumer
    died under the worker (`shekara.broker_watch`): the supervisor (`shekara process`, `Stack`) starts a fresh one.
    """
    import faust

    from shekara.broker_watch import BrokerWatch, await_topics, throttle_loggers
    from streams.app import create_app

    app_id = app_id or settings.faust.app_id
    await_topics(settings, changelogs_of=app_id)  # not with a count some client's use gave them
    app, _ = create_app(settings, app_id=app_id, web_port=web_port, status_file=status_file)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    throttle_loggers(("aiokafka",))  # an outage costs a few lines, not twenty a second

    def stalled() -> str | None:
        # mode swallows "Event loop is closed" in the worker's tasks (logged at info) once the consumer's thread
        # has stopped and closed its loop: the worker stays up and consumes nothing. Tell that state apart.
        thread = getattr(app._consumer, "_thread", None)  # the consumer, once the app made it (never make it here)
        loop = getattr(thread, "thread_loop", None)
        if loop is None or not loop.is_closed() or worker.should_stop or app.should_stop:
            return None
        return "the Kafka consumer's thread stopped (its event loop is closed) and nothing is consumed"

    BrokerWatch(settings, on_gone=_exit_gone, stalled=stalled).start()
    worker.execute_from_commandline()


def _exit_gone(line: str) -> None:
    """End the worker at once: nothing of its current batch is acknowledged, so a fresh worker replays it."""
    from shekara.broker_watch import EXIT_BROKER_GONE

    logs.get_logger(__name__).critical(line)
    sys.stderr.flush()
    os._exit(EXIT_BROKER_GONE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__)
    parser.add_argument("--app-id", default=None, help="Faust app id = consumer group (default: settings)")
    parser.add_argument("--status-file", type=Path, default=None, help="write a JSON status here every second")
    parser.add_argument("--web-port", type=int, default=None, help="port of the ops web views")
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    args = parser.parse_args(argv)
    settings = Settings()
    refuse_weak_secrets(settings, clickhouse=False)
    logs.configure(settings.log_level, settings.log_format)
    from shekara.broker_watch import EXIT_BROKER_GONE, BrokerGone

    try:
        run_worker(
            settings, app_id=args.app_id, status_file=args.status_file, web_port=args.web_port, loglevel=args.loglevel
        )
    except BrokerGone as exc:  # the topics are not there as the catalogue says: one line, the supervisor retries
        logs.get_logger(__name__).critical(str(exc))
        sys.exit(EXIT_BROKER_GONE)


if __name__ == "__main__":
    main()
