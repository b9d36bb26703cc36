"""`--to-kafka`: publish a run through the producer client, in publish-time order, optionally paced.

Valid events go through `producers.client.EventProducer` (validation, encoding, keying, spooling); malformed
payloads go through a plain confluent-kafka producer, as a broken source would send them, bypassing the
client's validation. `speed` = simulated seconds per wall-clock second (3600: an hour of traffic a second);
None sends as fast as the broker takes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Producer

from harness.simulator.config import SimulationConfig
from harness.simulator.generate import Simulation
from harness.simulator.output import SimSummary, summarise
from producers.client import EventProducer
from schemas.validation import ValidationError
from shekara.logs import get_logger
from shekara.settings import Settings

log = get_logger(__name__)
Progress = Callable[[float, int], None]  # (fraction of the simulated period published, messages sent)


def _topic(kind: str, settings: Settings) -> str:
    t = settings.topics
    return {"crossing": t.crossings, "registration": t.registrations, "status_change": t.status_changes}[kind]


def publish(
    config: SimulationConfig,
    settings: Settings,
    *,
    speed: float | None = None,
    progress: bool | Progress = False,
) -> SimSummary:
    """Send the run to the broker of `settings`; returns the run's summary once everything is acknowledged.

    `progress`: True shows a rich progress bar; a callable receives (fraction, messages) instead.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0 (simulated seconds per second), got {speed}")
    sim = Simulation(config)
    w = sim.engines[0].world
    now = datetime.now(UTC)
    if w.end > now:
        # The producer client refuses events from the future (clock-skew check): say so before sending anything.
        raise ValueError(
            f"the simulated period ends {w.end:%Y-%m-%d} UTC, after now ({now:%Y-%m-%d %H:%M}): the producer client "
            "would refuse its later events as being in the future; choose an earlier --start or fewer --days"
        )
    report = _progress_reporter(progress)
    span = (w.end - w.begin).total_seconds()
    raw = Producer(
        {
            **settings.kafka_config(),
            "client.id": "shekara-simulator-raw",
            "linger.ms": 20,
            "acks": "all",
        }
    )
    messages = rejected = pending = 0
    counters: dict[str, int] = {}
    started = time.perf_counter()
    first: datetime | None = None
    try:
        with EventProducer(settings, client_id="shekara-simulator") as producer:
            next_report = 0
            for ev in sim.events():
                if speed is not None:
                    first = first or ev.publish_time
                    wait = (ev.publish_time - first).total_seconds() / speed - (time.perf_counter() - started)
                    if wait > 0:
                        time.sleep(wait)
                if ev.record is not None:
                    try:
                        producer.publish(ev.record)
                    except ValidationError as exc:  # never expected: the simulator emits valid events only
                        rejected += 1
                        log.warning("simulated event refused by the producer client", error=str(exc))
                else:
                    assert ev.raw is not None
                    _produce_raw(raw, _topic(ev.kind, settings), ev.key, ev.raw)
                messages += 1
                if report is not None and messages >= next_report:
                    report(min(1.0, max(0.0, (ev.publish_time - w.begin).total_seconds() / span)), messages)
                    next_report = messages + 2000
            pending = producer.flush(timeout=120.0)
            if pending:
                log.warning("events still pending after flush (spooled or in flight)", pending=pending)
            counters = dict(producer.stats)
    finally:
        left = raw.flush(60.0)
        if left:
            log.warning("malformed payloads not acknowledged", pending=left)
    if report is not None:
        report(1.0, messages)
    summary = summarise(config, sim.counts, messages, w.begin, w.end)
    summary.elapsed_s = time.perf_counter() - started
    summary.rejected_by_client = rejected
    summary.producer = counters
    summary.unsent = pending
    return summary


def _produce_raw(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            producer.poll(0)
            return
        except BufferError:  # local queue full: let librdkafka deliver some first
            producer.poll(0.1)


def _progress_reporter(progress: bool | Progress) -> Progress | None:
    if callable(progress):
        return progress
    if not progress:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]publishing"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%  {task.fields[messages]:,} messages"),
        TimeElapsedColumn(),
        transient=False,
    )
    task = bar.add_task("publish", total=1.0, messages=0)
    bar.start()

    def report(fraction: float, messages: int) -> None:
        bar.update(task, completed=fraction, messages=messages)
        if fraction >= 1.0:
            bar.stop()

    return report
