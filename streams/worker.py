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
from streams.app import DEFAULT_APP_ID


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
    app_id: str = DEFAULT_APP_ID,
    status_file: Path | None = None,
    web_port: int | None = None,
    log_path: Path | None = None,
    loglevel: str = "warn",
) -> subprocess.Popen[bytes]:
    """Start ``python -m streams.worker`` in a new process group (so it can be killed alone)."""
    cmd = [sys.executable, "-m", "streams.worker", "--app-id", app_id, "--loglevel", loglevel]
    if status_file is not None:
        cmd += ["--status-file", str(status_file)]
    if web_port is not None:
        cmd += ["--web-port", str(web_port)]
    out: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            cmd, env=worker_env(settings), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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
    app_id: str = DEFAULT_APP_ID,
    status_file: Path | None = None,
    web_port: int | None = None,
    loglevel: str = "warn",
) -> None:
    """Run a processor worker in this process until stopped (Ctrl-C / SIGTERM)."""
    import faust

    from streams.app import create_app

    app, _ = create_app(settings, app_id=app_id, web_port=web_port, status_file=status_file)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__)
    parser.add_argument("--app-id", default=DEFAULT_APP_ID, help="Faust app id = consumer group")
    parser.add_argument("--status-file", type=Path, default=None, help="write a JSON status here every second")
    parser.add_argument("--web-port", type=int, default=None, help="port of the ops web views")
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    args = parser.parse_args(argv)
    settings = Settings()
    refuse_weak_secrets(settings, clickhouse=False)
    logs.configure(settings.log_level, settings.log_format)
    run_worker(
        settings, app_id=args.app_id, status_file=args.status_file, web_port=args.web_port, loglevel=args.loglevel
    )


if __name__ == "__main__":
    main()
