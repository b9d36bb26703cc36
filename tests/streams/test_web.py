"""The live ops page (`streams.web`): pure parts, then the page served by a real Faust worker on the embedded
broker, fed through the real topics and rendered by headless Chromium.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from harness import samples
from schemas.ids import alert_id
from schemas.records import (
    Alert,
    AlertAction,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Crossing,
    DeadLetter,
    Severity,
    Sex,
)
from schemas.serde import Serde
from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker, free_port
from shekara.reference import load_checkpoints
from shekara.settings import Settings, TopicNames
from streams.web import (
    LOAD_WINDOW_SECONDS,
    MAP_HEIGHT,
    MAP_WIDTH,
    PAGE_PATH,
    alert_change,
    checkpoint_loads,
    checkpoint_rows,
    credentials_match,
    fold_load,
    host_is_loopback,
    load_key,
    minute_of,
    open_overstays,
    parse_query,
    project,
    render_page,
    select_alerts,
    standalone_app,
    web_config,
)

KEY = "c0ffee" * 5 + "00"
NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_alert(
    anchor: str,
    type_: AlertType = AlertType.IN_COUNTRY_OVERSTAY,
    severity: Severity = Severity.HIGH,
    checkpoint: str | None = "KZ-RU-ZHAISAN",
    action: AlertAction = AlertAction.RAISED,
    due: datetime = NOW,
) -> Alert:
    return Alert(
        alert_id=alert_id(type_.value, KEY, anchor),
        action=action,
        type=type_,
        severity=severity,
        traveller_key=KEY,
        nationality="TJK",
        checkpoint_id=checkpoint,
        evidence_event_ids=[anchor, f"{anchor}-b"],
        rule_id="visa_free_general",
        rule_version="2023-01-27",
        reason=f"no exit seen after the allowed stay ({anchor})",
        due_time=due,
        emitted_time=due,
    )


def entry(alert: Alert) -> dict[str, Any]:
    _, value = alert_change(alert, load_checkpoints())
    assert value is not None
    return value


# --- pure ----------------------------------------------------------------------------------------------


def test_raised_adds_resolved_and_retracted_remove() -> None:
    raised = make_alert("e1")
    key, value = alert_change(raised, load_checkpoints())
    assert key == raised.alert_id and value is not None
    assert value["checkpoint_name"] == "Zhaisan" and value["due_time"] == NOW.isoformat()
    for action in (AlertAction.RESOLVED, AlertAction.RETRACTED):
        assert alert_change(make_alert("e1", action=action), load_checkpoints()) == (raised.alert_id, None)


def test_alerts_are_filtered_and_listed_most_urgent_first() -> None:
    low = entry(make_alert("a", AlertType.DOUBLE_ENTRY, Severity.LOW, due=NOW + timedelta(days=1)))
    high_old = entry(make_alert("b", due=NOW - timedelta(days=2)))
    high_new = entry(make_alert("c", due=NOW))
    critical = entry(make_alert("d", AlertType.BANNED_ENTRY, Severity.CRITICAL, checkpoint="KZ-RU-SYRYM"))
    entries = [low, high_old, critical, high_new]
    listed, matching = select_alerts(entries)
    assert [e["alert_id"] for e in listed] == [e["alert_id"] for e in (critical, high_new, high_old, low)]
    assert matching == 4
    listed, matching = select_alerts(entries, severities={"HIGH"}, checkpoints={"KZ-RU-ZHAISAN"}, limit=1)
    assert [e["alert_id"] for e in listed] == [high_new["alert_id"]] and matching == 2
    assert select_alerts(entries, types={"WINDOW_BREACH"}) == ([], 0)


def test_query_parameters_share_the_console_syntax_and_reject_bad_values() -> None:
    types, severities, checkpoints = parse_query(
        [("type", "banned_entry,DOUBLE_ENTRY"), ("severity", "HIGH+"), ("checkpoint", "kz-ru-syrym"), ("x", "1")]
    )
    assert types == {"BANNED_ENTRY", "DOUBLE_ENTRY"}
    assert severities == {"HIGH", "CRITICAL"}
    assert checkpoints == {"KZ-RU-SYRYM"}
    with pytest.raises(ValueError, match="unknown severity 'SEVERE'"):
        parse_query({"severity": "SEVERE"})


def test_open_overstays_count_in_country_overstays_by_entry_checkpoint() -> None:
    entries = [
        entry(make_alert("a")),
        entry(make_alert("b")),
        entry(make_alert("c", checkpoint="KZ-RU-SYRYM")),
        entry(make_alert("d", AlertType.OUT_OF_COUNTRY_OVERSTAY, Severity.MEDIUM)),  # left already: not open
        entry(make_alert("e", checkpoint=None)),
    ]
    assert open_overstays(entries) == {"KZ-RU-ZHAISAN": 2, "KZ-RU-SYRYM": 1}


def test_load_buckets_keep_only_the_last_hour_of_event_time() -> None:
    start = minute_of(NOW)
    state = fold_load(None, [start, start, start + 1])
    assert state == {"latest": start + 1, "buckets": {str(start): 2, str(start + 1): 1}}
    state = fold_load(state, [start + 60])  # the hour is the 60 minutes up to the latest: the first one falls out
    assert state["buckets"] == {str(start + 1): 1, str(start + 60): 1}
    assert fold_load(state, [start - 500])["latest"] == start + 60  # a late crossing does not move time back


def test_load_sums_partitions_relative_to_the_latest_event_time_anywhere() -> None:
    m = minute_of(NOW)
    window = LOAD_WINDOW_SECONDS // 60
    entries = [
        (load_key("KZ-RU-ZHAISAN", 0), fold_load(None, [m - 10, m - 10])),
        (load_key("KZ-RU-ZHAISAN", 3), fold_load(None, [m - 5])),
        (load_key("KZ-RU-SYRYM", 1), fold_load(None, [m])),
        # this partition is quiet: its minutes are older than an hour before the latest crossing seen anywhere
        (load_key("KZ-RU-KAIRAK", 2), fold_load(None, [m - window - 1])),
    ]
    loads, latest = checkpoint_loads(entries)
    assert latest == m
    assert loads == {"KZ-RU-ZHAISAN": 3, "KZ-RU-SYRYM": 1, "KZ-RU-KAIRAK": 0}
    assert checkpoint_loads([]) == ({}, None)


def test_map_projection_puts_north_up_and_east_right_inside_the_frame() -> None:
    checkpoints = load_checkpoints()
    for cp in checkpoints.values():
        x, y = project(cp.lat, cp.lon)
        assert 0 <= x <= MAP_WIDTH and 0 <= y <= MAP_HEIGHT, cp
    north, south = project(54.0, 70.0), project(42.0, 70.0)
    west, east = project(48.0, 50.0), project(48.0, 80.0)
    assert north[1] < south[1] and west[0] < east[0]


def test_checkpoint_rows_cover_the_catalogue_and_unknown_ids() -> None:
    checkpoints = load_checkpoints()
    rows = checkpoint_rows(checkpoints, {"KZ-RU-ZHAISAN": 7, "KZ-XX-NEW": 2}, {"KZ-RU-ZHAISAN": 1})
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == set(checkpoints) | {"KZ-XX-NEW"}
    assert by_id["KZ-RU-ZHAISAN"]["load_last_hour"] == 7 and by_id["KZ-RU-ZHAISAN"]["open_overstays"] == 1
    assert by_id["KZ-XX-NEW"]["x"] is None and by_id["KZ-XX-NEW"]["load_last_hour"] == 2


def test_page_is_self_contained_with_its_config_inlined() -> None:
    html = render_page(PAGE_PATH.read_text(encoding="utf-8"))
    assert "/*CONFIG*/" not in html and '"IN_COUNTRY_OVERSTAY"' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # no CDN: the machines are offline
    assert "https://" not in html
    assert render_page('x=/*CONFIG*/null;"</script>"').count("</script>") == 1  # config cannot close the script


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_login_header_must_carry_exactly_the_user_and_password() -> None:
    assert credentials_match(basic("ops", "s3cret:with colon"), "ops", "s3cret:with colon")
    assert credentials_match("basic " + basic("ops", "pw")[6:], "ops", "pw")  # the scheme is case-insensitive
    for header in (
        "",
        basic("ops", "wrong"),
        basic("admin", "pw"),
        basic("ops", "pw ") + "x",
        "Bearer " + basic("ops", "pw")[6:],
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"ops-without-colon").decode(),
    ):
        assert not credentials_match(header, "ops", "pw"), header


def test_page_binds_loopback_by_default_with_faust_views_off(tmp_path: Path) -> None:
    settings = Settings()
    config = web_config(settings, web_port=7001)
    assert settings.faust.web_bind == "127.0.0.1" and config["web_bind"] == "127.0.0.1"
    assert config["web_port"] == 7001
    # No password: no login, but the Host must name loopback (DNS rebinding, test_a_rebinding_site_gets_nothing).
    assert [m.__name__ for m in config["web_application_options"]["middlewares"]] == ["require_loopback_host"]
    off = ("web_tables_enabled", "web_router_enabled", "web_graph_enabled", "web_stats_enabled", "web_metrics_enabled")
    assert all(config[name] is False for name in off)
    app = standalone_app(Settings(data_dir=tmp_path))
    assert app.conf.web_bind == "127.0.0.1" and not app.conf.web_tables_enabled and not app.conf.web_router_enabled
    with pytest.raises(ValueError, match="SHEKARA_FAUST__WEB_PASSWORD is empty"):
        web_config(Settings.model_validate({"faust": {"web_bind": "0.0.0.0"}}))
    with_login = web_config(Settings.model_validate({"faust": {"web_bind": "0.0.0.0", "web_password": "pw-7c1e"}}))
    assert [m.__name__ for m in with_login["web_application_options"]["middlewares"]] == ["require_login"]


def test_only_loopback_names_count_as_this_machine() -> None:
    for host in ("localhost", "LOCALHOST:6066", "127.0.0.1", "127.0.0.1:6066", "127.8.9.1:1", "[::1]", "[::1]:6066",
                 "ops.localhost:6066", "::1"):  # fmt: skip
        assert host_is_loopback(host), host
    for host in ("evil.example", "evil.example:6066", "127.0.0.1.nip.io:6066", "localhost.evil.example", "0.0.0.0",
                 "10.0.0.5:6066", "[::ffff:7f00:1]x", "", "[::1", "127.0.0.1:6066:1"):  # fmt: skip
        assert not host_is_loopback(host), host


def test_page_refuses_a_public_bind_without_a_password_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    env |= {"SHEKARA_CONFIG": str(tmp_path / "absent.toml"), "SHEKARA_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "streams.web", "--bind", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SHEKARA_FAUST__WEB_PASSWORD is empty: the ops page needs a login in "
        "SHEKARA_FAUST__WEB_BIND=0.0.0.0 (not loopback)"
    ]


# --- integration: the page served by a Faust worker, rendered by Chromium ----------------------------------


class OpsServer:
    def __init__(
        self,
        settings: Settings,
        port: int,
        process: subprocess.Popen[bytes],
        log: Path,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.settings, self.port, self.process, self.log, self.auth = settings, port, process, log, auth

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, auth=auth or self.auth)

    def wait_for(self, path: str, condition: Any, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            body = self.get(path).json()
            if condition(body):
                return body
            time.sleep(0.2)
        raise AssertionError(f"{path} never matched; last answer {body}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def topic_settings(broker: EmbeddedBroker, data_dir: Path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()}
    settings = Settings(broker_url=broker.url, data_dir=data_dir, partitions=4, topics=TopicNames(**names))
    wait_for_broker(settings)
    ensure_topics(settings)
    return settings


def start_page(settings: Settings, app_id: str, workdir: Path, password: str | None = None) -> OpsServer:
    """`python -m streams.web` in its own process, configured only through SHEKARA_* variables."""
    port = free_port()
    env = {
        **os.environ,
        "SHEKARA_BROKER_URL": settings.broker_url,
        "SHEKARA_PARTITIONS": str(settings.partitions),
        "SHEKARA_DATA_DIR": str(workdir),
        "SHEKARA_FAUST__WEB_PORT": str(port),
        **{f"SHEKARA_TOPICS__{k.upper()}": v for k, v in settings.topics.model_dump().items()},
    }
    if password is not None:
        env["SHEKARA_FAUST__WEB_PASSWORD"] = password
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "web.log"
    cmd = [sys.executable, "-m", "streams.web", "--app-id", app_id, "--bind", "127.0.0.1", "--loglevel", "info"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = OpsServer(settings, port, process, log, auth=("ops", password) if password else None)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if server.get("/api/alerts").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError("the ops page did not come up within 60 s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ops_server(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsServer]:
    tmp = tmp_path_factory.mktemp("ops-web")
    settings = topic_settings(broker, tmp / "var")
    server = start_page(settings, f"ops-web-{uuid.uuid4().hex[:8]}", tmp / "var")
    try:
        yield server
    finally:
        server.stop()


def crossing(event_id: str, checkpoint: str, at: datetime) -> Crossing:
    return samples.crossing(
        event_id,
        event_time=at,
        received_time=at,
        checkpoint=Checkpoint(checkpoint, CheckpointKind.ROAD, "RUS"),
        traveller=samples.traveller("N7654321", "TJK", birth_date=date(1991, 5, 4), sex=Sex.F),
        conveyance=None,
    )


def send(settings: Settings, topic: str, values: list[bytes]) -> None:
    """Keyed like the processors key them (by traveller): one partition, so the records keep their order."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for value in values:
        producer.produce(topic, key=KEY.encode(), value=value)
    assert producer.flush(10) == 0


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran: virtual time lets its fetches and timers complete."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.integration
def test_ops_page_tracks_alerts_load_and_dead_letters(ops_server: OpsServer) -> None:
    s = ops_server.settings
    serde = Serde.from_settings(s)
    now = datetime.now(UTC).replace(microsecond=0)
    overstay = make_alert("w-1", due=now)
    retracted = make_alert("w-2", AlertType.UNREGISTERED_STAY, Severity.LOW, due=now)
    alerts = [overstay, retracted, make_alert("w-2", AlertType.UNREGISTERED_STAY, action=AlertAction.RETRACTED)]
    send(s, s.topics.alerts, [serde.encode(a, s.topics.alerts) for a in alerts] + [b"not an alert"])
    crossings = [crossing(f"x{i}", "KZ-RU-KAIRAK", now - timedelta(minutes=5 * i)) for i in range(15)]
    # A bad crossing in the middle is left out of the count and does not stop the agent.
    encoded = [serde.encode(c, s.topics.crossings) for c in crossings]
    send(s, s.topics.crossings, [*encoded[:5], b"\x00garbage", *encoded[5:]])

    # The unreadable record went to the dead-letter topic with the reason, not silently dropped. It was sent
    # last on the same partition, so once it is there the alerts before it have been applied.
    consumer = Consumer(
        {"bootstrap.servers": s.bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(s.topics.dead_letter, p, OFFSET_BEGINNING) for p in range(s.partitions)])
    try:
        deadline, msg = time.monotonic() + 20, None
        while msg is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            msg = m if m is not None and m.error() is None else None
    finally:
        consumer.close()
    assert msg is not None, "no dead letter"
    dead = serde.decode(msg.value() or b"", s.topics.dead_letter)
    assert isinstance(dead, DeadLetter)
    assert dead.source_topic == s.topics.alerts and dead.value == b"not an alert" and "bad magic" in dead.reason

    body = ops_server.get("/api/alerts").json()
    assert [a["alert_id"] for a in body["alerts"]] == [overstay.alert_id]  # the retracted one is gone
    cps = ops_server.wait_for(
        "/api/checkpoints",
        lambda b: any(c["id"] == "KZ-RU-KAIRAK" and c["load_last_hour"] == 12 for c in b["checkpoints"]),
    )
    by_id = {c["id"]: c for c in cps["checkpoints"]}
    assert by_id["KZ-RU-KAIRAK"]["load_last_hour"] == 12  # 0..55 minutes back, not 60..70
    assert by_id["KZ-RU-ZHAISAN"]["open_overstays"] == 1
    assert ops_server.get("/api/alerts?severity=SEVERE").status_code == 400


