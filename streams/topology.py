"""The processor topology, named as in Kafka Streams: sources -> processors (with state stores) -> sinks.

```
crossings ─┐
registrations ─┼─> traveller-matcher [store: traveller-state] ──> alerts, stays, dead-letter
status-changes ─┘        │ (registrations re-keyed by address)
                         └─> address-registrations ─> address-checker [store: address-state] ──> alerts, dead-letter
```

The three sources are co-partitioned by the public partition key, so partition *p* of each lands on the same
worker and the matcher sees a traveller's whole history. Each processor takes batches of raw messages (`streams.raw`)
straight from its channel (`streams.drain`). The matcher hands a batch, with the stored states of its keys and
the partitions' watermarks, to `streams.matching` (decode, validate, `streams.core.step` once per traveller),
which runs in a child process (`streams.offload`) so that a worker uses two cores; the shell sends what comes
back. It works a batch in two lanes of disjoint partitions, so the child computes one lane's chunk while the
shell sends out the other's. The address checker hands its batches to the same child. The commit
pipeline (`streams.pipeline`) then waits for the broker to acknowledge the outputs, writes each changed key
once to its table (changelog-backed: a restarted or reassigned worker recovers it) and only then acknowledges
the batch's offsets, while the processor goes on with the next batches (group commits: those finished during a
commit are made durable together by the next).

Deadlines run on event time: each partition's watermark (`streams.watermark`) decides what is due, a
time-ordered index (`streams.deadlines`) says who, and a one-second wall-clock timer fires deadlines of quiet
partitions. The index is rebuilt from the table whenever partitions are assigned or recovered.

Failure policy: no message the broker accepts stops a partition. A bad message becomes a dead letter (stage
decode/validate), a key or value over its limit (settings.limits) before anything decodes it; an exception
inside the core for one key, or an alert, stay or state the inputs make too large to send, dead-letters that
key's events of the batch (stage process) and keeps its previous state. Dead letters are cut to size
(`streams.outputs.bounded`), so they can always be sent; the batch is then committed past them, and a restarted
worker never meets them again. Anything else (outputs refused, a table write failing, the matching process
gone) is an infrastructure failure and fatal: the process exits at once *without* acknowledging the batch, and
the restarted worker replays it from the last commit (same ids; consumers keep the latest per id).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, EventT

from shekara import metrics
from shekara.logs import get_logger
from shekara.reference import CheckpointInfo, load_checkpoints
from shekara.rules import RuleBook, load_rules
from shekara.settings import Settings
from streams.align import Aligner, in_record_order
from streams.deadlines import Deadlines
from streams.drain import batches
from streams.handoff import Handoffs
from streams.matching import RawMessage, Stepped, StepRequest
from streams.offload import LocalMatching, MatchingProcess, MatchingRunner
from streams.outputs import Outputs, dead_letter, lettered_since
from streams.pipeline import CommitPipeline, Submission
from streams.positions import Positions
from streams.raw import raw_topic
from streams.stored import unpack
from streams.stores import PartitionContext, StateStore
from streams.watermark import Watermarks

log = get_logger(__name__)

TRAVELLER_STORE = "traveller-state"
ADDRESS_STORE = "address-state"
TICK_SECONDS = 1.0
MAX_HELD = 100_000  # events held back for alignment (streams.align), at most
LANES = 2  # chunks of disjoint partitions the matcher has in the matching process at once (_work_in_chunks)
# A batch this small goes in one lane: there is nothing to send out worth overlapping, and live (1,000 events/s,
# batches of a few events since they no longer wait for commits) the second round trip to the matching process
# doubled the matcher's per-batch cost.
ONE_LANE_BELOW = 64
# While events are held and no batch arrives, look again this often whether their hold has expired (streams.align:
# a caught-up co-partition is waited for a quarter second), rather than at the next one-second tick; each look
# that releases nothing waits twice as long, up to the tick. Only up to RECHECK_HELD held events: live, a hold is a
# handful; a larger one is a backlog waited for, and each look walks every held event.
RECHECK_S = 0.05
RECHECK_HELD = 1_000
# While more than RECHECK_HELD events are held (a backlog waits for a co-partition), the matcher's batches may fill
# for up to this long (streams.drain linger): each batch then mostly joins the hold, and taken one small batch at a
# time, as a free matcher otherwise does, their per-batch cost starved the fetching that ends the hold (the
# 100,000-event benchmark ran at a third of its rate). Live, holds are small and batches go at once.
BACKLOG_LINGER_S = 1.0


def fatal_exit(exc: BaseException) -> None:
    """Stop the process at once: nothing of the current batch is acknowledged, so a restart replays it."""
    log.critical("fatal error in a processor: exiting without acknowledging the batch", error=repr(exc))
    traceback.print_exception(exc)
    os._exit(70)


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


def _raw(events: Sequence[EventT]) -> list[RawMessage]:
    return [(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in (e.message for e in events)]


def _source_of(ev: EventT) -> tuple[str, int]:
    return (ev.message.topic, ev.message.partition)


def _timestamp_of(ev: EventT) -> float:
    return float(ev.message.timestamp)


def _admit(positions: Positions, stats: ProcessorStats, events: Sequence[EventT]) -> Sequence[EventT]:
    """The events to process: each source offset once (`streams.positions`); skipped offsets logged loudly."""
    admitted = positions.admit([(m.topic, m.partition, m.offset) for m in (e.message for e in events)])
    for hole in admitted.holes:
        stats.offsets_skipped += hole.skipped
        log.error(
            "source offsets never delivered to the processor",
            topic=hole.topic,
            partition=hole.partition,
            expected=hole.expected,
            got=hole.got,
        )
    if len(admitted.keep) == len(events):
        return events
    stats.duplicates_dropped += admitted.duplicates
    return [events[i] for i in admitted.keep]


def _dead(
    outputs: Outputs, stats: ProcessorStats, ev: EventT, stage: str, reason: str, fld: str | None, now: datetime
) -> None:
    """Send one source event to the dead-letter topic, with where it came from and why."""
    msg = ev.message
    outputs.dead(
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
    stats.dead_letters += 1


async def _read_back_letters(settings: Settings, outputs: Outputs, starts: dict[tuple[str, int], int]) -> None:
    """Have `outputs` skip the dead letters already sent for offsets past the commit (a killed predecessor's).

    A failed read-back is not fatal: the worker goes on and may send such a letter twice (the sink and the
    alerts deduplicate by id), rather than stop a partition.
    """
    try:
        lettered = await asyncio.to_thread(lettered_since, settings, starts)
    except Exception as exc:
        log.warning("cannot read back dead letters sent since the commit", error=str(exc))
        lettered = set()
    outputs.lettered = lettered
    if lettered:
        log.info("dead letters already sent since the commit: not sent again", count=len(lettered))


async def _submit_commit(
    pipeline: CommitPipeline,
    store: StateStore,
    staged: list[tuple[int, bytes, bytes]],
    events: Sequence[EventT],
    stages: StageTimes | None = None,
) -> None:
    """Hand the batch's staged state and events to the commit pipeline (outputs -> state -> offsets, in a group)."""
    on_durable = None
    if stages is not None:
        n = len(events)

        def on_durable(queued: float, started: float, finished: float) -> None:
            stages.commit_wait += (started - queued) * 1000 * n
            stages.commit += (finished - started) * 1000 * n

    await pipeline.submit(Submission([(store, staged)], events, on_durable))


class TravellerMatcher:
    """Processor: a traveller's crossings, registrations and status changes -> alerts and stays.

    The shell around `streams.matching.Matching` (run by `matching`, in this process or a child): it aligns the
    sources, keeps the state store, watermarks and deadline index, sends the outputs and commits.
    """

    def __init__(
        self,
        *,
        app: faust.App,
        settings: Settings,
        table: Any,
        outputs: Outputs,
        matching: MatchingRunner,
        stats: ProcessorStats,
        pipeline: CommitPipeline,
        on_fatal: Callable[[BaseException], None] = fatal_exit,
    ) -> None:
        self.app = app
        self.settings = settings
        self.outputs = outputs
        self.matching = matching
        self.stats = stats
        self.on_fatal = on_fatal
        self.watermarks = Watermarks(timedelta(seconds=settings.allowed_lateness_seconds))
        metrics.add_watermark_source(self.watermarks.snapshot)
        self.deadlines = Deadlines()
        self.partitions = PartitionContext()
        self.store = StateStore(table, outputs, self.partitions)
        self.pipeline = pipeline
        self.source_topic = settings.topics.crossings
        t = settings.topics
        self.aligner = Aligner((t.crossings, t.registrations, t.status_changes))
        self.links_topic = t.identity_links  # identity handoffs (streams.handoff): merged on arrival, not aligned
        self.handoffs: Handoffs | None = None
        self.positions = Positions()
        self._held: list[EventT] = []  # arrived, not yet processed: ahead of their co-partitions (streams.align)
        # Record timestamp (ms) of the first held event of each topic-partition (None: not known). A topic-partition
        # is released as a prefix, so while no head is within its partition's bound nothing can go, and `_release`
        # need not walk every held event: with adaptive batches it is asked after every small batch, and walking
        # tens of thousands of events held for a backlog each time took the worker's main thread.
        self._heads: dict[tuple[str, int], float] | None = {}
        self.chunk = max(1, settings.faust.batch_size)
        self._lock = asyncio.Lock()
        self._ahead: asyncio.Future[None] | None = None  # admission of held events under way (_admit_ahead)
        self._recheck: asyncio.Future[None] | None = None  # a look at held events between batches (_release_later)
        self._last_batch = 0.0  # when the agent last handed over a batch (monotonic s)
        self._taken: dict[int, float] = {}  # id of a held event -> when the agent handed it over (time.time())

    # --- entry points (agent, timer, recovery) ---------------------------------------------------------------

    async def process(self, events: Sequence[EventT]) -> None:
        async with self._lock:
            try:
                await self._process(events)
            except Exception as exc:
                self.on_fatal(exc)
                raise

    async def tick(self) -> None:
        """Fire the deadlines of quiet partitions (their watermark follows the wall clock from the last event),
        and process held-back events whose co-partitions caught up or went quiet (all of them in a rebalance,
        which waits for every event handed out to be acknowledged)."""
        async with self._lock:
            try:
                wall = time.monotonic()
                if self.app.rebalancing:
                    ready = self._release(wall, everything=True)
                    if ready:
                        await self._work_in_chunks(ready)
                    return
                ready = self._release(wall)
                if ready:
                    await self._work_in_chunks(ready)
                await self._tick()
            except Exception as exc:
                self.on_fatal(exc)
                raise

    async def recovered(self) -> None:
        """After (re)assignment: rebuild the deadline index of the partitions this worker now owns."""
        async with self._lock:
            await self.pipeline.drain()
            active = self.active_partitions()
            entries = []
            for key, value in self.store.items():
                partition, due, _ = unpack(value)
                entries.append((partition, key.decode(), due))
            self.deadlines.rebuild(entries, keep=active)
            self.watermarks.forget(active)
            self.partitions.forget(active)
            self.aligner.reset()
            log.info("traveller state recovered", partitions=sorted(active), deadlines=self.deadlines.pending())

    def active_partitions(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.source_topic}

    # --- work ------------------------------------------------------------------------------------------------

    async def _process(self, events: Sequence[EventT]) -> None:
        wall = time.monotonic()
        events = _admit(self.positions, self.stats, events)
        if self.handoffs is not None and any(ev.message.topic == self.links_topic for ev in events):
            events = await self._merge_handoffs(events)
        if not events:
            return
        if self.stats.first_event_wall is None:
            self.stats.first_event_wall = time.time()
        # Acknowledged by the commit pipeline once processed and durable (streams.drain: no stream acks them).
        for ev in events:
            msg = ev.message
            self.partitions.remember(ev)
            self.aligner.observe(msg.topic, msg.partition, msg.timestamp * 1000.0, wall, msg.offset)
            self.stats.per_partition[msg.partition] = self.stats.per_partition.get(msg.partition, 0) + 1
        self.stats.events += len(events)
        metrics.events_in(ev.message.topic for ev in events)
        self._held.extend(events)
        if self._heads is not None:
            for ev in events:
                self._heads.setdefault((ev.message.topic, ev.message.partition), ev.message.timestamp * 1000.0)
        taken = time.time()
        self.stats.stages.events += len(events)
        self.stats.stages.arrive += sum(taken - ev.message.timestamp for ev in events) * 1000
        ready = self._release(wall)
        if len(ready) < len(events):
            released = {id(ev) for ev in ready}
            self._taken.update((id(ev), taken) for ev in events if id(ev) not in released)
        if ready:
            await self._work_in_chunks(ready)
        if len(ready) < len(events):
            self._admit_ahead(events, ready)
        self._last_batch = time.monotonic()
        if self._held and (self._recheck is None or self._recheck.done()):
            self._recheck = asyncio.ensure_future(self._release_later())

    async def _merge_handoffs(self, events: Sequence[EventT]) -> list[EventT]:
        """Merge the batch's identity handoffs into their new keys' states and commit them; the other events."""
        assert self.handoffs is not None
        links = [ev for ev in events if ev.message.topic == self.links_topic]
        for ev in links:
            self.partitions.remember(ev)  # the new keys' states are read and written in their partition's context
        now = datetime.now(UTC)
        merged = self.handoffs.receive(_raw(links), self.store.get, self.watermarks.get, now)
        for index, stage, reason, fld in merged.rejected:
            _dead(self.outputs, self.stats, links[index], stage, reason, fld, now)
        self.stats.handoffs_merged += len(merged.states)
        await self._finish(merged, links)
        return [ev for ev in events if ev.message.topic != self.links_topic]

    async def _release_later(self) -> None:
        """Work held events as soon as their hold expires, while no batch comes to release them (live, a quiet
        moment): the agent's next batch or the tick would otherwise be their only chance."""
        pause = RECHECK_S
        while self._held and len(self._held) <= RECHECK_HELD:
            await asyncio.sleep(pause)
            if time.monotonic() - self._last_batch < RECHECK_S:
                continue  # batches are coming: each releases what it may
            async with self._lock:
                if self.app.rebalancing:
                    return  # the tick releases everything then
                try:
                    ready = self._release(time.monotonic())
                    if ready:
                        await self._work_in_chunks(ready)
                except Exception as exc:
                    self.on_fatal(exc)
                    raise
            pause = RECHECK_S if ready else min(2 * pause, TICK_SECONDS)

    def _admit_ahead(self, events: Sequence[EventT], ready: Sequence[EventT]) -> None:
        """Have the events just held for alignment admitted meanwhile, so the matching process does not wait idle.

        Not awaited: the agent goes on taking events (the aligner must see them to release anything), and
        `work` calls queue behind it. One at a time; events arriving meanwhile are admitted when released.
        """
        if self._ahead is not None and not self._ahead.done():
            return
        released = {id(ev) for ev in ready}
        held = _raw([ev for ev in events if id(ev) not in released])
        self._ahead = asyncio.ensure_future(self.matching.admit_ahead(held))
        # A failure loses nothing (`work` admits them again) and a dead matching process fails the next `work`.
        self._ahead.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _release(self, wall: float, *, everything: bool = False) -> list[EventT]:
        """Held events that may be processed now, in record-timestamp order (`streams.align`); the rest stay held."""
        if everything:
            everyone, self._held, self._heads = self._held, [], {}
            return in_record_order(everyone, _source_of, _timestamp_of)
        bounds: dict[int, float] = {}
        if self._heads is not None and len(self._held) <= MAX_HELD:
            for (_, p), head in self._heads.items():
                if p not in bounds:
                    bounds[p] = self.aligner.release_bound(p, wall, self._highwaters(p))
                if head <= bounds[p]:
                    break
            else:
                return []  # no topic-partition's first held event may go: nothing may
        ready: list[EventT] = []
        rest: list[EventT] = []
        stopped: set[tuple[str, int]] = set()  # topic-partitions with an event held: their later ones wait too
        for ev in self._held:
            msg = ev.message
            bound = bounds.get(msg.partition)
            if bound is None:
                bound = bounds[msg.partition] = self.aligner.release_bound(
                    msg.partition, wall, self._highwaters(msg.partition)
                )
            tp = (msg.topic, msg.partition)
            if msg.timestamp * 1000.0 <= bound and tp not in stopped:
                ready.append(ev)
            else:
                stopped.add(tp)
                rest.append(ev)
        if len(rest) > MAX_HELD:
            # A source far ahead of the others: bound the memory, at the price of order (the core re-orders
            # within its horizon; beyond it, events are dead-lettered, never dropped).
            log.warning("holding too many events ahead of their co-partitions; releasing", held=len(rest))
            ready.extend(rest[: len(rest) - MAX_HELD])
            rest = rest[len(rest) - MAX_HELD :]
        self._held = rest
        heads: dict[tuple[str, int], float] = {}
        for ev in rest:
            heads.setdefault((ev.message.topic, ev.message.partition), ev.message.timestamp * 1000.0)
        self._heads = heads
        return in_record_order(ready, _source_of, _timestamp_of)

    async def _work_in_chunks(self, events: Sequence[EventT]) -> None:
        """`_work` in pieces of at most one batch, in `LANES` lanes of disjoint partitions worked side by side.

        Lanes: chunks of different partitions share no traveller, state, watermark or deadline, so one lane's chunk
        can be in the matching process while the worker sends out and commits what came back for the other's;
        worked one after the other, the matching process waited idle for the worker between chunks.

        Pieces: held events can pile up (a co-partition waited for) and be released at once; worked in one go they
        kept the event loop busy for 20 s, Faust's fetcher did not poll within `max_poll_interval`, and the worker
        fell out of its group for good (see docs/topology.md, idle consumer). Each lane yields between its pieces.
        """
        if self._taken:
            now, taken = time.time(), self._taken
            self.stats.stages.align += sum(now - taken.pop(id(ev), now) for ev in events) * 1000
        if len(events) < ONE_LANE_BELOW:
            await self._work_lane(events)
            return
        lanes: list[list[EventT]] = [[] for _ in range(LANES)]
        for ev in events:
            lanes[ev.message.partition % LANES].append(ev)
        await asyncio.gather(*(self._work_lane(lane) for lane in lanes if lane))

    async def _work_lane(self, events: Sequence[EventT]) -> None:
        for i in range(0, len(events), self.chunk):
            await self._work(events[i : i + self.chunk])
            self.aligner.worked(time.monotonic())
            await asyncio.sleep(0)

    async def _work(self, events: Sequence[EventT]) -> None:
        now = datetime.now(UTC)
        wall = time.monotonic()
        messages = _raw(events)
        # States are stored under the message key (the partition key, streams.matching): found undecoded.
        stored = self.store.get_many({(m[1], m[3]) for m in messages if m[3] is not None})
        watermarks = {p: self.watermarks.get(p) for p in {m[1] for m in messages}}
        worked = await self.matching.work(messages, stored, watermarks, now)
        t_work = time.monotonic()
        for index, akey in worked.address_keys:
            self.outputs.address_registration(akey, events[index].message.value or b"")
        self.stats.accepted += worked.accepted
        requests: StepRequest = {}
        for p, latest in worked.latest.items():
            self.watermarks.observe(p, latest, wall)
            watermark = self.watermarks.get(p)
            assert watermark is not None  # observed above
            stepped = set(worked.travellers[p])
            self._request_due(
                requests, p, watermark, [k for k in self.deadlines.pop_due(p, watermark) if k not in stepped]
            )
        if requests:
            # The deadlines popped now are stepped at the new watermark, after the chunk's own travellers.
            worked.add(await self.matching.step(requests, now))
        t_step = time.monotonic()
        self.stats.stages.work += (t_step - wall) * 1000 * len(events)
        if self.handoffs is not None:
            for key, partition, value in self.handoffs.emit(messages, worked):
                self.outputs.handoff(key, partition, value)
                self.stats.handoffs_sent += 1
        for index, stage, reason, fld in worked.rejected:
            _dead(self.outputs, self.stats, events[index], stage, reason, fld, now)
        await self._finish(worked, events)
        self.stats.batches += 1
        log.info(
            "batch",
            events=len(events),
            travellers=len(worked.states),
            work_ms=round((t_work - wall) * 1000, 1),
            deadlines_ms=round((t_step - t_work) * 1000, 1),
            commit_ms=round((time.monotonic() - t_step) * 1000, 1),
        )

    async def _tick(self) -> None:
        active = self.active_partitions()
        wall = time.monotonic()
        requests: StepRequest = {}
        for p in self.watermarks.partitions():
            if p not in active or not self.partitions.knows(p):
                continue
            watermark = self.watermarks.advance_idle(p, wall)
            if watermark is None:
                continue
            self._request_due(requests, p, watermark, self.deadlines.pop_due(p, watermark))
        if requests:
            await self._finish(await self.matching.step(requests, datetime.now(UTC)))

    def _request_due(self, requests: StepRequest, partition: int, watermark: datetime, keys: list[str]) -> None:
        """Add the travellers whose deadline `watermark` passed, with their stored states, to a step request."""
        if keys:
            requests[partition] = (watermark, [(key, self.store.get(partition, key.encode())) for key in keys])
            self.stats.deadline_fired += len(keys)

    def _highwaters(self, partition: int) -> dict[tuple[str, int], int | None]:
        """What the consumer last heard from the broker about the end of each source topic-partition."""
        consumer = self.app.consumer
        return {(t, partition): consumer.highwater(TP(t, partition)) for t in self.aligner.topics}

    async def _finish(self, stepped: Stepped, events: Sequence[EventT] = ()) -> None:
        """Send what the step produced, then stage the new states and commit (module doc)."""
        for partition, error, affected in stepped.failures:
            log.error("core failed for a traveller", partition=partition, error=error, events=affected)
        for key, value in stepped.alerts:
            self.outputs.alert_bytes(key, value)
        for key, value in stepped.stays:
            self.outputs.stay_bytes(key, value)
        self.stats.alerts += len(stepped.alerts)
        self.stats.stays += len(stepped.stays)
        await self._commit(stepped.states, events)

    async def _commit(
        self, writes: list[tuple[int, str, bytes, datetime | None]], events: Sequence[EventT] = ()
    ) -> None:
        """Stage the new states, then hand outputs -> state -> offsets to the commit pipeline (module doc)."""
        staged = self.store.stage((p, key.encode(), value) for p, key, value, _ in writes)
        for p, key, _, next_due in writes:
            self.deadlines.set(p, key, next_due)

        await _submit_commit(self.pipeline, self.store, staged, events, self.stats.stages)


class AddressChecker:
    """Processor: registrations keyed by address -> FICTITIOUS_ADDRESS alerts (too many foreigners at one address).

    The shell around `streams.matching.Matching.check_addresses` (run by `matching`, as for the matcher)."""

    def __init__(
        self,
        *,
        app: faust.App,
        outputs: Outputs,
        table: Any,
        matching: MatchingRunner,
        stats: ProcessorStats,
        pipeline: CommitPipeline,
        on_fatal: Callable[[BaseException], None] = fatal_exit,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.outputs = outputs
        self.matching = matching
        self.stats = stats
        self.on_fatal = on_fatal
        self.partitions = PartitionContext()
        self.store = StateStore(table, outputs, self.partitions)
        self.positions = Positions()

    async def process(self, events: Sequence[EventT]) -> None:
        try:
            await self._process(events)
        except Exception as exc:
            self.on_fatal(exc)
            raise

    async def _process(self, events: Sequence[EventT]) -> None:
        events = _admit(self.positions, self.stats, events)
        if not events:
            return
        now = datetime.now(UTC)
        for ev in events:
            self.partitions.remember(ev)
        messages = _raw(events)
        stored = self.store.get_many({(m[1], m[3]) for m in messages if m[3] is not None})
        checked = await self.matching.check_addresses(messages, stored, now)
        self.stats.address_events += len(events)
        metrics.events_in(ev.message.topic for ev in events)
        for partition, error, affected in checked.failures:
            log.error("address check failed", partition=partition, error=error, events=affected)
        for index, stage, reason in checked.rejected:
            _dead(self.outputs, self.stats, events[index], stage, reason, None, now)
        for key, value in checked.alerts:
            self.outputs.alert_bytes(key, value)
        self.stats.alerts += len(checked.alerts)
        staged = self.store.stage(checked.states)

        await _submit_commit(self.pipeline, self.store, staged, events)


@dataclass
class Topology:
    """The wired topology of one worker: what `streams.app.create_app` builds and the worker runs."""

    app: faust.App
    settings: Settings
    sources: Any  # faust TopicT over the three source topics
    address_source: Any
    traveller_state: Any  # faust Table
    address_state: Any
    matcher: TravellerMatcher
    address_checker: AddressChecker
    outputs: Outputs
    stats: ProcessorStats
    status_file: Path | None = None

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "app_id": self.app.conf.id,
            "partitions": sorted(self.matcher.active_partitions()),
            "watermarks": {str(p): w.isoformat() for p, w in self.matcher.watermarks.snapshot().items()},
            "deadlines_pending": self.matcher.deadlines.pending(),
            "held_for_alignment": len(self.matcher._held),
            "updated": time.time(),
            **asdict(self.stats),
        }

    def write_status(self) -> None:
        if self.status_file is None:
            return
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), default=str))
        tmp.replace(self.status_file)


