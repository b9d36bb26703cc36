"""The ops console (`shekara alerts`) and the benchmark report (`shekara bench`).

Pure formatting and filtering first, then the real thing: alerts published to the embedded broker and read
back by `tail_alerts` and by the `shekara alerts` command in a subprocess; the bench runner on a real broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Producer
from rich.console import Console

from harness import ops_cli
from harness.bench import BenchResult
from harness.ops_cli import (
    NOT_AVAILABLE,
    ComponentOutcome,
    load_component,
    report_json,
    report_table,
    run_bench,
    run_component,
    tail_alerts,
)
from schemas.ids import alert_id
from schemas.records import Alert, AlertAction, AlertType, Severity
from schemas.serde import Serde
from shekara.reference import load_checkpoints
from shekara.settings import Settings
from streams.console import AlertFilter, format_alert, format_rejected, parse_filter

ALMATY = ZoneInfo("Asia/Almaty")
REPO = Path(__file__).resolve().parents[2]
KEY = "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e"


def make_alert(
    anchor: str = "e-1",
    *,
    type_: AlertType = AlertType.IN_COUNTRY_OVERSTAY,
    severity: Severity = Severity.HIGH,
    action: AlertAction = AlertAction.RAISED,
    checkpoint: str | None = "KZ-RU-ZHAISAN",
    due: datetime = datetime(2025, 3, 1, 19, 0, tzinfo=UTC),
    evidence: list[str] | None = None,
) -> Alert:
    return Alert(
        alert_id=alert_id(type_.value, KEY, anchor),
        action=action,
        type=type_,
        severity=severity,
        traveller_key=KEY,
        nationality="UZB",
        checkpoint_id=checkpoint,
        evidence_event_ids=evidence if evidence is not None else [anchor],
        rule_id="visa_free_general",
        rule_version="2023-01-27",
        reason="allowed stay ended on 2025-03-01 and no exit was seen",
        due_time=due,
        emitted_time=datetime(2025, 3, 1, 19, 0, 5, tzinfo=UTC),
        days_overstayed=None,
    )


# --- pure: filters -------------------------------------------------------------------------------------


def test_filter_parses_repeated_and_comma_separated_values_case_insensitively() -> None:
    f = parse_filter(["in_country_overstay,banned-entry", "WINDOW_BREACH"], ["medium"], ["kz-ru-zhaisan"])
    assert f.types == {AlertType.IN_COUNTRY_OVERSTAY, AlertType.BANNED_ENTRY, AlertType.WINDOW_BREACH}
    assert f.severities == {Severity.MEDIUM}
    assert f.checkpoints == {"KZ-RU-ZHAISAN"}


def test_severity_plus_means_that_level_and_above() -> None:
    assert parse_filter(severities=["HIGH+"]).severities == {Severity.HIGH, Severity.CRITICAL}
    assert parse_filter(severities=["low+"]).severities == set(Severity)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"types": ["OVERSTAY"]}, r"--type: unknown alert type 'OVERSTAY'"),
        ({"severities": ["URGENT"]}, r"--severity: unknown severity 'URGENT'"),
    ],
)
def test_bad_filter_values_name_the_option_and_the_value(kwargs: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(**kwargs)


def test_filter_matches_on_every_given_dimension() -> None:
    alert = make_alert()
    assert AlertFilter().matches(alert)
    assert parse_filter(["IN_COUNTRY_OVERSTAY"], ["HIGH"], ["KZ-RU-ZHAISAN"]).matches(alert)
    assert not parse_filter(types=["BANNED_ENTRY"]).matches(alert)
    assert not parse_filter(severities=["CRITICAL"]).matches(alert)
    assert not parse_filter(checkpoints=["KZ-RU-SYRYM"]).matches(alert)
    assert not parse_filter(checkpoints=["KZ-RU-ZHAISAN"]).matches(replace(alert, checkpoint_id=None))


# --- pure: lines ---------------------------------------------------------------------------------------


def test_line_says_since_when_what_who_where_why_and_evidence() -> None:
    alert = make_alert(evidence=["e-1", "e-2", "e-3", "e-4", "e-5"])
    line = format_alert(alert, tz=ALMATY, checkpoints=load_checkpoints()).plain
    assert line.startswith("2025-03-02 00:00 +0500")  # 19:00 UTC is midnight in Almaty (UTC+5 since March 2024)
    for part in ("RAISED", "HIGH", "IN_COUNTRY_OVERSTAY", "Zhaisan [KZ-RU-ZHAISAN]"):
        assert part in line
    assert "allowed stay ended on 2025-03-01" in line
    assert "e-1, e-2, e-3 (+2 more)" in line
    # The whole pseudonymous key (what travel_history takes) and the whole alert id (what `alerts ack` takes).
    assert f"UZB {KEY} " in line and f"id {alert.alert_id}" in line
    assert "raised 2025-03-02 00:00 +0500" in line and line.endswith("triage new")


def test_line_uses_the_offset_in_force_at_the_time() -> None:
    # Kazakhstan moved from UTC+6 to UTC+5 on 1 March 2024: a 2023 alert shows +0600.
    line = format_alert(make_alert(due=datetime(2023, 6, 1, 18, 0, tzinfo=UTC)), tz=ALMATY).plain
    assert line.startswith("2023-06-02 00:00 +0600")


def test_line_without_checkpoint_and_with_days_overstayed() -> None:
    alert = replace(make_alert(checkpoint=None), days_overstayed=4, reason="left after the allowed stay")
    line = format_alert(alert, tz=ALMATY).plain
    assert " at - " in line
    assert "left after the allowed stay (4 days overstayed)" in line


def test_unknown_checkpoint_is_shown_by_id() -> None:
    line = format_alert(make_alert(checkpoint="KZ-XX-NOWHERE"), tz=ALMATY, checkpoints=load_checkpoints()).plain
    assert " at KZ-XX-NOWHERE " in line


def test_severity_and_action_are_coloured() -> None:
    def styles_of(alert: Alert) -> dict[str, str]:
        text = format_alert(alert, tz=ALMATY)
        return {text.plain[s.start : s.end].strip(): str(s.style) for s in text.spans}

    critical = styles_of(make_alert(severity=Severity.CRITICAL, type_=AlertType.BANNED_ENTRY))
    assert critical["CRITICAL"] == "bold white on red"
    assert critical["RAISED"] == "bold"
    retracted = styles_of(make_alert(action=AlertAction.RETRACTED, severity=Severity.LOW))
    assert retracted["RETRACTED"] == "dim"
    assert retracted["LOW"] == "cyan"
    # Rendered for a colour terminal, the line carries ANSI escapes.
    console = Console(force_terminal=True, color_system="standard", width=400)
    with console.capture() as cap:
        console.print(format_alert(make_alert(severity=Severity.CRITICAL), tz=ALMATY))
    assert "\x1b[" in cap.get()


def test_unreadable_record_line_names_partition_offset_and_reason() -> None:
    assert format_rejected(2, 41, "bad magic byte 0x7b").plain == (
        "unreadable record at partition 2 offset 41: bad magic byte 0x7b"
    )


# --- integration: tailing the alerts topic ---------------------------------------------------------------


def publish(settings: Settings, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for i, value in enumerate(values):
        producer.produce(settings.topics.alerts, key=f"k{i % 3}".encode(), value=value)
    assert producer.flush(10) == 0


def encode(settings: Settings, *alerts: Alert) -> list[bytes]:
    serde = Serde.from_settings(settings)
    return [serde.encode(a, settings.topics.alerts) for a in alerts]


@pytest.mark.integration
def test_history_is_filtered_and_bad_records_are_reported_not_fatal(settings: Settings) -> None:
    overstay = make_alert("e-1")
    banned = make_alert("e-2", type_=AlertType.BANNED_ENTRY, severity=Severity.CRITICAL)
    low = make_alert("e-3", type_=AlertType.DOUBLE_ENTRY, severity=Severity.LOW)
    publish(settings, [*encode(settings, overstay, banned, low), b'{"not": "avro"}'])

    shown: list[Alert] = []
    bad: list[tuple[int, int, str]] = []
    stats = tail_alerts(
        settings,
        on_alert=shown.append,
        on_unreadable=lambda p, o, r: bad.append((p, o, r)),
        alert_filter=parse_filter(severities=["HIGH+"]),
    )
    assert sorted(a.alert_id for a in shown) == sorted([overstay.alert_id, banned.alert_id])
    assert shown[0] in (overstay, banned)  # decoded back to the same record
    assert (stats.shown, stats.skipped, stats.unreadable) == (2, 1, 1)
    assert len(bad) == 1 and "bad magic byte 0x7b" in bad[0][2]


@pytest.mark.integration
def test_follow_shows_only_new_alerts_then_stops(settings: Settings) -> None:
    old, new = make_alert("e-old"), make_alert("e-new")
    publish(settings, encode(settings, old))
    shown: list[Alert] = []
    ready, stop = threading.Event(), threading.Event()
    worker = threading.Thread(
        target=tail_alerts,
        kwargs={
            "settings": settings,
            "on_alert": shown.append,
            "on_unreadable": lambda *_: None,
            "follow": True,
            "stop": stop,
            "on_ready": lambda _: ready.set(),
            "poll_timeout": 0.1,
        },
    )
    worker.start()
    try:
        assert ready.wait(20)
        publish(settings, encode(settings, new))
        deadline = time.monotonic() + 15
        while not shown and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert [a.alert_id for a in shown] == [new.alert_id]


def cli_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SHEKARA_BROKER_URL": settings.broker_url,
            **{f"SHEKARA_TOPICS__{k.upper()}": v for k, v in settings.topics.model_dump().items()},
            "SHEKARA_DATA_DIR": str(settings.data_dir),
            "COLUMNS": "400",
        }
    )
    return env


@pytest.mark.integration
def test_alerts_command_prints_matching_history(settings: Settings) -> None:
    publish(settings, encode(settings, make_alert("e-1"), make_alert("e-2", type_=AlertType.WINDOW_BREACH)))
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "alerts", "--type", "WINDOW_BREACH"],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "WINDOW_BREACH" in lines[0] and "Zhaisan [KZ-RU-ZHAISAN]" in lines[0]
    assert "1 alerts shown, 1 filtered out, 0 unreadable" in done.stderr


@pytest.mark.integration
def test_alerts_command_follows_in_colour(settings: Settings) -> None:
    env = {**cli_env(settings), "FORCE_COLOR": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "alerts", "--follow", "--severity", "CRITICAL", "--max", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the offsets are fixed
        assert "following" in banner, banner
        high = make_alert("e-high")
        critical = make_alert("e-crit", type_=AlertType.BANNED_ENTRY, severity=Severity.CRITICAL)
        publish(settings, encode(settings, high, critical))
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "BANNED_ENTRY" in out and "IN_COUNTRY_OVERSTAY" not in out
    assert "\x1b[" in out  # coloured


def test_alerts_command_rejects_unknown_type() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "alerts", "--type", "NOPE"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown alert type 'NOPE'" in done.stderr


# --- bench report --------------------------------------------------------------------------------------

TOY_BENCH = textwrap.dedent(
    '''
    """A stand-in component for the bench runner's tests: real (tiny) measurements, on the real broker."""
    import time

    from confluent_kafka.admin import AdminClient

    from harness.bench import BenchResult

    SEEN = []


    def run(settings, quick):
        topics = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=5).topics
        assert settings.topics.crossings in topics, "the runner creates each component's topics"
        SEEN.append(settings)
        n = 10_000 if quick else 100_000
        t = time.perf_counter()
        sum(range(n))
        fast = n / (time.perf_counter() - t)
        t = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        slow = n / (time.perf_counter() - t)
        return [BenchResult("toy", "builtin sum", fast, "items/s", "python loop", slow, ">= 1x")]
    '''
)


@pytest.fixture
def toy_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "toy_bench_ok.py").write_text(TOY_BENCH)
    (tmp_path / "toy_bench_broken.py").write_text("def run(settings, quick):\n    raise RuntimeError('disk full')\n")
    (tmp_path / "toy_bench_liar.py").write_text("def run(settings, quick):\n    return [{'value': 1e9}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("toy_bench_ok", "toy_bench_broken", "toy_bench_liar"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_missing_component_is_not_available_and_gives_no_figures() -> None:
    assert load_component("streams.no_such_bench") is None
    outcome = run_component("ghost", "streams.no_such_bench", Settings(), True)
    assert outcome.status == NOT_AVAILABLE and outcome.results == []


def test_failing_or_malformed_component_is_an_error(toy_modules: Path) -> None:
    broken = run_component("broken", "toy_bench_broken", Settings(), True)
    assert broken.status == "error" and broken.error == "RuntimeError: disk full" and broken.results == []
    liar = run_component("liar", "toy_bench_liar", Settings(), True)
    assert liar.status == "error" and "not BenchResult" in (liar.error or "")


@pytest.mark.integration
def test_bench_runs_components_on_a_fresh_broker_and_reports_them(toy_modules: Path, settings: Settings) -> None:
    console = Console(width=200, record=True)
    components = [("toy", "toy_bench_ok"), ("ghost", "streams.no_such_bench"), ("broken", "toy_bench_broken")]
    server_like = settings.model_copy(update={"schema_registry_url": "http://registry.invalid:8081"})
    outcomes = run_bench(components, server_like, quick=True, console=console)
    assert [o.status for o in outcomes] == ["ok", NOT_AVAILABLE, "error"]
    import toy_bench_ok

    used = toy_bench_ok.SEEN[-1]
    assert used.broker_url != settings.broker_url  # its own embedded broker, not the session's
    assert used.mode.value == "embedded" and used.schema_registry_url is None
    assert used.topics.crossings.startswith("shekara.crossings.bench-toy-")
    assert not Path(str(used.data_dir)).exists()  # temp dirs cleaned up

    console.print(report_table(outcomes, quick=True))
    text = console.export_text()
    assert "builtin sum" in text and "python loop" in text and "items/s" in text
    assert "not available" in text and "RuntimeError: disk full" in text
    doc = json.loads(json.dumps(report_json(outcomes, quick=True, started=datetime.now(UTC))))
    toy = doc["components"][0]
    assert toy["status"] == "ok" and toy["results"][0]["baseline_name"] == "python loop"
    assert toy["results"][0]["ratio"] == pytest.approx(toy["results"][0]["value"] / toy["results"][0]["baseline_value"])
    assert doc["components"][1]["status"] == NOT_AVAILABLE and doc["components"][1]["results"] == []


def test_report_shows_ratio_against_the_baseline() -> None:
    result = BenchResult("processor", "events/s through one worker", 7000.0, "events/s", "bare take() loop", 7800.0)
    outcome = ComponentOutcome("streams", "harness.bench.processor", "ok", 1.0, [result])
    console = Console(width=200, record=True)
    console.print(report_table([outcome], quick=False))
    text = console.export_text()
    assert "7,000 events/s" in text and "bare take() loop: 7,800 events/s" in text and "0.90x" in text


def test_bench_command_rejects_unknown_component() -> None:
    with pytest.raises(Exception, match="unknown component 'nope'"):
        ops_cli.select_components("nope")
    assert [n for n, _ in ops_cli.select_components(None)] == ["simulator", "producer", "streams", "sink"]


@pytest.mark.integration
def test_bench_command_writes_json(toy_modules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real command end to end, with the component list pointed at the toy module.
    monkeypatch.setattr(ops_cli, "COMPONENTS", (("toy", "toy_bench_ok"),))
    out = tmp_path / "bench.json"
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "toy", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "builtin sum" in result.output
    doc = json.loads(out.read_text())
    assert doc["quick"] is True and doc["components"][0]["results"][0]["unit"] == "items/s"
