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
acknowledging the batch (`streams.processor.fatal_exit`) and its restart replays it. A child whose worker died
reads end-of-file on its pipe and exits.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import threading
import traceback
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Protocol

from schemas.serde import Serde
from shekara.collector import fewer_collections
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from shekara.settings import Settings
from streams.matching import AddressesChecked, Matching, RawMessage, Stepped, StepRequest, Worked


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

    async def check_addresses(self, messages: list[RawMessage], stored: Stored, now: datetime) -> AddressesChecked: ...

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

    async def check_addresses(self, messages: list[RawMessage], stored: Stored, now: datetime) -> AddressesChecked:
        return self.matching.check_addresses(messages, stored, now)

    async def admit_ahead(self, messages: list[RawMessage]) -> None:
        pass  # in one process there is no idle core to use: `work` admits them when they are released

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class MatchingProcess:
    """`Matching` in a child process; calls are awaited without blocking the event loop.

    Several calls may be in flight: the child answers them one after the other, in the order they were sent, so
    a processor can hand over its next chunk while it still sends out what came back for the previous one (the
    child then never waits for the worker). One thread sends (pickling a chunk takes a while, and the write
    waits while the child is busy), one receives and resolves the calls in order.
    """

    def __init__(self, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
        self._args = (settings, rules, dict(checkpoints))
        self._conn: Connection | None = None
        self._process: Any = None
        self._receiver: threading.Thread | None = None
        self._lock = threading.Lock()  # sending and the queue of calls awaiting an answer go together
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = deque()
        self._failed: MatchingFailed | None = None
        # A thread of its own: the default executor also runs the output flushes, which must not queue behind us.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matching-send")

    async def work(self, messages: list[RawMessage], stored: Stored, watermarks: Watermarks, now: datetime) -> Worked:
        result: Worked = await self._run(("work", messages, stored, watermarks, now))
        return result

    async def step(self, requests: StepRequest, now: datetime) -> Stepped:
        result: Stepped = await self._run(("step", requests, now))
        return result

    async def check_addresses(self, messages: list[RawMessage], stored: Stored, now: datetime) -> AddressesChecked:
        result: AddressesChecked = await self._run(("check_addresses", messages, stored, now))
        return result

    async def admit_ahead(self, messages: list[RawMessage]) -> None:
        await self._run(("admit_ahead", messages))

    def start(self) -> None:
        """Start the child now (it imports and loads the rules while the worker joins its group), not on first use."""
        with self._lock:
            self._connect()

    async def _run(self, request: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        # Queued for sending now, in call order: the sender thread keeps that order on the pipe.
        await loop.run_in_executor(self._sender, self._send, request, loop, answer)
        return await answer

    def _send(self, request: tuple[Any, ...], loop: asyncio.AbstractEventLoop, answer: asyncio.Future[Any]) -> None:
        # Only this one thread sends, so the calls wait for answers in the order their requests go out. The lock is
        # not held while sending: a send waits while the child is busy, and the receiver must still take the
        # lock to hand over an answer (or the child blocks writing it, and never reads this request).
        with self._lock:
            if self._failed is not None:
                raise self._failed
            conn = self._connect()
            self._waiting.append((loop, answer))
        try:
            conn.send(request)
        except (EOFError, OSError) as exc:
            # The receiver fails every call waiting, this one included, once it reads the end of the pipe.
            with self._lock:
                self._fail(MatchingFailed(f"the matching process is gone: {exc!r}"))
        except BaseException:
            # Not picklable: nothing reached the pipe, so no answer will come for it (the last one queued is ours).
            with self._lock:
                if self._waiting and self._waiting[-1][1] is answer:
                    self._waiting.pop()
            raise

    def _receive(self, conn: Connection) -> None:
        """The receiving thread: answers in order, until the pipe ends."""
        while True:
            try:
                status, payload = conn.recv()
            except (EOFError, OSError) as exc:
                with self._lock:
                    self._fail(MatchingFailed(f"the matching process is gone: {exc!r}"))
                return
            with self._lock:
                loop, answer = self._waiting.popleft()
            if status == "ok":
                loop.call_soon_threadsafe(_resolve, answer, payload, None)
            else:
                loop.call_soon_threadsafe(
                    _resolve, answer, None, MatchingFailed(f"the matching process failed:\n{payload}")
                )

    def _fail(self, failure: MatchingFailed) -> None:
        """(under the lock) Fail every call waiting and every later one."""
        if self._failed is None:
            self._failed = failure
        while self._waiting:
            loop, answer = self._waiting.popleft()
            loop.call_soon_threadsafe(_resolve, answer, None, self._failed)

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
            self._receiver = threading.Thread(
                target=self._receive, args=(parent,), name="matching-receive", daemon=True
            )
            self._receiver.start()
        return self._conn

    def close(self) -> None:
        with self._lock:
            process, conn, receiver = self._process, self._conn, self._receiver
            self._process = self._conn = self._receiver = None
        if process is not None:
            # It keeps nothing: stopping it loses nothing. The receiver then reads the end of the pipe and returns,
            # and only then is the pipe closed (closing it under a thread blocked reading it is not safe).
            process.terminate()
            process.join(5)
        if receiver is not None:
            receiver.join(5)
        if conn is not None:
            conn.close()
        self._sender.shutdown(wait=False)


def _resolve(answer: asyncio.Future[Any], payload: Any, error: BaseException | None) -> None:
    if answer.done():
        return  # the caller gave up (cancelled)
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(payload)


def serve(conn: Connection, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
    """The child's loop: answer `Matching`'s calls until the worker closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the worker stops us
    matching = Matching(settings, rules, checkpoints, Serde.from_settings(settings))
    with fewer_collections():
        _answer(conn, matching)


def _answer(conn: Connection, matching: Matching) -> None:
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
            elif request[0] == "check_addresses":
                reply = ("ok", matching.check_addresses(*request[1:]))
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
