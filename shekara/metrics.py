"""Every Prometheus metric the long-running processes export, in one place (prometheus-client's registry).

The processors and the ops page serve them at ``/metrics`` on their web port (`streams.web`); the sink and the
publish client start prometheus-client's own HTTP server on ``settings.metrics`` (`serve`). Instrumentation
elsewhere is a one-line call to a function below. Names follow the Prometheus conventions: counters end in
``_total``, times are seconds; rates come from PromQL (``rate(shekara_events_in_total[1m])``).

Labels stay bounded: topics, partitions, stages, alert types and actions are finite; a dead letter's reason is
free text, so it is cut to its leading words with the values taken out (`reason_label`), and past
`MAX_REASONS` distinct reasons a process counts the rest as ``other``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import _SilentHandler
from prometheus_client.registry import Collector

from shekara.logs import get_logger

log = get_logger(__name__)

EVENTS_IN = Counter("shekara_events_in_total", "Messages consumed (or lines read) by this process", ["source"])
EVENTS_OUT = Counter(
    "shekara_events_out_total",
    "Records written by this process: to a topic, a ClickHouse table or the spool",
    ["destination"],
)
DEAD_LETTERS = Counter("shekara_dead_letters_total", "Dead letters sent by this process", ["stage", "reason"])
ALERTS = Counter("shekara_alerts_total", "Alert records sent by the processors", ["type", "action"])
SINK_BATCH = Histogram(
    "shekara_sink_batch_messages",
    "Messages per batch the sink wrote and committed",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000),
)
SINK_INSERT = Histogram(
    "shekara_sink_insert_duration_seconds",
    "Time to store one staged batch in ClickHouse",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SPOOL = Gauge("shekara_spool_messages", "Messages waiting in the publish client's disk spool (broker unreachable)")
SINK_LAG = Gauge(
    "shekara_sink_lag_messages",
    "Messages of a topic-partition past the sink's last committed offset (at its last commit)",
    ["group", "topic", "partition"],
)

MAX_REASONS = 100
REASON_WORDS = 6
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b|-?\d+(?:\.\d+)?")
_reasons: set[tuple[str, str]] = set()
_reasons_lock = threading.Lock()

# (group, topic, partition) -> messages past the committed offset; one source per app, read at scrape time.
LagSource = Callable[[], Iterable[tuple[str, str, int, int]]]
# partition -> its event-time watermark
WatermarkSource = Callable[[], Mapping[int, datetime]]


def reason_label(reason: str) -> str:
    """A dead letter's reason as a bounded label: its first clause's leading words, quoted values and numbers out."""
    head = re.split(r"[:;,(]", reason, maxsplit=1)[0]
    words = _VALUES.sub("", head).split()[:REASON_WORDS]
    return " ".join(words) or "unspecified"


def events_in(sources: Iterable[str]) -> None:
    """Count consumed messages by their source (a topic name each)."""
    for source, n in Tally(sources).items():
        EVENTS_IN.labels(source).inc(n)


def count_in(source: str, n: int = 1) -> None:
    EVENTS_IN.labels(source).inc(n)


def events_out(destination: str, n: int = 1) -> None:
    EVENTS_OUT.labels(destination).inc(n)


def dead_letter(stage: str, reason: str) -> None:
    """Count one dead letter; past `MAX_REASONS` distinct (stage, reason) pairs the reason counts as ``other``."""
    label = reason_label(reason)
    with _reasons_lock:
        if (stage, label) not in _reasons:
            if len(_reasons) >= MAX_REASONS:
                label = "other"
            _reasons.add((stage, label))
    DEAD_LETTERS.labels(stage, label).inc()


def alert(alert_type: str, action: str) -> None:
    ALERTS.labels(alert_type, action).inc()


def sink_batch(messages: int) -> None:
    SINK_BATCH.observe(messages)


def sink_lag(group: str, topic: str, partition: int, lag: int) -> None:
    SINK_LAG.labels(group, topic, str(partition)).set(max(0, lag))


def spool_depth(read: Callable[[], float]) -> None:
    """Have the spool gauge read `read()` at every scrape."""
    SPOOL.set_function(read)


# --- read at scrape time: consumer lag and watermark age of the Faust apps -----------------------------------

_lag_sources: list[LagSource] = []
_watermark_sources: list[WatermarkSource] = []


def add_lag_source(source: LagSource) -> None:
    _lag_sources.append(source)


def add_watermark_source(source: WatermarkSource) -> None:
    _watermark_sources.append(source)


class _ScrapeTime(Collector):
    """Consumer lag and watermark age, asked of the running app when Prometheus scrapes (nothing on the hot path)."""

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(
            "shekara_consumer_lag_messages",
            "Messages of a topic-partition past the consumer group's committed offset",
            labels=["group", "topic", "partition"],
        )
        for source in _lag_sources:
            for group, topic, partition, n in _safely(source):
                lag.add_metric([group, topic, str(partition)], max(0, n))
        yield lag
        age = GaugeMetricFamily(
            "shekara_watermark_age_seconds",
            "Wall-clock time minus a partition's event-time watermark (includes the allowed lateness)",
            labels=["partition"],
        )
        now = datetime.now(UTC)
        for wsource in _watermark_sources:
            for partition, watermark in _safely(partial(_items, wsource)):
                age.add_metric([str(partition)], (now - watermark).total_seconds())
        yield age

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected, never described: registering it twice is not an error


def _items(source: WatermarkSource) -> Iterable[tuple[int, datetime]]:
    return source().items()


def _safely(source: Callable[[], Iterable[Any]]) -> list[Any]:
    """A source's items, or none if the app is between states (a rebalance): a scrape never fails for it."""
    try:
        return list(source())
    except Exception as exc:
        log.debug("metrics source failed", error=str(exc))
        return []