@pytest.mark.integration
def test_faust_table_and_router_views_are_not_served(ops_server: OpsServer) -> None:
    for path in ("/table/", "/table/ops-open-alerts/", "/router/", "/graph/", "/stats/", "/performance/"):
        assert ops_server.get(path).status_code == 404, path
    assert ops_server.get("/api/alerts").status_code == 200


@pytest.mark.integration
def test_a_rebinding_site_gets_nothing(ops_server: OpsServer) -> None:
    """DNS rebinding: a site re-resolving its own name to 127.0.0.1 is same-origin with a page without a login.

    The officer's browser then sends the site's name as Host; every view, the triage POST too, refuses it.
    """
    rebound = {"Host": f"evil.example:{ops_server.port}"}
    for path in ("/", "/api/alerts", "/api/status", "/api/history?key=" + "0" * 32, "/history", "/metrics"):
        answer = httpx.get(ops_server.url + path, headers=rebound, timeout=5)
        assert answer.status_code == 421, (path, answer.status_code)
        assert answer.text.count("\n") == 1 and "answers only to localhost" in answer.text, answer.text
    triage = httpx.post(
        ops_server.url + "/api/triage",
        json={"alert_id": "x", "action": "ack"},
        headers=rebound | {"Origin": "http://evil.example"},
        timeout=5,
    )
    assert triage.status_code == 421
    # The page's own names still work.
    for host in (f"127.0.0.1:{ops_server.port}", f"localhost:{ops_server.port}"):
        assert httpx.get(ops_server.url + "/api/alerts", headers={"Host": host}, timeout=5).status_code == 200


