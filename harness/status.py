"""`shekara status`: one screen on a running stack.

* the broker, and per consumer group and topic the messages not yet committed (end offsets from the broker,
  committed offsets of the group; `harness.readback`);
* the warehouse: reachable or not, with its crossings and alerts;
* each long-running process's /metrics, scraped twice `interval` seconds apart: up or down, events in and out per
  second, dead letters, alerts, the oldest watermark (`shekara.metrics`).

An unreachable broker or warehouse is said in one line (the `_App` error path of `harness.cli`: exit 2), after the
rest of the screen. Gathering does the I/O; `render` is pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from shekara.settings import Settings, get_settings, is_loopback

# (sample name, sorted labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SKIP_GROUPS = ("shekara-readback-",)  # the tools' own throw-away groups


@dataclass
class Target:
    name: str
    url: str
    auth: tuple[str, str] | None = None


@dataclass
class ProcessState:
    target: Target
    error: str | None = None  # why it could not be scraped
    rates_in: dict[str, float] = field(default_factory=dict)  # per source, events/s
    rates_out: dict[str, float] = field(default_factory=dict)  # per destination, records/s
    dead_letters: float = 0.0  # total since the process started
    alerts: float = 0.0
    max_watermark_age: float | None = None  # seconds
    lag: float | None = None  # its own view of its consumer lag (messages)


@dataclass
class GroupLag:
    group: str
    topic: str
    lag: int
    partitions: int


@dataclass
class Status:
    at: datetime
    broker: str  # address
    broker_error: str | None
    groups: list[GroupLag]
    warehouse: str  # what it is (DSN without password)
    warehouse_error: str | None
    warehouse_counts: dict[str, Any]
    processes: list[ProcessState]


# --- pure ---------------------------------------------------------------------------------------------------


def parse(text: str) -> Samples:
    """A /metrics page's samples."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Sum of sample `name` per value of `label`."""
    out: dict[str, float] = {}
    for (n, labels), value in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def rates(first: Mapping[str, float], second: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Per-second increase of each counter between two scrapes (a counter reset counts from zero)."""
    out = {}
    for key, now in second.items():
        before = first.get(key, 0.0)
        out[key] = (now - before if now >= before else now) / seconds
    return out


def process_state(target: Target, first: Samples, second: Samples, seconds: float) -> ProcessState:
    ages = by_label(second, "shekara_watermark_age_seconds", "partition")
    lags = [v for (n, _), v in second.items() if n in ("shekara_consumer_lag_messages", "shekara_sink_lag_messages")]
    return ProcessState(
        target,
        rates_in=rates(
            by_label(first, "shekara_events_in_total", "source"),
            by_label(second, "shekara_events_in_total", "source"),
            seconds,
        ),
        rates_out=rates(
            by_label(first, "shekara_events_out_total", "destination"),
            by_label(second, "shekara_events_out_total", "destination"),
            seconds,
        ),
        dead_letters=sum(by_label(second, "shekara_dead_letters_total", "stage").values()),
        alerts=sum(by_label(second, "shekara_alerts_total", "type").values()),
        max_watermark_age=max(ages.values()) if ages else None,
        lag=sum(lags) if lags else None,
    )


def duration(seconds: float) -> str:
    """A short human duration: 42s, 5m10s, 6h01m, 3d04h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render(status: Status) -> str:
    """The screen."""
    lines = [f"Shekara status at {status.at:%Y-%m-%d %H:%M:%S} UTC", ""]
    broker = f"DOWN: {status.broker_error}" if status.broker_error else "ok"
    lines.append(f"broker     {status.broker}  {broker}")
    if status.warehouse_error:
        lines.append(f"warehouse  {status.warehouse}  DOWN: {status.warehouse_error}")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in status.warehouse_counts.items())
        lines.append(f"warehouse  {status.warehouse}  ok ({counts})")
    lines.append("")
    if status.groups:
        lines.append(f"{'consumer group':26} {'topic':40} {'lag':>10} {'partitions':>10}")
        for g in status.groups:
            lines.append(f"{g.group:26} {g.topic:40} {g.lag:>10,} {g.partitions:>10}")
    elif not status.broker_error:
        lines.append("no consumer group has committed anything yet")
    lines.append("")
    lines.append(f"{'process':11} {'metrics':34} {'in/s':>9} {'out/s':>9} {'dead':>6} {'alerts':>7} {'watermark':>10}")
    for p in status.processes:
        if p.error:
            lines.append(f"{p.target.name:11} {p.target.url:34} DOWN: {p.error}")
            continue
        age = duration(p.max_watermark_age) if p.max_watermark_age is not None else "-"
        rate_in, rate_out = sum(p.rates_in.values()), sum(p.rates_out.values())
        lines.append(
            f"{p.target.name:11} {p.target.url:34} {rate_in:>9.1f} {rate_out:>9.1f} {p.dead_letters:>6.0f}"
            f" {p.alerts:>7.0f} {age:>10}"
        )
    return "\n".join(lines)


