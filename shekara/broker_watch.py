"""Notice that the broker a process works against was replaced by a new, empty one, and say so in one line.

An outage (the broker unreachable for a while) is ridden out: the Kafka clients reconnect by themselves. A
restart of the embedded broker is another matter: it keeps everything in memory, so the new broker on the same
port has no topics, no committed offsets and no consumer groups. A processor or sink that carried on would hold
state and offsets of a broker that no longer exists (state whose changelog is gone, commits past the end of the
new topics, batch tokens that now name other messages). So each long-running process watches the broker's
cluster id (the embedded broker gets a new one at every launch, `shekara.embedded`) and ends with one line when
it changes; its supervisor starts a fresh process against the new broker.

Also here: a filter that keeps a Kafka client's reconnect errors to a few lines during an outage.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException

from shekara.logs import get_logger
from shekara.settings import Settings

log = get_logger(__name__)

_DIGITS = re.compile(r"\d+")
EXIT_BROKER_GONE = 75  # EX_TEMPFAIL: the supervisor restarts the process


class BrokerGone(SystemExit):
    """The process must end: its broker was replaced. `str()` is the one line to say."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def __str__(self) -> str:
        return self.line


def gone_line(bootstrap: str, before: str, now: str) -> str:
    return (
        f"broker at {bootstrap} went away: a new broker answers there (cluster {before} -> {now}) without the "
        "topics, offsets and groups this process worked on; exiting so that a fresh one starts against it"
    )


@dataclass
class BrokerWatch:
    """A daemon thread asking the broker its cluster id every `interval` s; `on_gone(line)` once it changes.

    Unreachable is not gone: it logs one line when the broker stops answering and one when it answers again.
    `stalled`, if given, is asked at each check too: a reason when the process's own Kafka client died under
    it (a non-empty answer three checks running counts as gone, so a normal shutdown does not).
    """

    settings: Settings
    on_gone: Callable[[str], None]
    interval: float = 2.0
    stalled: Callable[[], str | None] | None = None
    cluster_id: str | None = None  # the broker this process started with (first answer)
    describe: bool = True  # asks with DescribeCluster until the broker refuses it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> BrokerWatch:
        from confluent_kafka.admin import AdminClient

        # librdkafka logs every refused connection: quiet (its own retries go on); the watch reports the outage.
        self._admin = AdminClient({**self.settings.kafka_config(), "client.id": "shekara-broker-watch", "log_level": 0})
        self.cluster_id = self.cluster_id or self._ask()
        self._thread = threading.Thread(target=self._run, name="shekara-broker-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _ask(self) -> str | None:
        # DescribeCluster answers the cluster id alone; a Metadata request (list_topics) carries every topic's
        # partitions: 10.5 ms CPU a call on a broker of 991 topics, every `interval` s in each worker.
        wait = max(1.0, self.interval)
        try:
            if self.describe:
                try:
                    cluster: str | None = self._admin.describe_cluster(request_timeout=wait).result(wait).cluster_id
                    return cluster
                except KafkaException as exc:
                    if not _unsupported(exc):
                        raise
                    self.describe = False  # Metadata from now on
            cluster = self._admin.list_topics(timeout=wait).cluster_id
            return cluster
        except Exception:  # unreachable or busy: not an answer
            return None

    def _run(self) -> None:
        down_since: float | None = None
        stalls = 0
        while not self._stop.wait(self.interval):
            why = self.stalled() if self.stalled is not None else None
            stalls = stalls + 1 if why else 0
            if why and stalls >= 3:
                self._stop.set()
                self.on_gone(
                    f"broker at {self.settings.bootstrap_servers} went away: {why}; exiting so that a fresh one starts"
                )
                return
            now = self._ask()
            if now is None:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("broker unreachable; waiting for it", broker=self.settings.bootstrap_servers)
                continue
            if down_since is not None:
                log.warning("broker reachable again", after_s=round(time.monotonic() - down_since, 1))
                down_since = None
            if self.cluster_id is None:
                self.cluster_id = now
            elif now != self.cluster_id:
                self._stop.set()
                self.on_gone(gone_line(self.settings.bootstrap_servers, self.cluster_id, now))
                return


def _unsupported(exc: KafkaException) -> bool:
    """The broker does not answer the request: it does not know it (client- or broker-side refusal of its
    version), or an authorizer refuses it; Metadata, which every client may ask, answers the cluster id too."""
    err = exc.args[0] if exc.args else None
    code = err.code() if isinstance(err, KafkaError) else None
    return code in (
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    )


class Throttle(logging.Filter):
    """Lets a message through the first time, then at most once every `every` s, counting what it held back.

    Messages are told apart by their text with the numbers left out (`Connect to 127.0.0.1:9092 failed (after
    0ms)` and the same with other figures are one kind), so an outage costs a few lines, not twenty a second.
    """

    def __init__(self, every: float = 30.0, floor: int = logging.NOTSET) -> None:
        """`floor`: lines below this level pass untouched (not formatted to tell their kind, not counted)."""
        super().__init__()
        self.every = every
        self.floor = floor
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL or record.levelno < self.floor:
            return True
        text = record.getMessage()
        kind = f"{record.name}:{_DIGITS.sub('#', text)[:200]}"
        now = time.monotonic()
        last, held = self._last.get(kind, (-1e9, 0))
        if now - last < self.every:
            self._last[kind] = (last, held + 1)
            return False
        self._last[kind] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} (and {held} more like it in {now - last:.0f} s)"
            record.args = ()
        return True


