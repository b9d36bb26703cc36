"""The live ops page served by the processors: open alerts with filters and a map of checkpoints.

`install(app, settings)` adds to a Faust app (the processors' app calls it when ``settings.faust.web_enabled``):

* two **global tables**, so every replica serves the whole picture: open alerts (fed by an agent on the alerts
  topic: RAISED adds, RESOLVED/RETRACTED removes) and crossing counts per checkpoint in one-minute buckets of
  event time (fed by an agent on the crossings topic);
* web views: ``/`` (the page; it fetches the two JSON views every few seconds), ``/api/alerts``,
  ``/api/checkpoints`` and ``/api/status`` (which source partitions this replica processes).

The functions above the Faust section are pure: table values in, JSON-ready dicts out. Open in-country
overstays per entry checkpoint are counted from the open alerts (the alert's checkpoint is the entry
checkpoint, docs/alerts.md), so they need no state of their own.

Run the page on its own (its own consumer group; useful without processors, and in tests):
``python -m streams.web [--app-id ID] [--bind 127.0.0.1]`` with the usual ``SHEKARA_*`` settings.

Access (`web_config`): the page binds ``settings.faust.web_bind`` (127.0.0.1 by default); once
``settings.faust.web_password`` is set every request needs it (HTTP Basic), and `shekara.settings.check_secrets`
refuses to start without one in server mode or on a non-loopback address; without one, a request whose Host
is not a loopback name gets 421 (DNS rebinding, `host_is_loopback`). Faust's own views (``/table/…`` reads
table data, ``/router/…`` shows the cluster, the statistics) are off: the page needs none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import math
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust
from faust.web import Request, Response, View

from schemas.records import Alert, AlertAction, AlertType, DeadLetter
from shekara import metrics
from shekara.logs import get_logger
from shekara.reference import CheckpointInfo, load_checkpoints
from shekara.settings import (
    Settings,
    check_secrets,
    get_settings,
    host_is_loopback,
    is_loopback,
    refuse_weak_secrets,
)
from streams.console import SEVERITY_ORDER, alert_json, parse_severities, parse_types
from streams.triage import ACTIONS, TriageBoard, TriageError, TriageRequest, as_json, validate

log = get_logger(__name__)

PAGE_PATH = Path(__file__).resolve().parent / "templates" / "ops.html"
HISTORY_PATH = Path(__file__).resolve().parent / "templates" / "history.html"
BUCKET_SECONDS = 60
LOAD_WINDOW_SECONDS = 3600  # "current load": crossings in the last hour of event time
MAX_ALERTS_LISTED = 500  # the page lists the most urgent ones; the count says how many there are
REFRESH_MS = 3000
TABLE_BATCH = 1000
TABLE_BATCH_WITHIN = 1.0  # seconds: one table write per key per batch, not per event
BROKER_CHECK_SECONDS = 2.0  # the replica asks the broker for metadata this often
STALE_AFTER_SECONDS = 6.0  # silence longer than this: the page's data is stale, and says since when

# Map frame: Kazakhstan's extent with a margin, equirectangular with longitudes shrunk by cos(48°N) so
# distances look right in the middle of the country. No tiles: the machines have no internet.
LAT_MIN, LAT_MAX = 40.0, 56.0
LON_MIN, LON_MAX = 46.0, 88.0
MAP_HEIGHT = 520
_MAP_SCALE = MAP_HEIGHT / (LAT_MAX - LAT_MIN)  # SVG units per degree of latitude
_LON_SHRINK = math.cos(math.radians(48.0))
MAP_WIDTH = math.ceil((LON_MAX - LON_MIN) * _LON_SHRINK * _MAP_SCALE)


# --- pure: open alerts --------------------------------------------------------------------------------


def alert_entry(alert: Alert, checkpoints: Mapping[str, CheckpointInfo]) -> dict[str, Any]:
    """What the open-alerts table keeps of an alert: plain JSON, enough to list it and to explain it.

    Its ``emitted_time`` is when it was raised; its triage state is added when served (`with_triage`).
    """
    entry = alert_json(alert, checkpoints)
    del entry["triage"]
    return entry


def with_triage(entries: Iterable[dict[str, Any]], board: TriageBoard) -> list[dict[str, Any]]:
    """Copies of the listed entries with each alert's current triage state (None: not triaged yet)."""
    return [{**e, "triage": as_json(board.get(e["alert_id"]))} for e in entries]


