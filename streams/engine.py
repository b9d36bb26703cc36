"""The processors' Kafka transport: Faust's aiokafka driver with the fetch wait taken from settings.

Faust's aiokafka driver creates its consumer with ``fetch_max_wait_ms=1500`` written into the call
(faust/transport/drivers/aiokafka.py, `_create_worker_consumer`), and no setting reaches it. How long that costs
depends on the broker:

- Apache Kafka parks a fetch that finds nothing new in its purgatory and answers it the moment `fetch_min_bytes`
  (aiokafka's default: 1 byte) have been appended, or after ``fetch.max.wait.ms`` at the latest. The wait is an
  upper bound: new records go out at once, and a long wait only saves empty round trips (Kafka's default: 500 ms).
- The embedded Tansu broker answers an empty fetch only when the wait is over: a record appended meanwhile waits
  for it. aiokafka keeps one fetch in flight per broker, so every partition's new records waited up to 1.5 s.

So the wait is `settings.faust.fetch_max_wait_ms` (`fetch_wait_ms` picks it by mode when unset): short with the
embedded broker, where it is how often an idle consumer looks, and Kafka's default with a real one.

Also here: aiokafka's debug lines are not built when nothing would write them. Faust's worker leaves the root
logger at DEBUG whatever ``--loglevel`` says (`faust.worker.Worker._setup_spinner_handler`: its start-up spinner
turns on every line, the level stays after start-up), with the level asked of the root's handler instead. aiokafka
logs at debug per partition of every fetch and per request and response, so each of those lines was a
`LogRecord` passed through the filters and handlers and dropped: 30 % of an idle worker's fetch loop (85-90 ->
59 ms CPU/s), whose empty fetches with the embedded broker go every `EMBEDDED_FETCH_WAIT_MS`.

Also here: Faust's delivery loop (`Consumer._drain_messages`, faust/transport/consumer.py) asks for the next records
only when it has delivered every record of the last `getmany`, and delivers each through `wait_first`: four new
futures and an `asyncio.wait` per record, so that a record blocked on a full queue or on flow control gives way when
a rebalance suspends the flow. On a loaded event loop that cost 1 to 2 ms a record, records waited in aiokafka's
buffer behind the ones being delivered, and aiokafka sends no new fetch for a partition while records of it are
buffered: the tail of the alerts' latency (docs/performance.md). `Consumer._drain_messages` below keeps Faust's
checks (flow, generation, active partitions, read offsets and gaps, commit_every) and changes two things:
- the next fetch is asked for as soon as the last one returned, while its records are delivered (one fetch ahead,
  so at most one more `max_poll_records` in memory);
- one fetch's records are delivered by one task raced against the suspended flow, records in turn with a turn for
  the other tasks every `YIELD_EVERY` records. A rebalance stops the flow: the delivery is cancelled where it is, as
  Faust's per-record race would, and records not delivered are fetched again after the seek to the committed
  offsets. Records of a fetch that returned under an older generation are dropped for the same reason.

A fetch ahead is in flight most of the time, so it meets the seeks of a rebalance (Faust's recovery seeks every
partition to its committed offset, `streams.topology` seeks partitions never committed to their beginning). A fetch
asked for before a seek and run in the consumer thread across it returns either records from before the seek
(to be dropped: the seek moved the partition back) or from after it (to be delivered: aiokafka has moved past
them), with nothing to tell which. Delivered wrongly, the processor met an offset beyond the committed one first
and the refetched records in between fell below Faust's read offset: lost (the rebalance fault run, 613 source
offsets). `SeekGate` orders them instead: a seek waits for the fetch in flight, no fetch or delivery starts while
a seek is under way, a seek interrupts the delivery under way, and records of a partition that a seek moved after
their fetch was asked for are dropped. A delivery a seek cut short has its other partitions sought back to their
first record not delivered (`Consumer._refetch_rest`).

Registered through Faust's own transport registry (`faust.transport.drivers.TRANSPORTS`) under the scheme
``shekara``; `streams.app` points ``broker_consumer`` at it. Nothing installed is patched. What this relies on
in Faust and aiokafka is checked by tests/streams/test_engine_hooks.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.utils.terminal.spinners import SpinnerHandler

from shekara.settings import Mode, Settings

SCHEME = "shekara"
WAIT_PARAM = "fetch_max_wait_ms"
# Records delivered between two turns of the event loop for the other tasks (the matcher takes what is buffered in
# its turn): one fetch's records no longer go one loop turn each, nor all in one burst.
YIELD_EVERY = 16
# How long a fetch waits for records (Faust's: 1 s). A seek waits for the fetch in flight (SeekGate), so this bounds
# what a seek can wait during a rebalance; an idle consumer asks aiokafka this often.
GETMANY_TIMEOUT_S = 0.2
EMBEDDED_FETCH_WAIT_MS = 20  # Tansu: how often an idle consumer asks for new records
SERVER_FETCH_WAIT_MS = 500  # Kafka answers as soon as a record is there; this only bounds empty round trips


def fetch_wait_ms(settings: Settings) -> int:
    """The processors' fetch wait: the setting, else by mode (module doc)."""
    if settings.faust.fetch_max_wait_ms is not None:
        return settings.faust.fetch_max_wait_ms
    return EMBEDDED_FETCH_WAIT_MS if settings.mode is Mode.EMBEDDED else SERVER_FETCH_WAIT_MS