@pytest.mark.integration
def test_with_a_password_every_request_needs_the_login(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = topic_settings(broker, tmp_path / "var")
    page = start_page(settings, f"ops-login-{uuid.uuid4().hex[:8]}", tmp_path / "var", password="0ps-l0gin-77")
    try:
        for path in ("/", "/api/alerts", "/api/status", "/table/ops-open-alerts/", "/router/"):
            anonymous = httpx.get(page.url + path, timeout=5)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="Shekara ops"')
            assert httpx.get(page.url + path, timeout=5, auth=("ops", "wrong")).status_code == 401, path
        assert page.get("/api/alerts").status_code == 200 and page.get("/").status_code == 200
        assert page.get("/table/ops-open-alerts/").status_code == 404  # off, also for the logged-in
        # The container health check logs in with the same settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
        env |= {"SHEKARA_FAUST__WEB_PORT": str(page.port), "SHEKARA_FAUST__WEB_PASSWORD": "0ps-l0gin-77"}
        check = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
        done = subprocess.run([sys.executable, str(check), "processors"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        env["SHEKARA_FAUST__WEB_PASSWORD"] = "wrong"
        done = subprocess.run([sys.executable, str(check), "processors"], env=env, capture_output=True, text=True)
        assert done.returncode == 1 and "401" in done.stderr
    finally:
        page.stop()


@pytest.mark.integration
def test_browser_shows_an_injected_alert(ops_server: OpsServer, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed on CI: .ci/run must install Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver); CI runs this test")
    s = ops_server.settings
    serde = Serde.from_settings(s)
    banned = make_alert("b-1", AlertType.BANNED_ENTRY, Severity.CRITICAL, checkpoint="KZ-RU-SYRYM")
    double = make_alert("b-2", AlertType.DOUBLE_ENTRY, Severity.LOW, checkpoint="KZ-RU-SYRYM")
    send(s, s.topics.alerts, [serde.encode(a, s.topics.alerts) for a in (banned, double)])
    ops_server.wait_for("/api/alerts?checkpoint=KZ-RU-SYRYM", lambda b: b["matching"] == 2)

    dom = dump_dom(f"{ops_server.url}/?severity=HIGH%2B", tmp_path / "chromium")
    # The rows are built by the page's script from /api/alerts, so they are only there if the fetch worked.
    assert f'data-alert-id="{banned.alert_id}"' in dom
    assert f'data-alert-id="{double.alert_id}"' not in dom  # filtered out by severity
    assert "BANNED_ENTRY" in dom and "Syrym (KZ-RU-SYRYM)" in dom and "no exit seen after the allowed stay (b-1)" in dom
    assert 'id="status" class="">updated' in dom  # no fetch error shown
    assert 'class="cp ROAD"' in dom  # the map's checkpoint dots were drawn


@pytest.mark.integration
def test_container_health_check_passes_against_the_served_page(ops_server: OpsServer) -> None:
    # deploy/healthcheck.py is what docker-compose runs in each processor container.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    env["SHEKARA_FAUST__WEB_PORT"] = str(ops_server.port)
    check = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
    done = subprocess.run(
        [sys.executable, str(check), "processors"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_every_replica_shows_every_open_alert(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Two workers of one group split the source partitions, yet each page lists the alerts of all of them."""
    settings = topic_settings(broker, tmp_path / "var")
    app_id = f"ops-pair-{uuid.uuid4().hex[:8]}"
    pages = [start_page(settings, app_id, tmp_path / f"w{i}") for i in range(2)]
    try:
        alerts_topic = settings.topics.alerts

        def owned(page: OpsServer) -> set[int]:
            return set(page.get("/api/status").json()["active_partitions"].get(alerts_topic, []))

        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            split = [owned(p) for p in pages]
            if all(split) and not split[0] & split[1] and split[0] | split[1] == set(range(settings.partitions)):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the two workers never split the partitions: {split}")

        serde = Serde.from_settings(settings)
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
        raised = []
        for i in range(24):  # 24 travellers: keys spread over every partition
            key = f"{i:032x}"
            alert = replace(make_alert(f"p-{i}"), traveller_key=key, alert_id=alert_id("IN_COUNTRY_OVERSTAY", key, "p"))
            raised.append(alert.alert_id)
            producer.produce(alerts_topic, key=key.encode(), value=serde.encode(alert, alerts_topic))
        assert producer.flush(10) == 0
        for page in pages:
            body = page.wait_for("/api/alerts", lambda b: b["open"] == len(raised))
            assert sorted(a["alert_id"] for a in body["alerts"]) == sorted(raised)
    finally:
        for page in pages:
            page.stop()
