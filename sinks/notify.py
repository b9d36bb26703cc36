"""`shekara notify`: CRITICAL and HIGH alerts to a webhook, in Alertmanager's webhook payload (version 4).

A sink of its own: a separate consumer group on the alerts topic, so a slow or absent receiver never holds up
the processors (they only write the topic). One POST per alert record: a RAISED alert is ``firing``, a
RESOLVED or RETRACTED one ``resolved`` (with ``endsAt``). A delivery is retried with back-off (5xx, 408, 429 and
network errors; another 4xx is the receiver refusing the payload and is not retried); after the last attempt
the alert record goes to the dead-letter topic, stage ``notify``, with the reason. A record's offset is stored
for commit only once it is delivered, filtered out or dead-lettered: a crash re-sends, never skips (receivers
deduplicate on ``fingerprint``, stable per alert). Off unless ``settings.notify.webhook_url`` is set.

Payload (Alertmanager ``webhook_config``): version, groupKey, truncatedAlerts, status, receiver, groupLabels,
commonLabels, commonAnnotations, externalURL, alerts[] with status, labels, annotations, startsAt, endsAt,
generatorURL, fingerprint. Labels: ``alertname`` (the alert type), ``severity`` (lowercase, as Alertmanager
rules name it), ``alert_id``, ``checkpoint``, ``nationality``, ``rule_id``. Each alert is its own group
(grouped by ``alertname`` and ``alert_id``). ``generatorURL`` is the traveller's history on the ops page.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import Message as KafkaMessage

from schemas.records import Alert, AlertAction, DeadLetter
from schemas.serde import DecodeError, Serde
from shekara import metrics
from shekara.logs import get_logger
from shekara.settings import NotifySettings, Settings

log = get_logger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
RETRIED_STATUS = frozenset({408, 429})  # and every 5xx


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def labels_of(alert: Alert) -> dict[str, str]:
    labels = {
        "alertname": alert.type.value,
        "severity": alert.severity.value.lower(),
        "alert_id": alert.alert_id,
        "nationality": alert.nationality,
        "rule_id": alert.rule_id,
    }
    if alert.checkpoint_id:
        labels["checkpoint"] = alert.checkpoint_id
    return labels


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying the alert by its labels (Alertmanager's fingerprint is a 64-bit label hash)."""
    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def payload(alert: Alert, config: NotifySettings) -> dict[str, Any]:
    """The webhook body for one alert record."""
    labels = labels_of(alert)
    status = "firing" if alert.action is AlertAction.RAISED else "resolved"
    annotations = {
        "summary": f"{alert.type.value} ({alert.severity.value}) {alert.nationality} at {alert.checkpoint_id or '-'}",
        "description": alert.reason,
        "traveller_key": alert.traveller_key,
        "due_time": rfc3339(alert.due_time),
        "emitted_time": rfc3339(alert.emitted_time),
        "action": alert.action.value,
        "evidence_event_ids": ", ".join(alert.evidence_event_ids),
    }
    if alert.days_overstayed is not None:
        annotations["days_overstayed"] = str(alert.days_overstayed)
    external = config.external_url if config.external_url.endswith("/") else config.external_url + "/"
    group = {"alertname": labels["alertname"], "alert_id": alert.alert_id}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": config.receiver,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(alert.due_time),
                "endsAt": ZERO_TIME if status == "firing" else rfc3339(alert.emitted_time),
                "generatorURL": f"{external}history?key={quote(alert.traveller_key)}",
                "fingerprint": fingerprint(labels),
            }
        ],
    }


@dataclass
class NotifyStats:
    delivered: int = 0
    filtered: int = 0  # not CRITICAL/HIGH (or not configured severities)
    dead_lettered: int = 0
    unreadable: int = 0  # records the ops page dead-letters (it owns unreadable alert records)
    attempts: int = 0


class Delivery:
    """POSTs with retries; `deliver` returns None when delivered, else the reason for giving up."""

    def __init__(self, config: NotifySettings, stop: threading.Event, sleep: Callable[[float], Any] | None = None):
        assert config.webhook_url
        self.url = config.webhook_url
        self.config = config
        self.stop = stop
        self.sleep = sleep or stop.wait  # a stop request cuts a back-off short
        self.client = httpx.Client(timeout=config.timeout)

    def deliver(self, body: dict[str, Any], stats: NotifyStats) -> str | None:
        wait, reason = self.config.backoff, ""
        for attempt in range(1, self.config.attempts + 1):
            stats.attempts += 1
            try:
                response = self.client.post(self.url, json=body)
                if response.is_success:
                    return None
                reason = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in RETRIED_STATUS:
                    return f"webhook {self.url} refused it: {reason} (not retried)"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            log.info("webhook delivery failed", attempt=attempt, reason=reason)
            if attempt < self.config.attempts:
                self.sleep(wait)
                if self.stop.is_set():
                    return f"stopped while retrying ({reason})"
                wait = min(wait * 2, self.config.backoff_max)
        return f"webhook {self.url}: {reason} after {self.config.attempts} attempts"

    def close(self) -> None:
        self.client.close()


