"""The whole pipeline on one machine: embedded broker, processor workers and the ClickHouse sink as processes.

What `shekara demo` and the fault runs stand on. The workers and the sink are the same programs as in
production (`python -m streams.worker`, `shekara sink`), started as subprocesses with the parent's settings in
their environment, so they can be killed with SIGKILL and started again like real services.

The stack supervises them as `shekara process` does its workers: a worker or the sink that exits is started
again after a back-off (`streams.supervise`), with one line in the log. A worker exits of its own accord on a
fatal error, and a worker or the sink when the broker was replaced by a new one (`shekara.broker_watch`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker, free_port, launch, port_in_use
from shekara.logs import get_logger
from shekara.settings import REPO_ROOT, Settings
from streams.supervise import Backoff, exit_line

log = get_logger(__name__)

Lag = Callable[[int], None]  # called with the messages still to do while waiting


class StackError(RuntimeError):
    """A component of the stack exited or never caught up."""


class Stack:
    """Broker (embedded unless `settings.broker_url` already answers), `workers` processors and a sink.

    Use as a context manager; `stop()` stops everything it started. Logs go to `work_dir`.
    """

    def __init__(
        self,
        settings: Settings,
        work_dir: Path,
        *,
        workers: int = 1,
        sink: bool = True,
        app_id: str | None = None,
        web_port: int | None = None,
        embedded_broker: bool = True,
        advertised_port: int | None = None,
        broker_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.app_id = app_id or settings.faust.app_id
        self.worker_count = workers
        self.with_sink = sink
        self.web_port = web_port
        self.embedded_broker = embedded_broker
        self.advertised_port = advertised_port  # the embedded broker behind a proxy: clients go through it
        self.broker_port = broker_port
        self.broker: EmbeddedBroker | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = []
        self.sink: subprocess.Popen[bytes] | None = None
        self.restarts: dict[str, int] = {"worker": 0, "sink": 0}
        self.retired_status: list[dict[str, Any] | None] = []  # last status of each worker killed
        self.exits: list[str] = []  # one line per process that exited by itself and was restarted
        self._backoff: dict[str, Backoff] = {}
        self._due: dict[str, float] = {}  # process name -> when to start it again
        self.supervising = True  # False while the broker restarts: the exited processes wait for it

    # --- life cycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded_broker:
            self.broker = launch(self.broker_port, self.work_dir / "broker.log", advertised_port=self.advertised_port)
            url = f"kafka://127.0.0.1:{self.advertised_port}" if self.advertised_port else self.broker.url
            self.settings = self.settings.model_copy(update={"broker_url": url})
        wait_for_broker(self.settings)
        ensure_topics(self.settings)
        if self.web_port is not None and port_in_use(self.web_port):
            self.web_port = free_port()
        self.workers = [self._spawn_worker(i) for i in range(self.worker_count)]
        if self.with_sink:
            self.sink = self._spawn_sink()
        now = time.monotonic()
        for name in [f"worker {i}" for i in range(self.worker_count)] + ["sink"]:
            self._backoff.setdefault(name, Backoff()).started(now)

    def stop(self) -> None:
        """Stop the sink first (it commits what it has written), then the workers, then the broker."""
        procs = [p for p in [self.sink, *self.workers] if p is not None]
        for p in procs:
            _terminate(p)
        self.sink = None
        self.workers = []
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    # --- processes --------------------------------------------------------------------------------------------

    def _spawn_worker(self, i: int) -> subprocess.Popen[bytes]:
        from streams.worker import spawn_worker

        settings = self.settings
        if self.web_port is None:
            settings = settings.model_copy(update={"faust": settings.faust.model_copy(update={"web_enabled": False})})
        return spawn_worker(
            settings,
            app_id=self.app_id,
            status_file=self.work_dir / f"worker-{i}.json",
            web_port=None if self.web_port is None else self.web_port + i,
            log_path=self.work_dir / f"worker-{i}.log",
        )

    def _spawn_sink(self) -> subprocess.Popen[bytes]:
        from streams.worker import worker_env

        with open(self.work_dir / "sink.log", "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "sink"],
                env=worker_env(self.settings),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_worker(self, i: int = 0) -> None:
        """SIGKILL worker `i` (no shutdown of any kind) and start a new one in its place."""
        from streams.worker import read_status

        proc = self.workers[i]
        if proc is not None:
            _kill(proc)
            self.retired_status.append(read_status(self.work_dir / f"worker-{i}.json"))
        self.restarts["worker"] += 1
        self.workers[i] = self._spawn_worker(i)

    def worker_statuses(self) -> list[dict[str, Any]]:
        """The last status of every worker process this stack ran: those killed, then those running."""
        from streams.worker import read_status

        current = [read_status(self.work_dir / f"worker-{i}.json") for i in range(len(self.workers))]
        return [st for st in (*self.retired_status, *current) if st is not None]

    def kill_sink(self) -> None:
        """SIGKILL the sink and start a new one: it must find its recorded batch intent and replay it."""
        if self.sink is not None:
            _kill(self.sink)
        self.restarts["sink"] += 1
        self.sink = self._spawn_sink()

    def stop_sink(self) -> None:
        """Stop the sink cleanly: it releases the chDB directory so this process can open it."""
        if self.sink is not None:
            _terminate(self.sink, timeout=60.0)
            self.sink = None

    def add_worker(self) -> int:
        """Start one more worker in the group (a rebalance); returns its index."""
        self.workers.append(self._spawn_worker(len(self.workers)))
        self._backoff.setdefault(f"worker {len(self.workers) - 1}", Backoff()).started(time.monotonic())
        return len(self.workers) - 1

    def retire_worker(self, i: int) -> None:
        """SIGKILL worker `i` for good (a rebalance: its partitions go to the others); its last status is kept."""
        from streams.worker import read_status

        proc = self.workers[i]
        if proc is not None:
            _kill(proc)
            self.retired_status.append(read_status(self.work_dir / f"worker-{i}.json"))
            (self.work_dir / f"worker-{i}.json").unlink(missing_ok=True)
        self.workers[i] = None

    def restart_broker(
        self,
        down: float,
        *,
        make_topics: Callable[[], object] | None = None,
        release: Callable[[], object] | None = None,
        exit_timeout: float = 60.0,
    ) -> None:
        """Stop the embedded broker and start a new one on the same port after `down` s (memory only: empty).

        `make_topics` (default `ensure_topics`) runs as soon as the new broker listens, then `release` (a proxy
        holding the clients off: topics a client creates by using them get the broker's default partition
        count, and Tansu cannot make a deleted topic consumable again). Every worker and the sink must then
        notice the new broker and exit with one line (`shekara.broker_watch`); until they have, nothing is
        restarted, then the supervision starts fresh processes. StackError if one never noticed (half-dead).
        """
        assert self.broker is not None, "restart_broker needs the embedded broker"
        port, log_path = self.broker.port, self.broker.log_path
        running = [p for p in [self.sink, *self.workers] if p is not None]
        self.supervising = False
        try:
            self.broker.stop()
            time.sleep(down)
            self.broker = launch(port, log_path, advertised_port=self.advertised_port)
            (make_topics or (lambda: ensure_topics(self.settings)))()
            if release is not None:
                release()
            deadline = time.monotonic() + exit_timeout
            while any(p.poll() is None for p in running):
                if time.monotonic() > deadline:
                    raise StackError(f"a worker or the sink still runs {exit_timeout:.0f} s after a broker restart")
                time.sleep(0.2)
        finally:
            self.supervising = True

    def check_alive(self) -> None:
        """Restart (after a back-off) a worker or the sink that exited by itself; StackError if the broker died."""
        if self.broker is not None and not self.broker.alive():
            raise StackError(f"the broker exited; see {self.work_dir / 'broker.log'}")
        if not self.supervising:
            return
        now = time.monotonic()
        for i, p in enumerate(self.workers):
            if p is not None and p.poll() is not None:
                self.workers[i] = self._restart(f"worker {i}", p, now, partial(self._respawn_worker, i))
        if self.sink is not None and self.sink.poll() is not None:
            self.sink = self._restart("sink", self.sink, now, self._respawn_sink)

    def _restart(
        self, name: str, proc: subprocess.Popen[bytes], now: float, spawn: Callable[[], subprocess.Popen[bytes]]
    ) -> subprocess.Popen[bytes]:
        """The process to keep in `name`'s place: `proc` until its back-off is over, then a new one."""
        backoff = self._backoff.setdefault(name, Backoff())
        if name not in self._due:
            delay = backoff.exited(now)
            self._due[name] = now + delay
            line = exit_line(name, proc.returncode, delay, backoff.restarts)
            self.exits.append(line)
            log.warning(
                line, log=str(self.work_dir / ("sink.log" if name == "sink" else f"{name.replace(' ', '-')}.log"))
            )
        if now < self._due[name]:
            return proc
        del self._due[name]
        backoff.started(now)
        return spawn()

    def _respawn_worker(self, i: int) -> subprocess.Popen[bytes]:
        from streams.worker import read_status

        self.retired_status.append(read_status(self.work_dir / f"worker-{i}.json"))
        self.restarts["worker"] += 1
        return self._spawn_worker(i)

    def _respawn_sink(self) -> subprocess.Popen[bytes]:
        self.restarts["sink"] += 1
        return self._spawn_sink()

    # --- progress ---------------------------------------------------------------------------------------------

    @property
    def source_topics(self) -> list[str]:
        t = self.settings.topics
        # identity-links: a renewal's handoff is processed like a source message (streams.handoff)
        return [t.crossings, t.registrations, t.status_changes, t.address_registrations, t.identity_links]

    @property
    def sink_topics(self) -> list[str]:
        from sinks.writer import routes

        return list(routes(self.settings))

    def wait_processed(self, *, timeout: float = 900.0, on_lag: Lag | None = None) -> None:
        """Block until the processors have committed every source message (and stayed caught up a moment)."""
        self._wait(self.app_id, self.source_topics, timeout, on_lag)

    def wait_landed(self, *, timeout: float = 900.0, on_lag: Lag | None = None) -> None:
        """Block until the sink has committed every message of the topics it lands (inserted before commit)."""
        self._wait(self.settings.sink.group_id, self.sink_topics, timeout, on_lag)

    def lag(self, group: str, topics: list[str]) -> int:
        from harness.readback import GroupProgress

        progress = GroupProgress(self.settings, group, topics)
        try:
            return progress.lag()
        finally:
            progress.close()

    def _wait(self, group: str, topics: list[str], timeout: float, on_lag: Lag | None, settle: float = 2.0) -> None:
        from harness.readback import GroupProgress

        progress = GroupProgress(self.settings, group, topics)
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        try:
            while True:
                self.check_alive()
                try:
                    lag = progress.lag()
                except Exception as exc:  # the broker may be briefly busy (rebalance): ask again
                    log.debug("cannot read the group's offsets yet", group=group, error=str(exc))
                    lag = -1
                if on_lag is not None and lag >= 0:
                    on_lag(lag)
                if lag == 0:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= settle:
                        return
                else:
                    quiet_since = None
                if time.monotonic() > deadline:
                    raise StackError(f"consumer group {group} still lags {lag} messages after {timeout:.0f} s")
                time.sleep(0.25)
        finally:
            progress.close()


def _terminate(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("process did not stop on SIGTERM; killing it", pid=proc.pid)
        _kill(proc)


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