# --- gathering ----------------------------------------------------------------------------------------------


def _local(host: str) -> str:
    """Where to reach a listener bound to `host` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") or is_loopback(host) else host


MAX_WORKERS = 16  # `shekara process --workers N` puts worker i on the web port + i


def targets(settings: Settings, listening: Callable[[str, int], bool] | None = None) -> list[Target]:
    """The processes' /metrics, from the same settings they run with.

    Worker 0 is always listed (down is worth saying); workers 1, 2, ... while `listening(host, port)` says a port
    after it answers (none are looked for without `listening`).
    """
    f, m = settings.faust, settings.metrics
    password = f.web_password.get_secret_value()
    out = []
    if f.web_enabled:
        auth = (f.web_user, password) if password else None
        host = _local(f.web_bind)
        out.append(Target("processors", f"http://{host}:{f.web_port}/metrics", auth))
        for i in range(1, MAX_WORKERS):
            if listening is None or not listening(host, f.web_port + i):
                break
            out.append(Target(f"processors-{i}", f"http://{host}:{f.web_port + i}/metrics", auth))
    if m.notify_port and settings.notify.webhook_url:  # the notifier runs only with a receiver configured
        out.append(Target("notify", f"http://{_local(m.bind)}:{m.notify_port}/metrics", _metrics_login(settings)))
    if m.sink_port:
        out.append(Target("sink", f"http://{_local(m.bind)}:{m.sink_port}/metrics", _metrics_login(settings)))
    if m.publish_port:
        out.append(Target("publish", f"http://{_local(m.bind)}:{m.publish_port}/metrics", _metrics_login(settings)))
    return out


def _metrics_login(settings: Settings) -> tuple[str, str] | None:
    password = settings.metrics.password.get_secret_value()
    return ("metrics", password) if password else None


def listening(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def scrape(target: Target, timeout: float) -> Samples:
    response = httpx.get(target.url, auth=target.auth, timeout=timeout)
    response.raise_for_status()
    return parse(response.text)


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "nothing listens there (not running, or another port)"
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return f"HTTP {code}" + (" (the ops page's login: SHEKARA_FAUST__WEB_PASSWORD)" if code == 401 else "")
    return str(exc) or type(exc).__name__


def processes(found: list[Target], interval: float, timeout: float) -> list[ProcessState]:
    """Scrape every target, wait `interval`, scrape again: rates over that interval."""
    first: dict[str, Samples | Exception] = {}
    for t in found:
        try:
            first[t.name] = scrape(t, timeout)
        except Exception as exc:
            first[t.name] = exc
    started = time.monotonic()
    if any(not isinstance(v, Exception) for v in first.values()):
        time.sleep(interval)
    seconds = max(time.monotonic() - started, 1e-3)
    out = []
    for t in found:
        before = first[t.name]
        if isinstance(before, Exception):
            out.append(ProcessState(t, error=_why(before)))
            continue
        try:
            out.append(process_state(t, before, scrape(t, timeout), seconds))
        except Exception as exc:
            out.append(ProcessState(t, error=_why(exc)))
    return out


def consumer_groups(settings: Settings, known: Iterable[str]) -> list[GroupLag]:
    """Per group and topic: messages past the committed offsets (groups that committed nothing are left out)."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    from harness.readback import end_offsets

    admin = AdminClient(settings.kafka_config())
    groups = set(known)
    try:
        listed = admin.list_consumer_groups(request_timeout=settings.reach_timeout_seconds).result()
        groups |= {g.group_id for g in listed.valid}
    except Exception:  # a broker without ListGroups: the known groups still answer
        pass
    committed: dict[str, dict[tuple[str, int], int]] = {}
    for group in sorted(g for g in groups if not g.startswith(SKIP_GROUPS)):
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        offsets = {}
        for fut in futures.values():
            for tp in fut.result().topic_partitions or []:
                if tp.offset >= 0:
                    offsets[(tp.topic, tp.partition)] = tp.offset
        if offsets:
            committed[group] = offsets
    topics = {t for offsets in committed.values() for t, _ in offsets}
    ends = end_offsets(settings, sorted(topics)) if topics else {}
    out = []
    for group, offsets in committed.items():
        for topic in sorted({t for t, _ in offsets}):
            parts = [(tp, end) for tp, end in ends.items() if tp[0] == topic]
            lag = sum(max(0, end - offsets.get(tp, 0)) for tp, end in parts)
            out.append(GroupLag(group, topic, lag, len(parts)))
    return out


