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

Registered through Faust's own transport registry (`faust.transport.drivers.TRANSPORTS`) under the scheme
``shekara``; `streams.app` points ``broker_consumer`` at it. Nothing installed is patched. What this relies on
in Faust and aiokafka is checked by tests/streams/test_engine_hooks.py.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.utils.terminal.spinners import SpinnerHandler

from shekara.settings import Mode, Settings

SCHEME = "shekara"
WAIT_PARAM = "fetch_max_wait_ms"
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


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = Consumer


def register() -> None:
    """Make ``shekara://`` URLs name this transport (idempotent)."""
    TRANSPORTS[SCHEME] = f"{__name__}:Transport"


register()