def consumer_url(settings: Settings) -> str:
    """`settings.broker_url` with this transport's scheme (Faust picks a transport by URL scheme) and the fetch wait
    as a query parameter (aiokafka is given only host and port of each URL: `driver.server_list`)."""
    wait = fetch_wait_ms(settings)
    hosts = [u.split("://", 1)[-1] for u in settings.broker_url.split(";")]
    return ";".join(f"{SCHEME}://{h}?{WAIT_PARAM}={wait}" for h in hosts)


def skip_unwritten_debug(name: str = "aiokafka", root: logging.Logger = logging.root) -> bool:
    """Give logger `name` the level INFO when no handler of the root would write its debug lines (module doc).

    Only a logger whose level nobody set, and only while the root takes debug lines: with ``--loglevel debug``
    (a root handler at DEBUG or NOTSET) they are built and written as before. Faust's spinner handler does not
    count: it writes nothing once start-up is over. Whether it changed the level."""
    logger = logging.getLogger(name)
    writers = [h.level for h in root.handlers if not isinstance(h, SpinnerHandler)]
    if logger.level != logging.NOTSET or root.getEffectiveLevel() > logging.DEBUG:
        return False
    if not writers or min(writers) <= logging.DEBUG:  # no handler: nothing configured, leave it be
        return False
    logger.setLevel(logging.INFO)
    return True


class ConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread; its aiokafka consumer's fetch wait is the transport URL's `fetch_max_wait_ms`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        # The worker has configured logging by now (mode's Worker does it before starting the app's services).
        skip_unwritten_debug()
        consumer = super()._create_worker_consumer(transport)
        wait = transport.url[0].query.get(WAIT_PARAM)
        if wait is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which happens after this returns.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


@dataclass(frozen=True, slots=True)
class Fetch:
    """One `getmany`'s records and what held when it was asked for."""

    epoch: int  # `SeekGate.epoch` when it was asked for: a partition moved by a later seek makes its records stale
    generation: int
    records: Any  # aiokafka's {TopicPartition: [ConsumerRecord]}; None: nothing asked (the consumer is stopping)
    active: Any  # the partitions Faust fetches (its live set: pausing a partition removes it from this very set)