def warehouse(settings: Settings) -> tuple[dict[str, Any], str | None]:
    """(a few counts, None) or ({}, why it cannot be read)."""
    from sinks.analyst import query_table

    sql = (
        "SELECT (SELECT count() FROM crossings) AS crossings, (SELECT count() FROM alerts) AS alerts,"
        " (SELECT count() FROM dead_letters) AS dead_letters, (SELECT max(event_time) FROM crossings) AS latest"
    )
    try:
        row = query_table(settings, sql).records()[0]
    except Exception as exc:
        return {}, warehouse_unreachable(settings, exc)
    latest = row.pop("latest")
    return {k: f"{v:,}" for k, v in row.items()} | {"latest event": f"{latest:%Y-%m-%d %H:%M}"}, None


def warehouse_unreachable(settings: Settings, exc: Exception) -> str:
    from harness.cli import clickhouse_unreachable_line

    return clickhouse_unreachable_line(settings, exc) or (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def gather(settings: Settings, interval: float = 2.0) -> Status:
    from shekara.admin import require_broker, unreachable_line

    broker_error: str | None = None
    groups: list[GroupLag] = []
    try:
        require_broker(settings, timeout=min(settings.reach_timeout_seconds, 5.0))
        known = [settings.faust.app_id, settings.sink.group_id, "shekara-ops-web"]
        groups = consumer_groups(settings, known)
    except Exception as exc:
        from shekara.admin import Unreachable, is_unreachable

        if not isinstance(exc, Unreachable | TimeoutError) and not is_unreachable(exc):
            raise
        broker_error = unreachable_line(settings)
    counts, warehouse_error = warehouse(settings)
    timeout = min(settings.reach_timeout_seconds, 3.0)
    return Status(
        at=datetime.now(UTC),
        broker=settings.bootstrap_servers,
        broker_error=broker_error,
        groups=groups,
        warehouse=_dsn(settings.clickhouse_dsn),
        warehouse_error=warehouse_error,
        warehouse_counts=counts,
        processes=processes(targets(settings, listening), interval, timeout),
    )


def _dsn(dsn: str) -> str:
    """The DSN without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        interval: Annotated[float, typer.Option(help="Seconds between the two scrapes that give the rates")] = 2.0,
    ) -> None:
        """One screen: broker, warehouse, consumer lag per group and topic, each process's rates and health."""
        from shekara.admin import Unreachable

        settings = get_settings()
        state = gather(settings, interval=max(0.2, interval))
        typer.echo(render(state))
        if state.broker_error:
            raise Unreachable(state.broker_error)  # the command's one-line error, exit 2
        if state.warehouse_error:
            typer.secho(f"error: {state.warehouse_error}", fg="red", err=True)
            raise typer.Exit(2)