def triage_request(body: Any, who: str) -> TriageRequest:
    """The page's POST body (``{"alert_id", "action": ack|assign|note, "note"?, "assignee"?}``) as a request."""
    if not isinstance(body, dict):
        raise TriageError("the body must be a JSON object")
    action = ACTIONS.get(str(body.get("action", "")))
    if action is None:
        raise TriageError(f"action must be one of {', '.join(ACTIONS)}")
    texts = {name: body.get(name) for name in ("note", "assignee")}
    if not isinstance(body.get("alert_id"), str) or any(
        v is not None and not isinstance(v, str) for v in texts.values()
    ):
        raise TriageError("alert_id, note and assignee must be strings")
    return TriageRequest(alert_id=body["alert_id"], action=action, who=who, **texts)


def alert_change(alert: Alert, checkpoints: Mapping[str, CheckpointInfo]) -> tuple[str, dict[str, Any] | None]:
    """(table key, new value or None to remove): the latest action of an alert id wins, in topic order."""
    if alert.action is AlertAction.RAISED:
        return alert.alert_id, alert_entry(alert, checkpoints)
    return alert.alert_id, None


def parse_query(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[set[str], set[str], set[str]]:
    """(types, severities, checkpoints) from query parameters; repeated or comma-separated. ValueError if bad."""
    items = query.items() if isinstance(query, Mapping) else query
    values: dict[str, list[str]] = {"type": [], "severity": [], "checkpoint": []}
    for name, value in items:
        if name in values:
            values[name].append(value)
    types = {t.value for t in parse_types(values["type"])}
    severities = {s.value for s in parse_severities(values["severity"])}
    checkpoints = {c.strip().upper() for v in values["checkpoint"] for c in v.split(",") if c.strip()}
    return types, severities, checkpoints


_SEVERITY_RANK = {s.value: i for i, s in enumerate(SEVERITY_ORDER)}


def select_alerts(
    entries: Iterable[dict[str, Any]],
    *,
    types: set[str] | frozenset[str] = frozenset(),
    severities: set[str] | frozenset[str] = frozenset(),
    checkpoints: set[str] | frozenset[str] = frozenset(),
    limit: int = MAX_ALERTS_LISTED,
) -> tuple[list[dict[str, Any]], int]:
    """(the most urgent matching alerts, how many match): severity first, then the most recently due."""
    matching = [
        e
        for e in entries
        if (not types or e["type"] in types)
        and (not severities or e["severity"] in severities)
        and (not checkpoints or e["checkpoint_id"] in checkpoints)
    ]
    matching.sort(key=lambda e: (_SEVERITY_RANK.get(e["severity"], -1), e["due_time"]), reverse=True)
    return matching[:limit], len(matching)


def open_overstays(entries: Iterable[dict[str, Any]]) -> Counter[str]:
    """Open in-country overstays by entry checkpoint."""
    return Counter(
        e["checkpoint_id"] for e in entries if e["type"] == AlertType.IN_COUNTRY_OVERSTAY.value and e["checkpoint_id"]
    )


# --- pure: checkpoint load ------------------------------------------------------------------------------


@dataclass
class BrokerContact:
    """When this replica last heard from the broker: past `stale_after` s of silence its tables are stale."""

    stale_after: float = STALE_AFTER_SECONDS
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_heard: datetime | None = None

    def heard(self, at: datetime) -> None:
        self.last_heard = at

    def status(self, now: datetime) -> dict[str, Any]:
        since = self.last_heard or self.started
        reachable = (now - since).total_seconds() <= self.stale_after
        return {
            "reachable": reachable,
            "last_heard": self.last_heard.isoformat() if self.last_heard else None,
            "unreachable_since": None if reachable else since.isoformat(),
        }


def broker_answers(admin: Any, timeout: float = BROKER_CHECK_SECONDS * 0.75) -> bool:
    """One metadata request through `admin` (a confluent-kafka AdminClient; blocking: run it off the event loop)."""
    try:
        admin.list_topics(timeout=timeout)
        return True
    except Exception:  # unreachable, or too slow to count as heard
        return False
    finally:
        admin.poll(0)  # serve librdkafka's queued log lines (to the throttled logger) so they do not pile up


def load_key(checkpoint_id: str, partition: int) -> str:
    """One key per checkpoint and source partition: each is written by exactly one worker, never two."""
    return f"{checkpoint_id}|{partition}"


def minute_of(t: datetime) -> int:
    return int(t.timestamp()) // BUCKET_SECONDS


def fold_load(previous: Mapping[str, Any] | None, minutes: Iterable[int]) -> dict[str, Any]:
    """Add crossings (by event-time minute) to a checkpoint's buckets; drop buckets older than the window."""
    buckets: Counter[int] = Counter({int(m): int(n) for m, n in (previous or {}).get("buckets", {}).items()})
    buckets.update(minutes)
    latest = max(buckets, default=int((previous or {}).get("latest", 0)))
    keep_from = latest - LOAD_WINDOW_SECONDS // BUCKET_SECONDS
    return {"latest": latest, "buckets": {str(m): n for m, n in sorted(buckets.items()) if m > keep_from}}


def checkpoint_loads(entries: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, int], int | None]:
    """(crossings per checkpoint in the hour before the latest event time seen anywhere, that latest minute)."""
    rows = list(entries)
    latest = max((int(v.get("latest", 0)) for _, v in rows), default=None)
    if latest is None:
        return {}, None
    keep_from = latest - LOAD_WINDOW_SECONDS // BUCKET_SECONDS
    loads: Counter[str] = Counter()
    for key, value in rows:
        checkpoint_id = key.rsplit("|", 1)[0]
        loads[checkpoint_id] += sum(n for m, n in value.get("buckets", {}).items() if int(m) > keep_from)
    return dict(loads), latest