def run_notify(settings: Settings, *, stop: threading.Event | None = None, once: bool = False) -> NotifyStats:
    """Consume the alerts topic and notify until `stop` (or, with `once`, until every partition is drained)."""
    config = settings.notify
    if not config.webhook_url:
        raise ValueError("notifications are off: set SHEKARA_NOTIFY__WEBHOOK_URL to the receiver's URL")
    stop = stop or threading.Event()
    stats = NotifyStats()
    serde = Serde.from_settings(settings)
    wanted = {s.upper() for s in config.severities}
    topic = settings.topics.alerts
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": config.group_id,
            "client.id": "shekara-notify",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,  # stored by hand, once a record is dealt with
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "session.timeout.ms": int(settings.faust.session_timeout * 1000),
            "heartbeat.interval.ms": int(settings.faust.heartbeat_interval * 1000),
            # A delivery may retry for long: the poll interval must cover every attempt and back-off of one record.
            "max.poll.interval.ms": int(1000 * max(60.0, config.attempts * (config.timeout + config.backoff_max))),
        }
    )
    producer = Producer({**settings.kafka_config(), "client.id": "shekara-notify-dead-letter", "acks": "all"})
    delivery = Delivery(config, stop)
    assigned: set[int] = set()
    at_end: set[int] = set()

    def on_assign(_: Consumer, partitions: list[Any]) -> None:
        assigned.update(p.partition for p in partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is None:
                if once and assigned and assigned <= at_end:
                    break
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                else:
                    log.warning("notify consumer error", error=str(err))
                continue
            at_end.discard(msg.partition() or 0)
            metrics.count_in(topic)
            if _handle(msg, serde, wanted, delivery, producer, settings, stats) and not stop.is_set():
                consumer.store_offsets(message=msg)
    finally:
        delivery.close()
        producer.flush(10)
        consumer.close()  # commits the stored offsets
    return stats


def _handle(
    msg: KafkaMessage,
    serde: Serde,
    wanted: set[str],
    delivery: Delivery,
    producer: Producer,
    settings: Settings,
    stats: NotifyStats,
) -> bool:
    """Deal with one alert record; True when its offset may be committed."""
    try:
        alert = serde.decode(msg.value() or b"", settings.topics.alerts)
    except DecodeError as exc:
        stats.unreadable += 1
        log.info("unreadable alert record left to the ops page's dead letters", offset=msg.offset(), reason=exc.reason)
        return True
    if not isinstance(alert, Alert) or alert.severity.value not in wanted:
        stats.filtered += 1
        return True
    reason = delivery.deliver(payload(alert, settings.notify), stats)
    if reason is None:
        stats.delivered += 1
        metrics.events_out("webhook")
        return True
    if delivery.stop.is_set():
        return False  # stopping mid-retry: not delivered, not given up; the next run tries again
    limit = settings.limits.dead_letter_payload_bytes
    value = msg.value()
    dead = DeadLetter(
        source_topic=settings.topics.alerts,
        source_partition=msg.partition(),
        source_offset=msg.offset(),
        key=(msg.key() or b"")[:limit] or None,
        value=value[:limit] if value else None,
        stage="notify",
        reason=reason,
        field=None,
        rejected_time=datetime.now(UTC),
    )
    errors: list[str] = []
    producer.produce(
        settings.topics.dead_letter,
        key=msg.key(),
        value=serde.encode(dead, settings.topics.dead_letter),
        on_delivery=lambda err, _m: errors.append(str(err)) if err is not None else None,
    )
    if producer.flush(settings.reach_timeout_seconds) or errors:
        # Neither delivered nor dead-lettered: keep the offset, so the record is tried again after a restart.
        raise RuntimeError(f"cannot send a dead letter to {settings.topics.dead_letter}: {errors or 'timed out'}")
    stats.dead_lettered += 1
    metrics.dead_letter("notify", dead.reason)
    log.warning("alert notification dead-lettered", alert_id=alert.alert_id, reason=reason)
    return True
