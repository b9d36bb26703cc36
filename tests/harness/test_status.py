"""`shekara status` (`harness.status`): rates and the screen from /metrics pages (pure), then a real worker on the
embedded broker read as an operator reads it, and the one line when the broker cannot be reached.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.status import (
    GroupLag,
    ProcessState,
    Status,
    Target,
    duration,
    gather,
    parse,
    process_state,
    rates,
    render,
)
from schemas.records import Direction
from shekara.embedded import free_port
from shekara.settings import Settings
from streams.worker import spawn_worker, wait_for_assignment
from tests.shekara.test_unreachable import nowhere, run  # noqa: F401  (a fixture)
from tests.streams.test_topology import NOW, crossing, encoded, publish

FIRST = """\
# TYPE shekara_events_in_total counter
shekara_events_in_total{source="shekara.crossings"} 100.0
shekara_events_in_total{source="shekara.registrations"} 10.0
# TYPE shekara_events_out_total counter
shekara_events_out_total{destination="shekara.alerts"} 4.0
# TYPE shekara_dead_letters_total counter
shekara_dead_letters_total{stage="decode",reason="bad magic byte"} 1.0
"""
SECOND = """\
# TYPE shekara_events_in_total counter
shekara_events_in_total{source="shekara.crossings"} 300.0
shekara_events_in_total{source="shekara.registrations"} 30.0
# TYPE shekara_events_out_total counter
shekara_events_out_total{destination="shekara.alerts"} 8.0
# TYPE shekara_dead_letters_total counter
shekara_dead_letters_total{stage="decode",reason="bad magic byte"} 2.0
shekara_dead_letters_total{stage="validate",reason="message key is bytes"} 3.0
# TYPE shekara_alerts_total counter
shekara_alerts_total{type="LOST_STOLEN_DOCUMENT",action="RAISED"} 8.0
# TYPE shekara_watermark_age_seconds gauge
shekara_watermark_age_seconds{partition="0"} 21600.0
shekara_watermark_age_seconds{partition="1"} 22000.0
"""


def test_rates_are_the_increase_per_second_and_survive_a_restart() -> None:
    assert rates({"a": 10.0}, {"a": 30.0, "b": 4.0}, 2.0) == {"a": 10.0, "b": 2.0}
    assert rates({"a": 50.0}, {"a": 6.0}, 2.0) == {"a": 3.0}  # the process restarted: its counter began again


def test_process_state_from_two_scrapes() -> None:
    p = process_state(Target("processors", "http://x/metrics"), parse(FIRST), parse(SECOND), 2.0)
    assert p.rates_in == {"shekara.crossings": 100.0, "shekara.registrations": 10.0}
    assert p.rates_out == {"shekara.alerts": 2.0}
    assert (p.dead_letters, p.alerts, p.max_watermark_age) == (5.0, 8.0, 22000.0)


def test_the_screen_says_what_is_down_and_what_flows() -> None:
    up = process_state(Target("processors", "http://127.0.0.1:6066/metrics"), parse(FIRST), parse(SECOND), 2.0)
    down = ProcessState(Target("sink", "http://127.0.0.1:9464/metrics"), error="nothing listens there")
    screen = render(
        Status(
            at=datetime(2026, 12, 7, 4, 0, tzinfo=UTC),
            broker="127.0.0.1:19092",
            broker_error=None,
            groups=[GroupLag("shekara-processor", "shekara.crossings", 1234, 8)],
            warehouse="chdb:///var/clickhouse",
            warehouse_error="no database 'shekara'",
            warehouse_counts={},
            processes=[up, down],
        )
    )
    lines = screen.splitlines()
    assert "broker     127.0.0.1:19092  ok" in lines
    assert "warehouse  chdb:///var/clickhouse  DOWN: no database 'shekara'" in lines
    (group,) = [line for line in lines if line.startswith("shekara-processor")]
    assert group.split() == ["shekara-processor", "shekara.crossings", "1,234", "8"]
    (processors,) = [line for line in lines if line.startswith("processors")]
    assert processors.split()[2:] == ["110.0", "2.0", "5", "8", "6h06m"]
    assert "DOWN: nothing listens there" in next(line for line in lines if line.startswith("sink"))


def test_durations_are_short() -> None:
    assert [duration(s) for s in (5, 310, 21660, 3 * 86400 + 4 * 3600)] == ["5s", "5m10s", "6h01m", "3d04h"]


@pytest.mark.integration
@pytest.mark.slow
def test_status_of_a_running_worker(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": True, "web_port": port})
    s.metrics = s.metrics.model_copy(update={"sink_port": free_port()})  # no sink runs: it must say so
    t = s.topics
    publish(
        s,
        [encoded(s, crossing(f"st-{i}", f"ST000000{i}", NOW - timedelta(hours=1), Direction.ENTRY)) for i in range(5)],
    )
    status_file = tmp_path / "w.json"
    proc = spawn_worker(s, status_file=status_file, web_port=port, log_path=tmp_path / "w.log")
    try:
        wait_for_assignment([status_file], timeout=60)
        deadline = time.monotonic() + 60
        while True:
            state = gather(s, interval=0.5)
            groups = {(g.group, g.topic): g for g in state.groups}
            caught_up = groups.get((s.faust.app_id, t.crossings))  # the settings' group: `status` looks for it
            if (caught_up is not None and caught_up.lag == 0) or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(20)
    assert state.broker_error is None
    assert caught_up is not None and caught_up.lag == 0 and caught_up.partitions == s.partitions
    processors, sink = state.processes
    assert processors.error is None and processors.max_watermark_age is not None
    assert sink.error is not None and "nothing listens" in sink.error
    screen = render(state)
    assert f"http://127.0.0.1:{port}/metrics" in screen


def test_status_says_in_one_line_that_the_broker_cannot_be_reached(nowhere: tuple[dict[str, str], str]) -> None:  # noqa: F811
    env, address = nowhere
    done, _ = run(env, "status", "--interval", "0.2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot reach the Kafka broker at {address} (is `shekara up` running?)"
    ]
    assert f"broker     {address}  DOWN" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_targets_list_every_worker_that_listens_and_log_in_to_metrics_listeners() -> None:
    from harness.status import targets

    s = Settings.model_validate({"faust": {"web_port": 7000}, "metrics": {"sink_port": 9464, "password": "m-9f8e7d6c"}})
    up = {7000, 7001, 7002, 7004}  # worker 3 is down: workers after it are not looked for
    found = targets(s, lambda _host, port: port in up)
    names = [t.name for t in found]
    assert names[:3] == ["processors", "processors-1", "processors-2"] and "processors-4" not in names
    assert [t.url for t in found][:3] == [f"http://127.0.0.1:{p}/metrics" for p in (7000, 7001, 7002)]
    sink = next(t for t in found if t.name == "sink")
    assert sink.auth == ("metrics", "m-9f8e7d6c")
    assert [t.name for t in targets(s)] == ["processors", "sink"]  # without probing: worker 0; no receiver: no notify
    with_receiver = s.model_copy(update={"notify": s.notify.model_copy(update={"webhook_url": "http://h/hook"})})
    assert [t.name for t in targets(with_receiver)] == ["processors", "notify", "sink"]