def project(lat: float, lon: float) -> tuple[float, float]:
    """Map coordinates (SVG user units; north up, so y grows southwards) of a point."""
    x = (lon - LON_MIN) * _LON_SHRINK * _MAP_SCALE
    y = (LAT_MAX - lat) * _MAP_SCALE
    return round(x, 1), round(y, 1)


def checkpoint_rows(
    checkpoints: Mapping[str, CheckpointInfo], loads: Mapping[str, int], overstays: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Every known checkpoint with its map position, load and open overstays; unknown ids seen in data too."""
    rows = []
    for cp in checkpoints.values():
        x, y = project(cp.lat, cp.lon)
        rows.append(
            {
                "id": cp.id,
                "name": cp.name,
                "kind": cp.kind.value,
                "border_country": cp.border_country,
                "lat": cp.lat,
                "lon": cp.lon,
                "x": x,
                "y": y,
                "load_last_hour": loads.get(cp.id, 0),
                "open_overstays": overstays.get(cp.id, 0),
            }
        )
    for unknown in sorted((set(loads) | set(overstays)) - set(checkpoints)):
        rows.append(
            {
                "id": unknown,
                "name": unknown,
                "kind": None,
                "border_country": None,
                "lat": None,
                "lon": None,
                "x": None,
                "y": None,
                "load_last_hour": loads.get(unknown, 0),
                "open_overstays": overstays.get(unknown, 0),
            }
        )
    return rows


def render_page(template: str) -> str:
    """The page with its configuration (enums, map frame, refresh period) inlined: no CDN, no second request."""
    config = {
        "types": [t.value for t in AlertType],
        "severities": [s.value for s in SEVERITY_ORDER],
        "refreshMs": REFRESH_MS,
        "map": {"width": MAP_WIDTH, "height": MAP_HEIGHT, "graticule": graticule()},
    }
    # "</" inside a <script> would end it early; JSON allows "<\/".
    return template.replace("/*CONFIG*/null", json.dumps(config).replace("</", "<\\/"))


def graticule() -> list[dict[str, Any]]:
    """Inner lines every 4 degrees, labelled at the left and bottom edges: a frame of reference, no base map."""
    lines: list[dict[str, Any]] = []
    for lat in range(int(LAT_MIN) + 4, int(LAT_MAX), 4):
        (x1, y1), (x2, y2) = project(lat, LON_MIN), project(lat, LON_MAX)
        lines.append({"label": f"{lat}°N", "x1": x1, "y1": y1, "x2": x2, "y2": y2, "lx": x1 + 3, "ly": y1 - 3})
    for lon in range(int(LON_MIN) + 4, int(LON_MAX), 4):
        (x1, y1), (x2, y2) = project(LAT_MAX, lon), project(LAT_MIN, lon)
        lines.append({"label": f"{lon}°E", "x1": x1, "y1": y1, "x2": x2, "y2": y2, "lx": x2 + 3, "ly": y2 - 4})
    return lines


# --- access: bind address, login, Faust's built-in views ---------------------------------------------------

LOGIN_REALM = "Shekara ops"


def credentials_match(header: str, user: str, password: str) -> bool:
    """Whether an ``Authorization`` header carries HTTP Basic `user`:`password` (compared in constant time)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    given_user, sep, given_password = given.partition(b":")
    # Both parts are always compared, so the time taken does not tell which one was wrong.
    user_ok = hmac.compare_digest(given_user, user.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return bool(sep) and user_ok and password_ok


def login_middleware(user: str, password: str) -> Any:
    """An aiohttp middleware in front of every route: 401 with a Basic challenge unless the login matches."""
    from aiohttp import web as aioweb

    challenge = {"WWW-Authenticate": f'Basic realm="{LOGIN_REALM}", charset="UTF-8"'}

    @aioweb.middleware
    async def require_login(request: aioweb.Request, handler: Any) -> Any:
        if credentials_match(request.headers.get("Authorization", ""), user, password):
            return await handler(request)
        return aioweb.Response(status=401, text="login required\n", headers=challenge)

    return require_login


def loopback_host_middleware() -> Any:
    """An aiohttp middleware for a page without a login: 421 unless the Host names loopback (`host_is_loopback`)."""
    from aiohttp import web as aioweb

    @aioweb.middleware
    async def require_loopback_host(request: aioweb.Request, handler: Any) -> Any:
        host = request.headers.get("Host")
        if host is None or host_is_loopback(host):  # no Host: not a browser, so not a rebinding
            return await handler(request)
        return aioweb.Response(
            status=421, text=f"this page has no login and answers only to localhost, not to Host {host[:100]!r}\n"
        )

    return require_loopback_host


def web_config(settings: Settings, *, web_port: int | None = None) -> dict[str, Any]:
    """Faust's web settings for a processor or ops-page app: bind address, login, built-in views off.

    ValueError if the page would need a login and has none (the commands refuse earlier, with the same line).
    """
    f = settings.faust
    problems = check_secrets(settings, pseudonym=False, clickhouse=False, kafka=False)
    if problems:
        raise ValueError(problems[0])
    password = f.web_password.get_secret_value()
    return {
        "web_enabled": f.web_enabled,
        "web_port": web_port or f.web_port,
        "web_bind": f.web_bind,
        # The URL Faust gives other workers for this one; on a wildcard bind, the host's name.
        "web_host": f.web_bind if is_loopback(f.web_bind) else socket.gethostname(),
        # /table/ serves table contents (open alerts), /router/ the workers' addresses; the page uses neither.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        # With a login a rebinding site gets nothing (the browser keeps the login for the page's own origin);
        # without one (loopback only), the Host must name loopback.
        "web_application_options": {
            "middlewares": [login_middleware(f.web_user, password) if password else loopback_host_middleware()]
        },
    }


# --- Faust: tables, agents and views --------------------------------------------------------------------


def consumer_lag(app: faust.App) -> list[tuple[str, str, int, int]]:
    """(group, topic, partition, messages past the committed offset) of the app's active partitions, if known."""
    consumer = app._consumer  # never made here: before the worker starts there is no lag to tell
    if consumer is None:
        return []
    committed = getattr(consumer, "_committed_offset", {})  # faust is pinned (pyproject): what it last committed
    rows = []
    for tp in app.assignor.assigned_actives():
        high, done = consumer.highwater(tp), committed.get(tp)
        if high is not None:  # nothing committed yet: the group reads from the start (auto_offset_reset earliest)
            rows.append((str(app.conf.id), tp.topic, tp.partition, int(high) - int(done or 0)))
    return rows


def install_metrics(app: faust.App) -> None:
    """Serve /metrics (`shekara.metrics`) on the app's web server, behind the page's login, with its consumer lag."""
    from aiohttp.web import Response as AioResponse

    metrics.add_lag_source(lambda: consumer_lag(app))

    @app.page("/metrics")
    async def prometheus_metrics(self: View, request: Request) -> Response:
        body, content_type = metrics.exposition()
        return cast(Response, AioResponse(body=body, headers={"Content-Type": content_type}))


def install(app: faust.App, settings: Settings) -> None:
    """Add the ops page's global tables, agents and web views to `app`."""
    from schemas.serde import DecodeError, Serde

    serde = Serde.from_settings(settings)
    checkpoints = load_checkpoints()
    page = render_page(PAGE_PATH.read_text(encoding="utf-8"))
    # GlobalTable with several workers: the faust docs advise one partition and a recovery buffer of 1
    # (faust-streaming issue #283); use_partitioner makes every worker keep every partition in sync.
    table_options: dict[str, Any] = {"partitions": 1, "recovery_buffer_size": 1, "use_partitioner": True}
    open_alerts = app.GlobalTable("ops-open-alerts", help="Open alerts by alert id", **table_options)
    load = app.GlobalTable("ops-checkpoint-load", help="Crossings per checkpoint|partition by minute", **table_options)

    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    crossings_topic = app.topic(settings.topics.crossings, key_serializer="raw", value_serializer="raw")
    dead_letter_topic = app.topic(settings.topics.dead_letter, key_serializer="raw", value_serializer="raw")

    @app.agent(alerts_topic, name="ops-open-alerts")
    async def track_alerts(stream: faust.StreamT[bytes]) -> None:
        async for events in cast(faust.Stream[bytes], stream).take_events(TABLE_BATCH, within=TABLE_BATCH_WITHIN):
            for event in events:
                message = event.message
                try:
                    record = serde.decode(bytes(message.value or b""), settings.topics.alerts)
                    if not isinstance(record, Alert):
                        raise DecodeError(f"a {type(record).__name__} record on the alerts topic, not an Alert")
                except DecodeError as exc:
                    dead = DeadLetter(
                        source_topic=message.topic,
                        source_partition=message.partition,
                        source_offset=message.offset,
                        key=message.key,
                        value=message.value,
                        stage="decode",
                        reason=f"ops page: {exc.reason}",
                        field=None,
                        rejected_time=datetime.now(UTC),
                    )
                    await dead_letter_topic.send(key=message.key, value=serde.encode(dead, settings.topics.dead_letter))
                    metrics.dead_letter(dead.stage, dead.reason)
                    log.warning("alert record sent to dead letters", offset=message.offset, reason=exc.reason)
                    continue
                key, value = alert_change(record, checkpoints)
                if value is not None:
                    open_alerts[key] = value
                elif key in open_alerts:
                    del open_alerts[key]

    @app.agent(crossings_topic, name="ops-checkpoint-load")
    async def count_crossings(stream: faust.StreamT[bytes]) -> None:
        async for events in cast(faust.Stream[bytes], stream).take_events(TABLE_BATCH, within=TABLE_BATCH_WITHIN):
            horizon = datetime.now(UTC).timestamp() + settings.max_future_skew_seconds
            minutes: dict[str, list[int]] = {}
            for event in events:
                message = event.message
                try:
                    _, d = serde.decode_dict(bytes(message.value or b""), settings.topics.crossings)
                    event_time: datetime = d["event_time"]
                    checkpoint_id: str = d["checkpoint"]["id"]
                    too_far_ahead = event_time.timestamp() > horizon
                except (DecodeError, KeyError, TypeError, AttributeError) as exc:
                    # The processors dead-letter bad crossings (this topic is theirs); here they are only not counted.
                    log.debug("crossing not counted", offset=message.offset, error=str(exc))
                    continue
                if too_far_ahead:
                    continue  # a clock far ahead would empty everybody's last hour
                minutes.setdefault(load_key(checkpoint_id, message.partition or 0), []).append(minute_of(event_time))
            for key, batch in minutes.items():
                load[key] = fold_load(load.get(key), batch)

    from confluent_kafka.admin import AdminClient

    contact = BrokerContact()
    admin = AdminClient({**settings.kafka_config(), "client.id": "shekara-ops-page"})

    @app.timer(BROKER_CHECK_SECONDS)
    async def check_broker() -> None:
        if await asyncio.get_running_loop().run_in_executor(None, broker_answers, admin):
            contact.heard(datetime.now(UTC))

    install_metrics(app)
    board = install_triage(app, settings, open_alerts, checkpoints)

    @app.page("/")
    async def ops_page(self: View, request: Request) -> Response:
        return self.html(page)

    @app.page("/api/alerts")
    async def api_alerts(self: View, request: Request) -> Response:
        try:
            types, severities, cps = parse_query(request.query.items())
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        entries = list(open_alerts.values())
        listed, matching = select_alerts(entries, types=types, severities=severities, checkpoints=cps)
        return self.json({"open": len(entries), "matching": matching, "alerts": with_triage(listed, board)})

    @app.page("/api/status")
    async def api_status(self: View, request: Request) -> Response:
        """Which replica answers, and the source partitions it processes (the tables cover all of them)."""
        owned: dict[str, list[int]] = {}
        for tp in app.assignor.assigned_actives():
            if tp.topic in (settings.topics.alerts, settings.topics.crossings):
                owned.setdefault(tp.topic, []).append(tp.partition)
        return self.json(
            {
                "app_id": app.conf.id,
                "active_partitions": {t: sorted(ps) for t, ps in owned.items()},
                "open_alerts": len(open_alerts),
                "broker": {"address": settings.bootstrap_servers, **contact.status(datetime.now(UTC))},
            }
        )

    @app.page("/api/checkpoints")
    async def api_checkpoints(self: View, request: Request) -> Response:
        loads, latest = checkpoint_loads(load.items())
        overstays = open_overstays(open_alerts.values())
        latest_time = datetime.fromtimestamp(latest * BUCKET_SECONDS, UTC).isoformat() if latest else None
        return self.json(
            {
                "window_minutes": LOAD_WINDOW_SECONDS // 60,
                "latest_event_minute": latest_time,
                "checkpoints": checkpoint_rows(checkpoints, loads, overstays),
            }
        )


def install_triage(
    app: faust.App, settings: Settings, open_alerts: Mapping[str, Any], checkpoints: Mapping[str, CheckpointInfo]
) -> TriageBoard:
    """Triage (`streams.triage`) and traveller history on the page; returns the board the alert list reads.

    The board is every alert's triage state, read by a background reader from the beginning of the compacted
    alert-actions topic (so every replica shows every officer's actions). ``POST /api/triage`` acts as the page's
    login user; without a login (loopback only) the page cannot tell officers apart and says so in the name.
    ``history?key=`` and ``/api/history?key=`` show a traveller's stays, crossings and alerts (`streams.history`).
    """
    import threading

    from streams.history import traveller_history
    from streams.triage_topic import TriagePublisher, TriageUnavailable, follow_in_background

    board = TriageBoard()
    stop = threading.Event()  # never set: the reader is a daemon thread and ends with the process
    publisher: list[TriagePublisher] = []  # made on first use: a page nobody acts on needs no producer
    f = settings.faust
    who = f.web_user if f.web_password.get_secret_value() else f"{f.web_user} (no login)"
    history_page = HISTORY_PATH.read_text(encoding="utf-8")

    @app.task
    async def follow_triage() -> None:
        follow_in_background(settings, board, stop, client_id=f"{app.conf.id}-triage")

    def act(request: TriageRequest) -> dict[str, Any]:
        if not publisher:
            publisher.append(TriagePublisher(settings, client_id=f"{app.conf.id}-triage"))
        return as_json(publisher[0].act(board, request)) or {}

    @app.page("/api/triage")
    class TriageView(View):
        async def post(self, request: Request) -> Response:
            # JSON only: a cross-site HTML form cannot send it without a CORS preflight, which the page never allows.
            if not request.headers.get("Content-Type", "").startswith("application/json"):
                return self.json({"error": "send the action as application/json"}, status=415)
            try:
                req = validate(triage_request(await request.json(), who), settings.limits)
            except (TriageError, ValueError) as exc:
                return self.json({"error": str(exc)}, status=400)
            if req.alert_id not in open_alerts:
                return self.json({"error": f"no open alert with id {req.alert_id!r}"}, status=404)
            # Acting on a state not read yet would drop the notes already there; a page just started reads the
            # compacted topic in seconds, so the officer's click waits for that rather than being refused.
            loading = not await asyncio.get_running_loop().run_in_executor(
                None, board.ready.wait, settings.reach_timeout_seconds
            )
            if loading:
                return self.json({"error": "the triage states are still loading: try again in a moment"}, status=503)
            try:
                state = await asyncio.get_running_loop().run_in_executor(None, act, req)
            except TriageUnavailable as exc:
                return self.json({"error": str(exc)}, status=503)
            return self.json({"alert_id": req.alert_id, "triage": state})

    @app.page("/history")
    async def history(self: View, request: Request) -> Response:
        return self.html(history_page)

    @app.page("/api/history")
    async def api_history(self: View, request: Request) -> Response:
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                None, traveller_history, settings, request.query.get("key", ""), checkpoints
            )
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        except TriageUnavailable as exc:
            return self.json({"error": str(exc)}, status=503)
        for a in body["alerts"]:
            a["triage"] = as_json(board.get(a["alert_id"]))
        return self.json(body)

    return board


def standalone_app(settings: Settings, *, app_id: str = "shekara-ops-web") -> faust.App:
    """A Faust app that only serves the ops page (its own consumer group, so it takes no work from processors)."""
    f = settings.faust
    datadir = settings.data_dir / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=settings.broker_url,
        store=f.store,
        datadir=str(datadir),
        **web_config(settings),
        broker_credentials=settings.kafka.faust_credentials(),
        broker_session_timeout=f.session_timeout,
        broker_rebalance_timeout=f.rebalance_timeout,
        broker_heartbeat_interval=f.heartbeat_interval,
        broker_max_poll_interval=f.processor_max_poll_interval,
        broker_commit_interval=f.commit_interval,
        topic_partitions=settings.partitions,
    )
    install(app, settings)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Shekara ops page on its own.")
    parser.add_argument("--app-id", default="shekara-ops-web", help="Faust app id (= consumer group)")
    parser.add_argument("--bind", default=None, help="Address the web server listens on (SHEKARA_FAUST__WEB_BIND)")
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    settings = get_settings()
    web = {"web_enabled": True} | ({"web_bind": args.bind} if args.bind else {})
    settings = settings.model_copy(update={"faust": settings.faust.model_copy(update=web)})
    refuse_weak_secrets(settings, pseudonym=False, clickhouse=False)
    app = standalone_app(settings, app_id=args.app_id)
    faust.Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