class SeekGate:
    """Seeks and fetches take turns, and which partitions each seek moved is remembered (module doc).

    A fetch asked for before a seek may hold records from before it (the seek moved the partition back: deliver
    them and the processor meets offsets ahead of what it expects, then refetched ones as duplicates) or, had it
    run while the seek was under way, from after it (aiokafka moved past them: drop them and they are lost). So a
    seek waits for the fetch in flight to come back, and a fetch is not asked for while a seek is under way: every
    fetch is then wholly before or wholly after each seek, and records of a partition a later seek moved are
    dropped, to be fetched again. Deliveries wait for seeks too, and a seek interrupts the delivery under way: a
    record held in the conductor (flow control suspended, a full queue) would reach an agent after the seek."""

    def __init__(self) -> None:
        self.epoch = 0  # seeks begun
        self._moved: dict[Any, int] = {}  # partition -> the epoch of the last seek that moved it
        self._seeks = 0  # under way
        self._fetches = 0
        self._no_seek = asyncio.Event()
        self._no_seek.set()
        self._no_fetch = asyncio.Event()
        self._no_fetch.set()
        self._interrupt: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether a seek is under way."""
        return self._seeks > 0

    def stale(self, tp: Any, epoch: int) -> bool:
        """Whether a seek begun after `epoch` moved `tp`: its records fetched at `epoch` are to be fetched again."""
        return self._moved.get(tp, 0) > epoch

    async def settled(self) -> None:
        """Return when no seek is under way."""
        while self._seeks:
            await self._no_seek.wait()

    def interruption(self) -> asyncio.Future[None]:
        """Done when the next seek begins."""
        if self._interrupt is None or self._interrupt.done():
            self._interrupt = asyncio.get_running_loop().create_future()
        return self._interrupt

    @asynccontextmanager
    async def fetching(self) -> AsyncIterator[int]:
        """A fetch: waits for the seeks under way, holds the next ones off; yields the epoch it is asked at."""
        await self.settled()
        self._fetches += 1
        self._no_fetch.clear()
        try:
            yield self.epoch
        finally:
            self._fetches -= 1
            if not self._fetches:
                self._no_fetch.set()

    @asynccontextmanager
    async def seeking(self) -> AsyncIterator[Callable[[Iterable[Any]], None]]:
        """A seek: interrupts the delivery under way, waits for the fetch in flight; yields `moved(partitions)`."""
        self.epoch += 1
        epoch = self.epoch
        self._seeks += 1
        self._no_seek.clear()
        if self._interrupt is not None and not self._interrupt.done():
            self._interrupt.set_result(None)

        def moved(tps: Iterable[Any]) -> None:
            for tp in tps:
                self._moved[tp] = epoch

        try:
            while self._fetches:
                await self._no_fetch.wait()
            yield moved
        finally:
            self._seeks -= 1
            if not self._seeks:
                self._no_seek.set()


class Consumer(driver.Consumer):
    _gate: SeekGate | None = None
    _committed_seek_listeners: list[Callable[[Mapping[Any, int]], None]] | None = None

    @property
    def gate(self) -> SeekGate:
        if self._gate is None:  # made on first use: Faust's Consumer.__init__ takes no extra state
            self._gate = SeekGate()
        return self._gate

    @property
    def committed_seek_listeners(self) -> list[Callable[[Mapping[Any, int]], None]]:
        """Called with {partition: offset} after each seek to the committed offsets, for the partitions it moved."""
        if self._committed_seek_listeners is None:
            self._committed_seek_listeners = []
        return self._committed_seek_listeners

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # Every way Faust and streams.topology move the consumer's positions goes through one of these three.
    async def seek_to_committed(self) -> Mapping[Any, int]:
        async with self.gate.seeking() as moved:
            committed: Mapping[Any, int] = await super().seek_to_committed()
            sought = {tp: offset for tp, offset in committed.items() if offset}  # aiokafka seeks only offsets > 0
            moved(sought)
        for listener in self.committed_seek_listeners:
            listener(sought)
        return committed

    async def _seek(self, partition: Any, offset: int) -> None:
        async with self.gate.seeking() as moved:
            await super()._seek(partition, offset)
            moved([partition])

    async def seek_wait(self, partitions: Mapping[Any, int]) -> None:
        async with self.gate.seeking() as moved:
            await super().seek_wait(partitions)
            moved(partitions)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's delivery loop with one fetch ahead and one task per fetch (module doc). Run by Faust's Fetcher
        service, which stops it by stopping itself and restarts it after a rebalance."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        gate = self.gate
        ahead: asyncio.Future[Fetch] | None = None
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetch = await (ahead if ahead is not None else self._next_fetch())
                ahead = None
                if fetch.records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # as Faust's getmany: the fetch came back after the flow stopped
                    continue
                await gate.settled()
                ahead = asyncio.ensure_future(self._next_fetch())
                if fetch.records:
                    done: dict[Any, int] = {}
                    delivery = self._deliver(fetch, done)
                    race = await self.wait_first(delivery, self.suspend_flow.wait(), gate.interruption())
                    if not race.stopped and delivery not in race.done:
                        await self._refetch_rest(fetch, done)
                else:
                    await asyncio.sleep(0)  # as Faust's loop: never spin without giving the event loop a turn
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            if ahead is not None:
                ahead.cancel()
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _next_fetch(self) -> Fetch:
        """One fetch (Faust's `_wait_next_records`), asked for with the flow on and no seek under way."""
        gate = self.gate
        while not self.flow_active or gate.busy:
            if self.should_stop:
                return Fetch(gate.epoch, self.app.consumer_generation_id, None, None)
            if not self.flow_active:
                # Faust's own call (its `_wait_next_records`): mode types the waitable as its own Event.
                await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
            await gate.settled()
        if not self.app.client_only and not self._get_active_partitions():
            # Every partition paused (recovery): Faust's fetch would sleep while holding the seeks off.
            await asyncio.sleep(GETMANY_TIMEOUT_S)
            return Fetch(gate.epoch, self.app.consumer_generation_id, {}, None)
        # Nothing was awaited since the checks: `_wait_next_records` finds the flow on and asks aiokafka at once.
        async with gate.fetching() as epoch:
            generation = self.app.consumer_generation_id
            records, active = await self._wait_next_records(GETMANY_TIMEOUT_S)
        return Fetch(epoch, generation, records, active)

    async def _deliver(self, fetch: Fetch, done: dict[Any, int]) -> None:
        """Hand one fetch's records to the conductor, with Faust's checks (`Consumer.getmany`, `_drain_messages`).

        `done`: each partition's last offset handed over or passed by, for `_refetch_rest`."""
        app = self.app
        gate = self.gate
        callback = self.callback
        read_offset = self._read_offset
        buffered = self._buffered_partitions
        acks_enabled_for = app.topics.acks_enabled_for
        generation, active = fetch.generation, fetch.active
        seen = gate.epoch
        moved_since = seen != fetch.epoch
        n = 0
        for tp, record in self.scheduler.iterate(fetch.records):
            if not self.flow_active or app.consumer_generation_id != generation or gate.epoch != seen:
                return  # a rebalance or a seek: what is left is fetched again after the seek
            if moved_since and gate.stale(tp, fetch.epoch):
                continue  # fetched before a seek that moved its partition back: fetched again
            if active is not None and tp not in active and tp not in buffered:
                done[tp] = record.offset
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            message = self._to_message(tp, record)
            offset = message.offset
            r_offset = read_offset[tp]
            if r_offset is None or offset >= r_offset:
                if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await callback(message)
                read_offset[tp] = offset
            done[tp] = offset
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _refetch_rest(self, fetch: Fetch, done: Mapping[Any, int]) -> None:
        """After a delivery was cut short: seek each partition whose records were left to its first one left.

        A rebalance (flow stopped, new generation) needs nothing: Faust seeks every partition to its committed
        offset before the flow resumes. A seek needs nothing for the partitions it moved; it cut the others'
        records short too, and aiokafka's position for them is past those."""
        gate = self.gate
        await gate.settled()
        if not self.flow_active or self.app.consumer_generation_id != fetch.generation:
            return
        assigned = self.assignment()
        for tp, records in fetch.records.items():
            if tp not in assigned or gate.stale(tp, fetch.epoch):
                continue
            last = done.get(tp)
            rest = [r.offset for r in records if last is None or r.offset > last]
            if rest:
                await self.seek(tp, rest[0])


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = Consumer


def register() -> None:
    """Make ``shekara://`` URLs name this transport (idempotent)."""
    TRANSPORTS[SCHEME] = f"{__name__}:Transport"


register()
