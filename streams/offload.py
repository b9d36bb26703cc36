"""Where the matcher's computation (`streams.matching.Matching`) runs: in the worker, or in a process of its own.

A Faust worker is one Python process, and one Python process uses one core. Faust's own per-message work
(fetching, the conductor, acknowledgements) fills most of that core, and decoding, validating and stepping
each traveller needed as much again: on this 2-core machine a worker ran at half the speed of a bare Faust
loop while the second core idled. `MatchingProcess` moves that computation into a child process; the worker's
event loop goes on fetching and acknowledging while the child works, and only bytes cross between them (raw
messages and stored states in; stored states, encoded outputs and verdicts out).

`LocalMatching` runs the same code in the worker itself (``faust.matching_process = false``): for a machine
with a single core, and for tests that want no second process.

The child keeps nothing between calls but verdicts admitted ahead (a cache, checked against the message), so
losing it loses nothing: a child that dies or fails makes the call raise, the worker stops without
acknowledging the batch (`streams.topology.fatal_exit`) and its restart replays it. A child whose worker died
reads end-of-file on its pipe and exits.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import signal
import threading
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Protocol

from schemas.serde import Serde
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from shekara.settings import Settings
from streams.matching import Matching, RawMessage, Stepped, StepRequest, Worked


class MatchingFailed(RuntimeError):
    """The matching process failed or is gone: the batch cannot be completed."""


# (partition, message key) -> stored value; partition -> watermark before the chunk
Stored = dict[tuple[int, bytes], bytes]
Watermarks = dict[int, datetime | None]


class MatchingRunner(Protocol):
    async def work(
        self, messages: list[RawMessage], stored: Stored, watermarks: Watermarks, now: datetime
    ) -> Worked: ...

    async def step(self, requests: StepRequest, now: datetime) -> Stepped: ...

    async def admit_ahead(self, messages: list[RawMessage]) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class LocalMatching:
    """`Matching` in the worker's own process."""

    def __init__(self, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
        self.matching = Matching(settings, rules, checkpoints, Serde.from_settings(settings))

    async def work(self, messages: list[RawMessage], stored: Stored, watermarks: Watermarks, now: datetime) -> Worked:
        return self.matching.work(messages, stored, watermarks, now)

    async def step(self, requests: StepRequest, now: datetime) -> Stepped:
        return self.matching.step(requests, now)

    async def admit_ahead(self, messages: list[RawMessage]) -> None:
        pass  # in one process there is no idle core to use: `work` admits them when they are released

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class MatchingProcess:
    """`Matching` in a child process; calls are awaited without blocking the event loop."""

    def __init__(self, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
        self._args = (settings, rules, dict(checkpoints))
        self._conn: Connection | None = None
        self._process: Any = None
        self._lock = threading.Lock()  # one request/response at a time on the pipe
        # A thread of its own: the default executor also runs the output flushes, which must not queue behind us.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matching")

    async def work(self, messages: list[RawMessage], stored: Stored, watermarks: Watermarks, now: datetime) -> Worked:
        result: Worked = await self._run(("work", messages, stored, watermarks, now))
        return result

    async def step(self, requests: StepRequest, now: datetime) -> Stepped:
        result: Stepped = await self._run(("step", requests, now))
        return result

    async def admit_ahead(self, messages: list[RawMessage]) -> None:
        await self._run(("admit_ahead", messages))

    def start(self) -> None:
        """Start the child now (it imports and loads the rules while the worker joins its group), not on first use."""
        with self._lock:
            self._connect()

    async def _run(self, request: tuple[Any, ...]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, request)

    def _call(self, request: tuple[Any, ...]) -> Any:
        with self._lock:
            conn = self._connect()
            try:
                conn.send(request)
                status, payload = conn.recv()
            except (EOFError, OSError) as exc:
                raise MatchingFailed(f"the matching process is gone: {exc!r}") from exc
        if status != "ok":
            raise MatchingFailed(f"the matching process failed:\n{payload}")
        return payload

    def _connect(self) -> Connection:
        if self._conn is None:
            # Spawned, not forked: the worker has threads (Faust's consumer, librdkafka) a fork would copy mid-flight.
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            self._process = context.Process(
                target=serve, args=(child, *self._args), name="shekara-matching", daemon=True
            )
            self._process.start()
            child.close()
            self._conn = parent
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the child reads end-of-file and exits
                self._conn = None
            if self._process is not None:
                self._process.join(5)
                if self._process.is_alive():
                    self._process.terminate()
                self._process = None
        self._executor.shutdown(wait=False)


def serve(conn: Connection, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
    """The child's loop: answer `work`, `step` and `admit_ahead` requests until the worker closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the worker stops us
    # A chunk builds and drops tens of thousands of small objects, none in cycles that matter: fewer collections.
    gc.set_threshold(50_000, 20, 100)
    matching = Matching(settings, rules, checkpoints, Serde.from_settings(settings))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        try:
            if request[0] == "work":
                reply: tuple[str, Any] = ("ok", matching.work(*request[1:]))
            elif request[0] == "step":
                reply = ("ok", matching.step(*request[1:]))
            elif request[0] == "admit_ahead":
                reply = ("ok", matching.admit_ahead(*request[1:]))
            else:
                reply = ("error", f"unknown request {request[0]!r}")
        except Exception:
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