def client_logger(name: str, every: float = 30.0) -> logging.Logger:
    """A logger for a confluent-kafka client's `logger` setting: librdkafka's lines, throttled."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, Throttle) for f in logger.filters):
        logger.addFilter(Throttle(every))
    return logger


def throttle_loggers(prefixes: tuple[str, ...], every: float = 30.0) -> Throttle:
    """Install one `Throttle` on every logger under `prefixes` (a logger's filter only sees its own records).

    Debug lines pass untouched: a healthy aiokafka client writes one per request and response (a repr of each
    fetch response), and formatting them to tell their kind cost the worker a tenth of its time; an outage's
    lines are warnings and errors."""
    throttle = Throttle(every, floor=logging.INFO)
    names = [n for n in logging.root.manager.loggerDict if n.startswith(prefixes)]
    for name in {*names, *prefixes}:
        logging.getLogger(name).addFilter(throttle)
    return throttle


def topic_problems(settings: Settings, timeout: float = 10.0, *, changelogs_of: str | None = None) -> list[str]:
    """What is wrong with the catalogue's topics on the broker: missing ones, and wrong partition counts.

    `changelogs_of`: an app id; its table changelogs (made by Faust, not the catalogue) must have the
    catalogue's partition count too when they exist.

    A wrong count means a client created the topic by using it (brokers that auto-create give their default
    count) before `shekara topics` ran: the co-partitioning a processor relies on would silently break.
    """
    from confluent_kafka.admin import AdminClient

    from shekara.topics import catalogue

    admin = AdminClient({**settings.kafka_config(), "log_level": 0})
    topics = admin.list_topics(timeout=timeout).topics
    problems = []
    for spec in catalogue(settings):
        found = topics.get(spec.name)
        if found is None or found.error is not None:
            problems.append(f"topic {spec.name} is missing")
        elif len(found.partitions) != spec.partitions:
            problems.append(
                f"topic {spec.name} has {len(found.partitions)} partitions, the catalogue {spec.partitions} "
                "(created by a client before `shekara topics` ran)"
            )
    for name, found in topics.items() if changelogs_of else ():
        table = name.startswith(f"{changelogs_of}-") and name.endswith("-changelog")
        if table and len(found.partitions) != settings.partitions:
            problems.append(
                f"topic {name} has {len(found.partitions)} partitions, its table {settings.partitions} "
                "(created by a client before the worker made it)"
            )
    return problems


def await_topics(settings: Settings, timeout: float = 60.0, *, changelogs_of: str | None = None) -> None:
    """Block until the catalogue's topics exist as the catalogue says; `BrokerGone` with one line if they do not.

    Missing topics are waited for (whoever creates them may be starting too); a wrong partition count is not.
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            problems = topic_problems(settings, timeout=min(10.0, timeout), changelogs_of=changelogs_of)
        except Exception as exc:  # unreachable: wait as for missing topics
            problems = [f"broker at {settings.bootstrap_servers} does not answer ({exc})"]
        wrong = [p for p in problems if "partitions" in p]
        if not problems:
            return
        if wrong or time.monotonic() > deadline:
            raise BrokerGone(f"cannot start: {'; '.join(problems[:3])}" + (" ..." if len(problems) > 3 else ""))
        if not said:
            log.warning("waiting for the topics", missing=len(problems), first=problems[0])
            said = True
        time.sleep(1.0)
