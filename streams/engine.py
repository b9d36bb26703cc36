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

Registered through Faust's own transport registry (`faust.transport.drivers.TRANSPORTS`) under the scheme
``shekara``; `streams.app` points ``broker_consumer`` at it. Nothing installed is patched. What this relies on
in Faust and aiokafka is checked by tests/streams/test_engine_hooks.py.
"""

from __future__ import annotations

import asyncio
import logging
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
GETMANY_TIMEOUT_S = 1.0  # Faust's
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


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's delivery loop with one fetch ahead and one task per fetch (module doc). Run by Faust's Fetcher
        service, which stops it by stopping itself and restarts it after a rebalance."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        ahead: asyncio.Future[tuple[int, Any, Any]] | None = None
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                generation, records, active = await (ahead if ahead is not None else self._next_records())
                ahead = None
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # as Faust's getmany: the fetch came back after the flow stopped
                    continue
                ahead = asyncio.ensure_future(self._next_records())
                if records:
                    await self.wait_first(self._deliver(generation, records, active), self.suspend_flow.wait())
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

    async def _next_records(self) -> tuple[int, Any, Any]:
        """One fetch (Faust's `_wait_next_records`: it waits while the flow is stopped) and the generation it
        returned in."""
        records, active = await self._wait_next_records(GETMANY_TIMEOUT_S)
        return self.app.consumer_generation_id, records, active

    async def _deliver(self, generation: int, records: Any, active: Any) -> None:
        """Hand one fetch's records to the conductor, with Faust's checks (`Consumer.getmany`, `_drain_messages`)."""
        app = self.app
        callback = self.callback
        read_offset = self._read_offset
        buffered = self._buffered_partitions
        acks_enabled_for = app.topics.acks_enabled_for
        n = 0
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or app.consumer_generation_id != generation:
                return  # a rebalance: what is left is fetched again after the seek
            if active is not None and tp not in active and tp not in buffered:
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
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = Consumer


def register() -> None:
    """Make ``shekara://`` URLs name this transport (idempotent)."""
    TRANSPORTS[SCHEME] = f"{__name__}:Transport"


register()
