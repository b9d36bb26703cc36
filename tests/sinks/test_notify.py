"""`shekara notify` (issue 17, item 6): CRITICAL/HIGH alerts to a webhook in Alertmanager's payload, retried,
never in the processors' way.

The receivers are local `http.server`s: one fails twice then takes the alert (retry), one is down (the
notifier dead-letters after its attempts while the real processors keep raising alerts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness import samples
from harness.stack import Stack
from schemas.records import AlertAction, AlertType, DeadLetter, Severity, StatusChangeKind
from schemas.serde import Serde
from shekara.embedded import EmbeddedBroker, free_port
from shekara.settings import NotifySettings, Settings
from sinks.notify import ZERO_TIME, payload, run_notify
from tests.streams.test_console import cli_env, encode, make_alert, publish

PAYLOAD_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


class Receiver:
    """A webhook receiver answering each POST with the next scripted status (then 200), recording the bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.bodies, self.answers = list(statuses), [], []  # type: ignore[var-annotated]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.bodies.append(body)
                receiver.answers.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky() -> Iterator[Receiver]:
    r = Receiver([500, 503])
    yield r
    r.close()


# --- pure ----------------------------------------------------------------------------------------------


def test_payload_is_alertmanager_webhook_version_4() -> None:
    config = NotifySettings(webhook_url="http://x/hook", external_url="https://ops.example.kz")
    raised = make_alert("n-1", type_=AlertType.BANNED_ENTRY, severity=Severity.CRITICAL)
    body = payload(raised, config)
    assert set(body) == PAYLOAD_KEYS and body["version"] == "4" and body["status"] == "firing"
    assert body["receiver"] == "shekara-ops" and body["externalURL"] == "https://ops.example.kz/"
    (alert,) = body["alerts"]
    assert set(alert) == ALERT_KEYS
    assert alert["labels"] == body["commonLabels"] and alert["annotations"] == body["commonAnnotations"]
    assert alert["labels"]["alertname"] == "BANNED_ENTRY" and alert["labels"]["severity"] == "critical"
    assert alert["labels"]["alert_id"] == raised.alert_id and alert["labels"]["checkpoint"] == "KZ-RU-ZHAISAN"
    assert alert["startsAt"] == "2025-03-01T19:00:00Z" and alert["endsAt"] == ZERO_TIME
    assert alert["generatorURL"] == f"https://ops.example.kz/history?key={raised.traveller_key}"
    assert body["groupLabels"] == {"alertname": "BANNED_ENTRY", "alert_id": raised.alert_id}
    assert body["groupKey"] == '{}:{alert_id="' + raised.alert_id + '", alertname="BANNED_ENTRY"}'
    # Its resolution is the same alert (same fingerprint), resolved, with an end.
    resolved = payload(replace(raised, action=AlertAction.RESOLVED), config)
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] == "2025-03-01T19:00:05Z"
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"] and len(alert["fingerprint"]) == 16
    other = payload(make_alert("n-2", type_=AlertType.BANNED_ENTRY, severity=Severity.CRITICAL), config)
    assert other["alerts"][0]["fingerprint"] != alert["fingerprint"]


# --- the command, against a receiver that fails twice ----------------------------------------------------


@pytest.mark.integration
def test_notify_retries_until_the_receiver_takes_the_alert(settings: Settings, flaky: Receiver) -> None:
    critical = make_alert("n-3", type_=AlertType.BANNED_ENTRY, severity=Severity.CRITICAL)
    low = make_alert("n-4", type_=AlertType.DOUBLE_ENTRY, severity=Severity.LOW)
    publish(settings, encode(settings, critical, low))
    env = {
        **cli_env(settings),
        "SHEKARA_NOTIFY__WEBHOOK_URL": flaky.url,
        "SHEKARA_NOTIFY__BACKOFF": "0.05",
        "SHEKARA_NOTIFY__GROUP_ID": f"notify-{uuid.uuid4().hex[:8]}",
    }
    cmd = [sys.executable, "-m", "harness.cli", "notify", "--once"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 delivered, 0 dead-lettered, 1 below the severities, 3 attempts" in done.stderr
    assert flaky.answers == [500, 503, 200]
    assert all(b["alerts"][0]["labels"]["alert_id"] == critical.alert_id for b in flaky.bodies)  # the LOW one: never

    # Committed after delivery: a second run sends nothing again.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "0 delivered" in done.stderr, done.stderr
    assert len(flaky.bodies) == 3


def test_notify_is_off_without_a_url() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "notify"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: notifications are off: set SHEKARA_NOTIFY__WEBHOOK_URL to the receiver's URL"
    )


