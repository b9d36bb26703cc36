"""What the processors' shell relies on in Faust and aiokafka beyond their documented API, one test each.

faust-streaming is pinned (pyproject.toml); an upgrade that changes any of these fails here with a line that
says which module of ours depends on it, before a worker misbehaves. The one test that talks to a broker
starts a real aiokafka consumer on the embedded one.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import io
import logging
import re
import weakref
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import faust
import faust.streams
import faust.transport.consumer
import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.utils.terminal.spinners import SpinnerHandler
from mode.threads import ServiceThread
from mode.utils.queues import ThrowableQueue

from shekara.settings import REPO_ROOT, FaustSettings, Mode, Settings
from streams import engine
from streams.app import new_app


def _app(settings: Settings | None = None) -> faust.App:
    return new_app(settings or Settings(), "hooks-test")


# --- the pin -------------------------------------------------------------------------------------------------


def test_faust_is_the_pinned_version() -> None:
    pin = re.search(r'"faust-streaming==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert pin, "pyproject.toml must pin faust-streaming exactly: the shell relies on its internals"
    assert version("faust-streaming") == pin.group(1), (
        f"faust-streaming {version('faust-streaming')} installed, the shell is written against {pin.group(1)}: "
        "run tests/streams/test_engine_hooks.py against the new version before moving the pin"
    )


# --- streams.engine: the transport and the fetch wait --------------------------------------------------------


def test_faust_still_hard_codes_the_fetch_wait_streams_engine_replaces() -> None:
    source = inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in source, (
        "Faust's aiokafka driver no longer hard-codes fetch_max_wait_ms=1500 in _create_worker_consumer: "
        "see whether a Faust setting reaches it now, and simplify streams.engine"
    )


def test_the_transport_registry_resolves_the_shekara_scheme_to_streams_engine() -> None:
    assert TRANSPORTS.by_url("shekara://127.0.0.1:9092") is engine.Transport, (
        "faust.transport.drivers.TRANSPORTS no longer takes a registered scheme: streams.engine.register"
    )
    assert issubclass(engine.Transport, driver.Transport) and engine.Transport.Consumer is engine.Consumer


def test_an_app_from_new_app_consumes_through_the_engine_and_produces_with_the_plain_driver() -> None:
    app = _app()
    assert app._consumer is None, "app._consumer is made lazily (streams.worker, streams.web read it unmade)"
    assert type(app.transport) is engine.Transport, "broker_consumer no longer picks the transport (streams.app)"
    consumer: Any = app.consumer
    assert type(consumer) is engine.Consumer
    thread = consumer._thread  # streams.worker reads it (and its thread_loop) to tell a dead consumer thread
    assert type(thread) is engine.ConsumerThread, "Faust's Consumer no longer makes its thread in _new_consumer_thread"
    assert "thread_loop" in inspect.getsource(ServiceThread.__init__), "mode's ServiceThread lost thread_loop"
    assert [str(u) for u in app.conf.broker_producer] == ["kafka://127.0.0.1:19092"]


def test_the_fetch_wait_follows_settings_and_mode() -> None:
    embedded = Settings(broker_url="kafka://h1:1;kafka://h2:2")
    assert engine.consumer_url(embedded) == ("shekara://h1:1?fetch_max_wait_ms=20;shekara://h2:2?fetch_max_wait_ms=20")
    assert engine.fetch_wait_ms(Settings(mode=Mode.SERVER)) == engine.SERVER_FETCH_WAIT_MS
    assert engine.fetch_wait_ms(Settings(faust=FaustSettings(fetch_max_wait_ms=7))) == 7


def test_the_consumer_thread_gives_aiokafka_the_fetch_wait_and_aiokafka_fetches_with_it(settings: Settings) -> None:
    s = settings.model_copy(update={"faust": settings.faust.model_copy(update={"fetch_max_wait_ms": 33})})
    app = _app(s)
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]

    async def waits() -> tuple[int, int]:
        # The worker's own consumer, started for real on the embedded broker: start() builds its Fetcher from the
        # attribute streams.engine sets.
        consumer = thread._create_worker_consumer(app.transport)
        assert isinstance(consumer, aiokafka.AIOKafkaConsumer)
        await consumer.start()
        try:
            return int(consumer._fetch_max_wait_ms), int(consumer._fetcher._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    given, used = asyncio.run(waits())
    assert given == 33, "aiokafka renamed AIOKafkaConsumer._fetch_max_wait_ms (streams.engine sets it)"
    assert used == 33, "AIOKafkaConsumer.start() no longer builds its Fetcher from _fetch_max_wait_ms (streams.engine)"


def test_faust_leaves_the_root_at_debug_and_the_engine_skips_aiokafkas_unwritten_debug_lines() -> None:
    """Faust's worker (--loglevel warn) puts the root logger at DEBUG for its spinner and the level to write on the
    root's handler: streams.engine gives aiokafka's logger INFO then, and leaves it alone under --loglevel debug."""
    worker = faust.Worker(_app(), loglevel="warn", quiet=True, redirect_stdouts=False)
    root = logging.Logger("fake-root", logging.WARNING)
    root.addHandler(logging.StreamHandler(io.StringIO()))
    worker.on_setup_root_logger(root, logging.WARNING)
    assert root.level == logging.DEBUG, "Faust's worker no longer puts the root at DEBUG: streams.engine's doc"
    assert [h.level for h in root.handlers if not isinstance(h, SpinnerHandler)] == [logging.WARNING]
    name = "shekara.test.engine.client"
    try:
        assert engine.skip_unwritten_debug(name, root)
        assert logging.getLogger(name).level == logging.INFO
        assert not logging.getLogger(f"{name}.fetcher").isEnabledFor(logging.DEBUG)
        assert not engine.skip_unwritten_debug(name, root)  # a level is set now: not touched again
    finally:
        logging.getLogger(name).setLevel(logging.NOTSET)
    debugging = logging.Logger("fake-root-debug", logging.DEBUG)
    debugging.addHandler(logging.StreamHandler(io.StringIO()))  # --loglevel debug: a handler writing every level
    assert not engine.skip_unwritten_debug(name, debugging)
    assert logging.getLogger(name).level == logging.NOTSET


# Faust's delivery loop and the fetch it calls, as streams.engine.Consumer._drain_messages copies their checks: a
# change upstream (a new check, a renamed attribute) must be read into the copy before the pin moves.
FAUST_DELIVERY_SOURCES = {
    "_drain_messages": "44a2500309e83c63",
    "getmany": "4b168d84882a70d6",
    "_wait_next_records": "6218e1969a636b3f",
}


@pytest.mark.parametrize("name", sorted(FAUST_DELIVERY_SOURCES))
def test_faust_delivery_loop_is_the_one_streams_engine_copies(name: str) -> None:
    digest = hashlib.sha256(inspect.getsource(getattr(FaustConsumer, name)).encode()).hexdigest()[:16]
    assert digest == FAUST_DELIVERY_SOURCES[name], (
        f"faust.transport.consumer.Consumer.{name} changed: compare it with streams.engine.Consumer._drain_messages "
        "and _deliver (flow, generation, active partitions, read offsets, gaps, commit_every), then update the digest"
    )


def test_faust_fetcher_runs_the_consumers_drain_messages_and_the_engine_overrides_it() -> None:
    assert "consumer._drain_messages(self)" in inspect.getsource(faust.transport.consumer.Fetcher), (
        "Faust's Fetcher no longer calls Consumer._drain_messages(fetcher): streams.engine's delivery loop is not run"
    )
    assert engine.Consumer._drain_messages is not FaustConsumer._drain_messages


def test_every_seek_faust_makes_goes_through_the_three_methods_the_engines_seek_gate_wraps() -> None:
    # streams.engine.SeekGate orders seeks against fetches only if it sees every seek: Faust's perform_seek and
    # seek, its table recovery, and aiokafka's seek_to_committed (which moves only partitions committed past 0).
    assert "self.seek_to_committed()" in inspect.getsource(FaustConsumer.perform_seek)
    assert "self._seek(" in inspect.getsource(FaustConsumer.seek)
    recovery = (Path(faust.__file__).parent / "tables" / "recovery.py").read_text()
    seeks = set(re.findall(r"consumer\.(\w*seek\w*)\(", recovery))
    assert seeks == {"perform_seek", "seek_wait"}, f"Faust's recovery seeks through {seeks}: wrap them (engine)"
    for name in ("seek_to_committed", "_seek", "seek_wait"):
        assert getattr(engine.Consumer, name) is not getattr(driver.Consumer, name), f"engine.Consumer.{name}"
    committed = inspect.getsource(aiokafka.AIOKafkaConsumer.seek_to_committed)
    assert "if offset and offset > 0:" in committed, "aiokafka's seek_to_committed moves other partitions now"


def test_the_consumer_state_the_engines_delivery_loop_reads() -> None:
    consumer: Any = _app().consumer
    read_offset = consumer._read_offset
    assert read_offset[("t", 0)] is None, "Consumer._read_offset no longer defaults to None (streams.engine._deliver)"
    for name in ("_buffered_partitions", "_commit_every", "_n_acked", "suspend_flow", "flow_active", "scheduler"):
        assert hasattr(consumer, name), f"Faust's Consumer.{name} is gone (streams.engine._deliver)"
    for name in ("_wait_next_records", "_to_message", "_add_gap", "highwater", "perform_seek", "commit", "wait_first"):
        assert callable(getattr(consumer, name, None)), f"Faust's Consumer.{name} is gone (streams.engine)"
    assert callable(getattr(consumer.scheduler, "iterate", None)), "Consumer.scheduler.iterate is gone (engine)"
    assert consumer.consumer_stopped_errors, "the aiokafka driver no longer names its consumer-stopped errors"
    assert isinstance(_app().consumer_generation_id, int), "app.consumer_generation_id changed (streams.engine)"


# --- streams.drain, streams.pipeline: batches from the channel's queue -----------------------------------------


def test_a_channel_has_the_queue_streams_drain_empties() -> None:
    queue = _app().channel().queue
    assert isinstance(queue, ThrowableQueue), "Faust channels no longer hold a mode ThrowableQueue (streams.drain)"
    for name in ("get", "get_nowait", "empty", "throw"):
        assert callable(getattr(queue, name, None)), f"ThrowableQueue.{name} is gone (streams.drain)"


def test_an_event_is_made_and_acknowledged_as_streams_raw_and_pipeline_expect() -> None:
    app = _app()
    params = list(inspect.signature(app.conf.Event.__init__).parameters)
    assert params[:6] == ["self", "app", "key", "value", "headers", "message"], "Event(...) changed (streams.raw)"
    assert callable(getattr(app.conf.Event, "ack", None)), "Event.ack is gone (streams.pipeline acknowledges)"
    assert "app" in inspect.signature(faust.Schema.compile).parameters, "Schema.compile(app) changed (streams.raw)"


# --- streams.stores: the partition context of table reads and writes -----------------------------------------


class _Event:
    """Stands for a Faust event: the context holds a weak reference to one."""


def test_the_current_event_context_variable_decides_a_tables_partition() -> None:
    var = faust.streams._current_event
    assert isinstance(var, contextvars.ContextVar), "faust.streams._current_event is gone (streams.stores)"
    event = _Event()
    token = var.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        assert faust.streams.current_event() is event, "current_event() no longer reads _current_event"
    finally:
        var.reset(token)
    tables = Path(faust.__file__).parent / "tables" / "base.py"
    assert "current_event()" in tables.read_text(), "Faust tables no longer find the partition from current_event"


def test_a_table_has_the_store_changelog_and_recovery_hook_the_shell_uses() -> None:
    table = _app().Table("hooks", key_type=bytes, value_type=bytes)
    assert hasattr(table, "data") and callable(getattr(table.data, "__setitem__", None)), "table.data (streams.stores)"
    assert table.changelog_topic.get_topic_name() == "hooks-test-hooks-changelog"
    assert callable(getattr(table, "on_recover", None)), "Table.on_recover is gone (streams.topology recovery)"


# --- streams.topology, streams.web: consumer and app internals ------------------------------------------------


def test_the_consumer_and_app_methods_recovery_and_alignment_call() -> None:
    for name in ("seek_to_committed", "earliest_offsets", "seek", "highwater", "assignment"):
        assert callable(getattr(FaustConsumer, name, None)), f"Faust Consumer.{name} is gone (streams.topology)"
    assert "_committed_offset" in inspect.getsource(FaustConsumer.__init__), (
        "Faust's Consumer no longer keeps _committed_offset (streams.web reads consumer lag from it)"
    )
    app = _app()
    assert hasattr(type(app), "rebalancing"), "App.rebalancing is gone (streams.topology tick)"
    assert callable(getattr(app.flow_control, "suspend", None)), "flow_control.suspend (streams.topology recovery)"
    assert callable(getattr(app.assignor, "assigned_actives", None)), "assignor.assigned_actives (streams.topology)"


def test_flow_resuming_still_clears_the_channel_queues() -> None:
    # Why streams.drain moves events out of the queue at once (its module doc): resuming flow after recovery empties
    # every queue under flow control. If that stops, the buffer is no longer needed; if it moves, it must follow.
    app = _app()
    queue = app.channel().queue  # made as Faust makes an agent's channel queue
    queue.put_nowait(1)
    app.flow_control.resume()
    assert queue.empty(), "mode's FlowControlEvent.resume() no longer clears its queues: revisit streams.drain"
    recovery = (Path(faust.__file__).parent / "tables" / "recovery.py").read_text()
    assert "flow_control.resume" in recovery, "Faust's table recovery no longer resumes flow (streams.topology)"


@pytest.mark.parametrize("name", ["FaustSettings.fetch_max_wait_ms", "FaustSettings.batch_within"])
def test_the_settings_the_engine_reads_exist(name: str) -> None:
    field = name.split(".")[1]
    assert field in FaustSettings.model_fields


def test_faust_still_treats_a_committed_offset_of_zero_as_none_after_recovery() -> None:
    # Why `rewind_uncommitted` (streams.topology) seeks partitions without a commit to their beginning itself.
    source = inspect.getsource(FaustConsumer.perform_seek)
    assert "offset if offset else None" in source, (
        "Faust's Consumer.perform_seek changed how it reads committed offsets: revisit rewind_uncommitted"
    )
