"""Processor: a traveller's crossings, registrations and status changes -> alerts and stays.

The shell around `streams.matching.Matching` (run by the matching process, `streams.offload`). Each batch the
agent takes goes: each source offset once (`streams.processor`) -> identity handoffs merged (`streams.handoff`)
-> held until its co-partitions are not behind (`streams.holding`, `streams.align`) -> worked in lanes of
disjoint partitions (`streams.lanes`) -> the partitions' watermarks advance (`streams.watermark`) and the
deadlines they pass are stepped too (`streams.deadlines`) -> outputs sent, states staged, commit submitted.
A one-second tick fires the deadlines of quiet partitions and releases what waited too long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from faust.types import TP, EventT

from shekara import metrics
from shekara.logs import get_logger
from shekara.settings import Settings
from streams.align import Aligner
from streams.deadlines import Deadlines
from streams.handoff import Handoffs
from streams.holding import HoldingBuffer
from streams.lanes import work_in_lanes
from streams.matching import Stepped, StepRequest
from streams.offload import MatchingRunner
from streams.outputs import Outputs
from streams.pipeline import CommitPipeline
from streams.processor import Processor, ProcessorStats, fatal_exit, raw
from streams.stored import unpack
from streams.watermark import Watermarks

log = get_logger(__name__)

TICK_SECONDS = 1.0
# While events are held and no batch arrives, look again this often whether their hold has expired (streams.align:
# a caught-up co-partition is waited for a quarter second), rather than at the next one-second tick; each look
# that releases nothing waits twice as long, up to the tick. Only up to RECHECK_HELD held events: live, a hold is a
# handful; a larger one is a backlog waited for, and each look walks every held event.
RECHECK_S = 0.05
RECHECK_HELD = 1_000


class TravellerMatcher(Processor):
    """Aligns the sources, keeps the state store, watermarks and deadline index, sends the outputs and commits."""

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
        super().__init__(
            app=app, table=table, outputs=outputs, matching=matching, stats=stats, pipeline=pipeline, on_fatal=on_fatal
        )
        self.settings = settings
        self.watermarks = Watermarks(timedelta(seconds=settings.allowed_lateness_seconds))
        metrics.add_watermark_source(self.watermarks.snapshot)
        self.deadlines = Deadlines()
        self.source_topic = settings.topics.crossings
        t = settings.topics
        self.aligner = Aligner((t.crossings, t.registrations, t.status_changes))
        self.links_topic = t.identity_links  # identity handoffs (streams.handoff): merged on arrival, not aligned
        self.handoffs: Handoffs | None = None
        self.holding = HoldingBuffer()  # arrived, not yet processed: ahead of their co-partitions
        self.chunk = max(1, settings.faust.batch_size)
        self._lock = asyncio.Lock()
        self._ahead: asyncio.Future[None] | None = None  # admission of held events under way (_admit_ahead)
        self._recheck: asyncio.Future[None] | None = None  # a look at held events between batches (_release_later)
        self._last_batch = 0.0  # when the agent last handed over a batch (monotonic s)

    # --- entry points (agent, timer, recovery) ---------------------------------------------------------------

    async def process(self, events: Sequence[EventT]) -> None:
        async with self._lock:
            await self.guarded(self._process(events))

    async def tick(self) -> None:
        """Fire the deadlines of quiet partitions (their watermark follows the wall clock from the last event),
        and process held-back events whose co-partitions caught up or went quiet (all of them in a rebalance,
        which waits for every event handed out to be acknowledged)."""
        async with self._lock:
            await self.guarded(self._tick())

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
        events = self.admit(events)
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
        taken = time.time()
        self.stats.stages.events += len(events)
        self.stats.stages.arrive += sum(taken - ev.message.timestamp for ev in events) * 1000
        ready = self.holding.admit(events, self._bound(wall), taken)
        if ready:
            await self._work_in_lanes(ready)
        if len(ready) < len(events):
            self._admit_ahead(events, ready)
        self._last_batch = time.monotonic()
        if self.holding and (self._recheck is None or self._recheck.done()):
            self._recheck = asyncio.ensure_future(self._release_later())

    async def _merge_handoffs(self, events: Sequence[EventT]) -> list[EventT]:
        """Merge the batch's identity handoffs into their new keys' states and commit them; the other events."""
        assert self.handoffs is not None
        links = [ev for ev in events if ev.message.topic == self.links_topic]
        for ev in links:
            self.partitions.remember(ev)  # the new keys' states are read and written in their partition's context
        now = datetime.now(UTC)
        merged, onward = self.handoffs.receive(raw(links), self.store.get, self.watermarks.get, now)
        for key, partition, value in onward:  # passed on along a chain of renewals, sent with the batch's outputs
            self.outputs.handoff(key, partition, value)
            self.stats.handoffs_sent += 1
        for index, stage, reason, fld in merged.rejected:
            self.dead(links[index], stage, reason, fld, now)
        self.stats.handoffs_merged += len(merged.states)
        await self._finish(merged, links)
        return [ev for ev in events if ev.message.topic != self.links_topic]

    def _bound(self, wall: float) -> Callable[[int], float]:
        """Partition -> the latest record timestamp that may go now (`streams.align`), for the holding buffer."""
        return lambda p: self.aligner.release_bound(p, wall, self._highwaters(p))

    async def _release_later(self) -> None:
        """Work held events as soon as their hold expires, while no batch comes to release them (live, a quiet
        moment): the agent's next batch or the tick would otherwise be their only chance."""
        pause = RECHECK_S
        while self.holding and len(self.holding) <= RECHECK_HELD:
            await asyncio.sleep(pause)
            if time.monotonic() - self._last_batch < RECHECK_S:
                continue  # batches are coming: each releases what it may
            async with self._lock:
                if self.app.rebalancing:
                    return  # the tick releases everything then
                try:
                    ready = self.holding.release(self._bound(time.monotonic()))
                    if ready:
                        await self._work_in_lanes(ready)
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
        held = raw([ev for ev in events if id(ev) not in released])
        self._ahead = asyncio.ensure_future(self.matching.admit_ahead(held))
        # A failure loses nothing (`work` admits them again) and a dead matching process fails the next `work`.
        self._ahead.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _work_in_lanes(self, events: Sequence[EventT]) -> None:
        """`_work` in pieces of at most one batch, in lanes of disjoint partitions (`streams.lanes`)."""
        self.stats.stages.align += self.holding.waited_ms(events, time.time())
        await work_in_lanes(events, self._work, chunk=self.chunk, after_chunk=self._worked)

    def _worked(self) -> None:
        self.aligner.worked(time.monotonic())

    async def _work(self, events: Sequence[EventT]) -> None:
        now = datetime.now(UTC)
        wall = time.monotonic()
        messages = raw(events)
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
            self.dead(events[index], stage, reason, fld, now)
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
        wall = time.monotonic()
        ready = self.holding.release(self._bound(wall), everything=self.app.rebalancing)
        if ready:
            await self._work_in_lanes(ready)
        if self.app.rebalancing:
            return
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
        """Send what the step produced, then stage the new states and submit the commit (outputs -> state ->
        offsets: `streams.pipeline`)."""
        for partition, error, affected in stepped.failures:
            log.error("core failed for a traveller", partition=partition, error=error, events=affected)
        self.send(stepped.alerts, stepped.stays)
        writes = stepped.states
        staged = self.store.stage((p, key.encode(), value) for p, key, value, _ in writes)
        for p, key, _, next_due in writes:
            self.deadlines.set(p, key, next_due)
        await self.submit(staged, events, self.stats.stages)