REGISTRY.register(_ScrapeTime())


# --- serving -----------------------------------------------------------------------------------------------


_serving: dict[tuple[str, int], int] = {}


def serve(port: int, bind: str, password: str = "") -> int | None:
    """Serve /metrics on `bind`:`port` from prometheus-client's HTTP server (a daemon thread, once per process).

    With a `password`, every request must log in (Basic, user "metrics"; `check_secrets` asks for one beyond
    loopback). The port it listens on; None, with one warning, if it cannot bind: the process runs on without.
    """
    from wsgiref.simple_server import make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    if (bind, port) in _serving:
        return _serving[bind, port]
    app = make_wsgi_app(REGISTRY)
    try:
        server = make_server(
            bind,
            port,
            _login(app, password) if password else _loopback_only(app),
            ThreadingWSGIServer,
            handler_class=_Handler,
        )
    except OSError as exc:
        log.warning("metrics not served: cannot listen", address=f"{bind}:{port}", error=exc.strerror or str(exc))
        return None
    threading.Thread(target=server.serve_forever, name="shekara-metrics", daemon=True).start()
    _serving[bind, port] = int(server.server_port)
    return _serving[bind, port]


class _Handler(_SilentHandler):
    """prometheus-client's quiet handler with a socket timeout: a client that never finishes its request (slowloris)
    holds its thread for a minute, not for ever."""

    timeout = 60


def _loopback_only(app: Any) -> Any:
    """`app` answering only requests whose Host names loopback (a server without a login binds loopback only, but a
    web site could still reach it through a browser on this machine by DNS rebinding); 421 otherwise."""
    from shekara.settings import host_is_loopback

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST")
        if host is None or host_is_loopback(host):  # no Host: not a browser, so not a rebinding
            return app(environ, start_response)
        start_response("421 Misdirected Request", [("Content-Type", "text/plain")])
        return [b"these metrics have no login and answer only to localhost\n"]

    return guarded


def _login(app: Any, password: str) -> Any:
    """`app` behind HTTP Basic (user "metrics"), compared in constant time."""
    import base64
    import hmac

    expected = b"Basic " + base64.b64encode(f"metrics:{password}".encode())

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="shekara metrics"')])
        return [b"login required\n"]

    return guarded


def exposition() -> tuple[bytes, str]:
    """(the registry in Prometheus' text format, its content type): for a web framework's own /metrics view."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
