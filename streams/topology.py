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

Where each job lives: the wiring (sources, state stores, agents, the timer, recovery) here; the processors in
`streams.matcher` and `streams.address_checker` over their shared shell `streams.processor`; alignment's holding
buffer in `streams.holding`; lanes in `streams.lanes`; watermarks and the deadline index in `streams.watermark`
and `streams.deadlines`; outputs in `streams.outputs`; commits in `streams.pipeline`.

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
import gc
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faust

from shekara.logs import get_logger
from shekara.reference import CheckpointInfo, load_checkpoints
from shekara.rules import RuleBook, load_rules
from shekara.settings import Settings
from streams.address_checker import AddressChecker
from streams.drain import batches
from streams.handoff import Handoffs
from streams.matcher import RECHECK_HELD, TICK_SECONDS, TravellerMatcher
from streams.offload import LocalMatching, MatchingProcess
from streams.outputs import Outputs, lettered_since
from streams.pipeline import CommitPipeline
from streams.processor import ProcessorStats, fatal_exit
from streams.raw import raw_topic

__all__ = ["Topology", "build_topology", "fatal_exit"]

log = get_logger(__name__)

TRAVELLER_STORE = "traveller-state"
ADDRESS_STORE = "address-state"
# While more than RECHECK_HELD events are held (a backlog waits for a co-partition), the matcher's batches may fill
# for up to this long (streams.drain linger): each batch then mostly joins the hold, and taken one small batch at a
# time, as a free matcher otherwise does, their per-batch cost starved the fetching that ends the hold (the
# 100,000-event benchmark ran at a third of its rate). Live, holds are small and batches go at once.
BACKLOG_LINGER_S = 1.0


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


_frozen = False


async def _freeze_start_up() -> None:
    """Once, when the first assignment is recovered: what start-up built (modules, Faust's app and its services,
    aiokafka, the rules and reference data) goes to the permanent generation, out of the cyclic collector's way.

    Otherwise a full collection walks all of it in the worker's main thread: 48-67 ms with the fetching stopped,
    about once in 15 s at 1,000 events/s, and the events fetched meanwhile queued behind it. Garbage is collected
    first, so only live objects are frozen; what is created later is collected as before.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


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
            "held_for_alignment": len(self.matcher.holding),
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
            return BACKLOG_LINGER_S if len(matcher.holding) > RECHECK_HELD else fs.batch_within

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

    def follow_commits(committed: Mapping[Any, int]) -> None:
        """Each seek to the committed offsets (Faust's last one comes after `rewind_uncommitted`): where the group's
        commit moved past what the processors expect, they expect the commit (`Positions.advance`)."""
        offsets = {(tp.topic, tp.partition): offset for tp, offset in committed.items()}
        matcher.positions.advance(offsets)
        checker.positions.advance(offsets)

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
        if follow_commits not in consumer.committed_seek_listeners:
            consumer.committed_seek_listeners.append(follow_commits)
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
    traveller_state.on_recover(_freeze_start_up)

    @app.on_before_shutdown.connect  # type: ignore[misc,untyped-decorator,unused-ignore]
    async def _close_outputs(*_: Any, **__: Any) -> None:
        await pipeline.drain()
        topology.write_status()
        outputs.close()
        matching.close()

    return topology