# --- a receiver that is down, while the real processors run --------------------------------------------------


def dead_letters(settings: Settings, stage: str, timeout: float = 30.0) -> list[DeadLetter]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    serde = Serde.from_settings(settings)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex}"})
    consumer.assign(
        [TopicPartition(settings.topics.dead_letter, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    )
    found: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = consumer.poll(0.3)
            if m is None or m.error() is not None:
                continue
            letter = serde.decode(m.value() or b"", settings.topics.dead_letter)
            if isinstance(letter, DeadLetter) and letter.stage == stage:
                found.append(letter)
    finally:
        consumer.close()
    return found


@pytest.mark.integration
@pytest.mark.slow
def test_receiver_down_processors_keep_alerting_and_notifier_dead_letters(
    broker: EmbeddedBroker, settings: Settings, tmp_path: Path
) -> None:
    from producers.client import EventProducer

    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    notify = settings.notify.model_copy(update={"webhook_url": down, "attempts": 3, "backoff": 0.05, "timeout": 1.0})
    s = settings.model_copy(update={"notify": notify})
    stop = threading.Event()
    result: dict[str, Any] = {}
    letters_counted = notify_dead_letters_counted()
    notifier = threading.Thread(target=lambda: result.update(stats=run_notify(s, stop=stop)), daemon=True)
    with Stack(s, tmp_path / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        notifier.start()
        producer = EventProducer(stack.settings, spool=False)
        now = datetime.now(UTC).replace(microsecond=0)
        for i, number in enumerate(("N5550001", "N5550002")):
            traveller = samples.traveller(number, "TJK")
            lost = samples.status_change(
                kind=StatusChangeKind.DOCUMENT_STOLEN, traveller=traveller, event_time=now - timedelta(hours=3 - i)
            )
            producer.publish(lost)
            producer.publish(samples.crossing(traveller=traveller, event_time=now - timedelta(hours=2 - i)))
        producer.close()
        # The processors raise both alerts although nobody receives the notifications.
        raised = wait_for_alerts(s, AlertType.LOST_STOLEN_DOCUMENT, 2, timeout=90)
        letters = dead_letters(s, "notify", timeout=30)
        stop.set()
        notifier.join(30)
    assert len(raised) == 2
    assert sorted((letter.source_partition, letter.source_offset) for letter in letters) == offsets_of(s, raised)
    assert all(down in letter.reason and "after 3 attempts" in letter.reason for letter in letters)
    assert result["stats"].dead_lettered == 2 and result["stats"].attempts == 6
    assert notify_dead_letters_counted() - letters_counted == 2  # what Prometheus scrapes from the notifier


def notify_dead_letters_counted() -> float:
    """shekara_dead_letters_total of stage notify in this process's registry, over every reason."""
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "shekara_dead_letters"
        for sample in family.samples
        if sample.name == "shekara_dead_letters_total" and sample.labels.get("stage") == "notify"
    )


def wait_for_alerts(settings: Settings, type_: AlertType, n: int, timeout: float) -> list[str]:
    """Ids of RAISED alerts of `type_` on the alerts topic, once there are `n`."""
    from harness.ops_cli import tail_alerts

    deadline = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < deadline:
        seen: list[Any] = []
        tail_alerts(settings, on_alert=seen.append, on_unreadable=lambda *_: None)
        found = [a.alert_id for a in seen if a.type is type_ and a.action is AlertAction.RAISED]
        if len(found) >= n:
            return found
        time.sleep(1)
    raise AssertionError(f"{len(found)} {type_.value} alerts after {timeout} s")


def offsets_of(settings: Settings, raised: list[str]) -> list[tuple[int, int]]:
    """(partition, offset) of the given alerts on the alerts topic, sorted (the dead letters point back at them)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    serde = Serde.from_settings(settings)
    ids = set(raised)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(settings.topics.alerts, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    out: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 15
        while len(out) < len(ids) and time.monotonic() < deadline:
            m = consumer.poll(0.3)
            if m is None or m.error() is not None:
                continue
            alert = serde.decode(m.value() or b"", settings.topics.alerts)
            if getattr(alert, "alert_id", None) in ids and getattr(alert, "action", None) is AlertAction.RAISED:
                out.append((m.partition() or 0, m.offset() or 0))
    finally:
        consumer.close()
    return sorted(out)
