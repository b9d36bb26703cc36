"""What the two processors share: admission of each source offset once, dead letters, outputs, the state store
and the hand-over to the commit pipeline; and the counters a worker reports.

A processor (`streams.matcher.TravellerMatcher`, `streams.address_checker.AddressChecker`) is a thin shell: it
hands raw messages and stored states to the matching process (`streams.matching`, run by `streams.offload`),
sends what comes back, stages the new states and submits the batch for commit (`streams.pipeline`). Anything
that escapes it is an infrastructure failure: `on_fatal` (by default `fatal_exit`) ends the process without
acknowledging the batch, and the restarted worker replays it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust
from faust.types import EventT

from shekara.logs import get_logger
from streams.matching import RawMessage
from streams.offload import MatchingRunner
from streams.outputs import Outputs, dead_letter
from streams.pipeline import CommitPipeline, Submission
from streams.positions import Positions
from streams.stores import PartitionContext, StateStore

log = get_logger(__name__)

EXIT_FATAL = 70  # EX_SOFTWARE: the supervisor restarts the worker, which replays the unacknowledged batch


def fatal_exit(exc: BaseException) -> None:
    """Stop the process at once: nothing of the current batch is acknowledged, so a restart replays it."""
    log.critical("fatal error in a processor: exiting without acknowledging the batch", error=repr(exc))
    traceback.print_exception(exc)
    os._exit(EXIT_FATAL)


@dataclass
class StageTimes:
    """Where the matcher's events spend their time, summed over its events in ms (divide by `events` for the mean).

    arrive: record timestamp (the producer's clock, same host) -> the agent hands over the batch: produce, broker,
    fetch, Faust's delivery and the batch buffer. align: held for a co-partition (streams.align). work: decode,
    validate and step in the matching process, pipe included, and the deadlines the batch's watermark passed.
    commit_wait: waiting for the commit in flight (the processor does not wait with it: streams.pipeline, group
    commits). commit: outputs acknowledged, state logged; the batch's alerts were handed to the producer just before
    it was queued.
    """

    events: int = 0
    arrive: float = 0.0
    align: float = 0.0
    work: float = 0.0
    commit_wait: float = 0.0
    commit: float = 0.0


@dataclass
class ProcessorStats:
    """Counters of one worker, written to its status file and read by evaluation, tests and the benchmark."""

    events: int = 0
    accepted: int = 0
    dead_letters: int = 0
    alerts: int = 0
    stays: int = 0
    address_events: int = 0
    batches: int = 0
    deadline_fired: int = 0
    duplicates_dropped: int = 0  # source records delivered again (streams.positions)
    offsets_skipped: int = 0  # source offsets never delivered (streams.positions): must stay 0
    handoffs_sent: int = 0  # renewed documents' states handed to their new key's partition (streams.handoff)
    handoffs_merged: int = 0  # handoffs merged here (a redelivery counts again; it merges once)
    per_partition: dict[int, int] = field(default_factory=dict)
    first_event_wall: float | None = None  # time.time() of the first source event
    last_output_wall: float | None = None  # time.time() when the last batch's outputs were acknowledged
    stages: StageTimes = field(default_factory=StageTimes)  # the matcher's events only


def raw(events: Sequence[EventT]) -> list[RawMessage]:
    """The events as the matching process takes them: (topic, partition, offset, key, value, timestamp)."""
    return [(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in (e.message for e in events)]


class Processor:
    """The shell both processors share; a subclass implements `_process(events)`."""

    def __init__(
        self,
        *,
        app: faust.App,
        table: Any,
        outputs: Outputs,
        matching: MatchingRunner,
        stats: ProcessorStats,
        pipeline: CommitPipeline,
        on_fatal: Callable[[BaseException], None] = fatal_exit,
    ) -> None:
        self.app = app
        self.outputs = outputs
        self.matching = matching
        self.stats = stats
        self.pipeline = pipeline
        self.on_fatal = on_fatal
        self.partitions = PartitionContext()  # the partition each key's state is read and written in
        self.store = StateStore(table, outputs, self.partitions)
        self.positions = Positions()

    async def process(self, events: Sequence[EventT]) -> None:
        """Work one batch the agent took (its entry point)."""
        await self.guarded(self._process(events))

    async def _process(self, events: Sequence[EventT]) -> None:
        raise NotImplementedError

    async def guarded(self, work: Awaitable[None]) -> None:
        """Await `work`; an exception out of it is an infrastructure failure: `on_fatal`, then raised."""
        try:
            await work
        except Exception as exc:
            self.on_fatal(exc)
            raise

    def admit(self, events: Sequence[EventT]) -> Sequence[EventT]:
        """The events to process: each source offset once (`streams.positions`); skipped offsets logged loudly."""
        admitted = self.positions.admit([(m.topic, m.partition, m.offset) for m in (e.message for e in events)])
        for hole in admitted.holes:
            self.stats.offsets_skipped += hole.skipped
            log.error(
                "source offsets never delivered to the processor",
                topic=hole.topic,
                partition=hole.partition,
                expected=hole.expected,
                got=hole.got,
            )
        if len(admitted.keep) == len(events):
            return events
        self.stats.duplicates_dropped += admitted.duplicates
        return [events[i] for i in admitted.keep]

    def dead(self, ev: EventT, stage: str, reason: str, fld: str | None, now: datetime) -> None:
        """Send one source event to the dead-letter topic, with where it came from and why."""
        msg = ev.message
        self.outputs.dead(
            dead_letter(
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                value=msg.value,
                stage=stage,
                reason=reason,
                field=fld,
                now=now,
            )
        )
        self.stats.dead_letters += 1

    def send(self, alerts: Iterable[tuple[bytes, bytes]], stays: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Hand the step's alerts and stays (encoded, keyed) to the output producer."""
        n_alerts = n_stays = 0
        for key, value in alerts:
            self.outputs.alert_bytes(key, value)
            n_alerts += 1
        for key, value in stays:
            self.outputs.stay_bytes(key, value)
            n_stays += 1
        self.stats.alerts += n_alerts
        self.stats.stays += n_stays

    async def submit(
        self, staged: list[tuple[int, bytes, bytes]], events: Sequence[EventT], stages: StageTimes | None = None
    ) -> None:
        """Hand the batch's staged state and events to the commit pipeline (outputs -> state -> offsets, grouped)."""
        on_durable = None
        if stages is not None:
            n = len(events)

            def on_durable(queued: float, started: float, finished: float) -> None:
                stages.commit_wait += (started - queued) * 1000 * n
                stages.commit += (finished - started) * 1000 * n

        await self.pipeline.submit(Submission([(self.store, staged)], events, on_durable))