def build_topology(
    app: faust.App,
    settings: Settings,
    *,
    rules: RuleBook | None = None,
    checkpoints: Mapping[str, CheckpointInfo] | None = None,
    on_fatal: Callable[[BaseException], None] = fatal_exit,
    status_file: Path | None = None,
) -> Topology:
    """Declare sources, state stores, processors, sinks and the deadline timer on `app`."""
    t, fs = settings.topics, settings.faust
    rules = rules or load_rules(settings.rules_file)
    checkpoints = checkpoints or load_checkpoints()
    outputs = Outputs(settings, client_id=f"{app.conf.id}-outputs")
    stats = ProcessorStats()
    # One pipeline for both processors: they share the output producer, and one flush covers both. Up to one full
    # batch's worth of events waits for the commit in flight before a processor waits (streams.pipeline): under a
    # backlog, as before group commits, a full batch is worked while the previous one commits.

    def flushed() -> None:
        stats.last_output_wall = time.time()

    pipeline = CommitPipeline(outputs.flush, on_fatal, max_waiting=max(1, fs.batch_size), on_flushed=flushed)
    runner = MatchingProcess if fs.matching_process else LocalMatching
    matching = runner(settings, rules, checkpoints)
    matching.start()

    # The identity handoffs ride with the sources: one agent, so partition p of each is assigned together.
    sources = raw_topic(app, t.crossings, t.registrations, t.status_changes, t.identity_links)
    address_source = raw_topic(app, t.address_registrations)
    traveller_state = app.Table(TRAVELLER_STORE, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    address_state = app.Table(ADDRESS_STORE, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    matcher = TravellerMatcher(
        app=app,
        settings=settings,
        table=traveller_state,
        outputs=outputs,
        matching=matching,
        stats=stats,
        pipeline=pipeline,
        on_fatal=on_fatal,
    )
    matcher.handoffs = Handoffs(settings, rules, checkpoints, outputs.serde)
    checker = AddressChecker(
        app=app,
        table=address_state,
        outputs=outputs,
        matching=matching,
        stats=stats,
        pipeline=pipeline,
        on_fatal=on_fatal,
    )
    topology = Topology(
        app=app,
        settings=settings,
        sources=sources,
        address_source=address_source,
        traveller_state=traveller_state,
        address_state=address_state,
        matcher=matcher,
        address_checker=checker,
        outputs=outputs,
        stats=stats,
        status_file=status_file,
    )

    # Each agent takes its events from its channel in batches (streams.drain), not through its stream.
    async def traveller_matcher(stream: Any) -> None:
        def linger() -> float:
            return BACKLOG_LINGER_S if len(matcher._held) > RECHECK_HELD else fs.batch_within

        async for events in batches(stream.channel, fs.batch_size, linger):
            await matcher.process(events)

    async def address_checker(stream: Any) -> None:
        async for events in batches(stream.channel, fs.batch_size, fs.batch_within):
            await checker.process(events)

    async def deadline_tick() -> None:
        await matcher.tick()
        topology.write_status()

    app.agent(sources, name="traveller-matcher")(traveller_matcher)
    app.agent(address_source, name="address-checker")(address_checker)
    app.timer(TICK_SECONDS, name="deadline-tick")(deadline_tick)
    traveller_state.on_recover(matcher.recovered)
    stream_topics = {t.crossings, t.registrations, t.status_changes, t.address_registrations, t.identity_links}

    async def rewind_uncommitted() -> None:
        """Put stream partitions the group never committed back to their beginning, after table recovery.

        While Faust recovers tables, the consumer may already fetch stream partitions; Faust drops those records
        and then seeks each partition to its committed offset, but a partition with none is left where the
        fetch ended (aiokafka seeks only committed offsets > 0): its records up to there would never reach an
        agent. Seen after a restart on an address partition the crashed worker had not committed yet.

        First, flow control is suspended until Faust resumes it (right after this, having resumed the stream
        partitions and sought them to their committed offsets). Without that, the fetcher delivers stream records
        while that seek is under way, and the resume then clears the agents' queues: records just delivered there
        were lost, though Faust counted them as read; one lost record at a partition's committed offset was then
        committed past (Faust lets acknowledged offsets start one past the commit). Suspended, the conductor holds
        the record it is delivering until after the clear.
        """
        app.flow_control.suspend()
        consumer: Any = app.consumer  # seek_to_committed / earliest_offsets are not on Faust's ConsumerT
        mine = [tp for tp in consumer.assignment() if tp.topic in stream_topics]
        committed = await consumer.seek_to_committed()
        fresh = [tp for tp in mine if not committed.get(tp)]
        earliest = await consumer.earliest_offsets(*fresh) if fresh else {}
        if fresh:
            for tp in fresh:
                await consumer.seek(tp, earliest.get(tp) or 0)
            log.info("stream partitions without a commit start from the beginning", partitions=len(fresh))
        # Where each partition starts: the processors expect each offset from there once (streams.positions), and
        # the matcher's aligner tells a co-partition with records still to come (waited for) from one that has
        # none (streams.align).
        starts = {tp: earliest.get(tp) if tp in fresh else committed.get(tp) for tp in mine}
        positions = {(tp.topic, tp.partition): max(0, s or 0) for tp, s in starts.items()}
        travellers = {tp: s for tp, s in positions.items() if tp[0] in matcher.aligner.topics}
        matcher.positions.start_at(travellers)
        matcher.aligner.start_at(travellers)
        checker.positions.start_at({tp: s for tp, s in positions.items() if tp[0] == t.address_registrations})
        await _read_back_letters(settings, outputs, positions)

    traveller_state.on_recover(rewind_uncommitted)

    @app.on_before_shutdown.connect  # type: ignore[misc,untyped-decorator,unused-ignore]
    async def _close_outputs(*_: Any, **__: Any) -> None:
        await pipeline.drain()
        topology.write_status()
        outputs.close()
        matching.close()

    return topology
