"""The streaming engine: plans journeys day by day and emits their events in publish-time order.

Two heaps keep memory flat. Active journeys wait in an event-time heap (one entry each, keyed by their next
event); an event is built when event time reaches it and then waits in a publish-time heap until nothing
not yet built could be published before it (publish time >= event time, so that is when the event-time
heap's head has passed it). Only journeys under way and events held back by upload delays are in memory.
Expected alerts are computed when an anomalous journey is planned, and collected as the run goes.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from harness.simulator.anomalies import ANOMALIES, Injected, span_days
from harness.simulator.behaviours import (
    BUILDERS,
    CROSSINGS_PER_JOURNEY,
    MAX_TRIP_DAYS,
    citizen_trip,
    day_trader,
    resident_trip,
    share_of_trips_at_least,
)
from harness.simulator.config import SimulationConfig
from harness.simulator.faults import Faults
from harness.simulator.materialise import Materialiser, kind_of
from harness.simulator.plan import Planned, PlannedRegistration
from harness.simulator.truth import Expected, address_truth, traveller_truth
from harness.simulator.world import Journey, World
from schemas.records import Crossing, Registration, StatusChange
from shekara.collector import fewer_collections

TRADER_WEEKS_MAX = 4


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message as a source sends it."""

    publish_time: datetime  # when the source uploads it (late uploads: hours after event_time)
    kind: str  # "crossing" | "registration" | "status_change"
    record: Crossing | Registration | StatusChange | None
    raw: bytes | None  # malformed payload (record None), sent as-is, bypassing client validation
    key: bytes  # Kafka key: traveller key bytes (for malformed: whatever a broken source would send)


@dataclass(slots=True)
class Emission:
    """An event ready to go out; the record or Avro dict is built from it by whoever consumes it."""

    publish_time: datetime
    kind: str
    event: Planned | None
    raw: bytes | None
    key: bytes
    received: datetime  # received_time of the record: the first upload (a duplicate repeats it unchanged)
    duplicate: bool = False
    reason: str | None = None  # malformed payloads: why it must be rejected


@dataclass
class Counts:
    """What a run produced, for the summary."""

    events: Counter[str] = field(default_factory=Counter)  # by kind, valid events (duplicates excluded)
    duplicates: int = 0
    late_uploads: int = 0
    out_of_order: int = 0
    malformed: Counter[str] = field(default_factory=Counter)  # by sort
    journeys: Counter[str] = field(default_factory=Counter)  # by behaviour / anomaly
    crossings_by_day: list[int] = field(default_factory=list)  # crossings per local day of the period
    foreign_crossings_by_nationality: Counter[str] = field(default_factory=Counter)
    citizen_crossings: int = 0
    expected: Counter[str] = field(default_factory=Counter)  # alert type -> expected alerts


def _count(rng: random.Random, mean: float) -> int:
    """Stochastic rounding: integer with expectation `mean` and the least variance."""
    n = int(mean)
    return n + (1 if rng.random() < mean - n else 0)


class Engine:
    """One shard's generation (see `World`); `Simulation` merges the shards."""

    def __init__(self, config: SimulationConfig, shard: int = 0) -> None:
        self.config = config
        self.shard = shard
        self.world = World(config, shard)
        self.faults = Faults(config.faults, config.seed, config.start, self.world.rules, self.world.catalogue, shard)
        self.mat = Materialiser(self.world.catalogue)
        self.counts = Counts(crossings_by_day=[0] * config.days)
        self.truth: list[Expected] = []
        self._journeys: list[tuple[datetime, int, Journey]] = []
        self._outbox: list[tuple[datetime, int, Emission]] = []
        self._seq = 0
        self._extra = self._minimum_schedule()

    # --- planning -----------------------------------------------------------------------------------------
    def _minimum_schedule(self) -> dict[str, Counter[int]]:
        """Day indexes on which the guaranteed minimum of each anomaly type starts (where it can complete)."""
        rates = self.config.anomalies
        out: dict[str, Counter[int]] = {}
        for name, rate in rates.rates().items():
            out[name] = Counter()
            if rates.minimum <= 0 or rate <= 0:
                continue
            last = self.config.days - span_days(self.world, name, self.config.start)
            if last < 0:
                continue
            m = rates.minimum
            for i in range(m):
                if i % self.config.shards == self.shard:
                    out[name][(i * (last + 1)) // m] += 1
        return out

    def _add(self, journey: Journey | None, label: str) -> None:
        if journey is None or not journey.events:
            return
        self.counts.journeys[label] += 1
        self._seq += 1
        journey.events.reverse()  # consumed from the end (see Journey)
        heapq.heappush(self._journeys, (journey.events[-1].time, self._seq, journey))

    def _inject(self, name: str, injected: Injected) -> None:
        w = self.world
        for j in injected.journeys:
            person = j.events[0].person
            self._expect(traveller_truth(j.events, traveller_key=person.key, rules=w.rules, end=w.end, anomaly=name))
        if injected.address_check:
            regs = [e for j in injected.journeys for e in j.events if isinstance(e, PlannedRegistration)]
            self._expect(
                address_truth(regs, rules=w.rules, pseudonym_key=self.config.pseudonym_key, end=w.end, anomaly=name)
            )
        for j in injected.journeys:
            self._add(j, f"anomaly:{name}")

    def _expect(self, items: list[Expected]) -> None:
        for x in items:
            self.truth.append(x)
            self.counts.expected[x.type or x.kind] += 1

    def _warm_up(self) -> None:
        """Trips already under way when the period starts, for those who may exit without a recorded entry:
        citizens and residents abroad (they come back inside the period), and day traders mid-routine."""
        w = self.world
        rng = random.Random(f"{self.config.seed}:{self.shard}:warm-up")
        for k in range(1, MAX_TRIP_DAYS + 1):
            started = w.start - timedelta(days=k)
            vol = w.volume.on(started)
            share = share_of_trips_at_least(k)
            for _ in range(_count(rng, vol.citizens / CROSSINGS_PER_JOURNEY["citizen"] * share)):
                self._add(citizen_trip(w, rng, started, started), "citizen")
            residents = vol.foreign["resident"] / CROSSINGS_PER_JOURNEY["resident"] * share
            for _ in range(_count(rng, residents)):
                self._add(resident_trip(w, rng, started, started), "resident")
            if k < 7 * TRADER_WEEKS_MAX:
                traders = vol.foreign["day_trader"] / CROSSINGS_PER_JOURNEY["day_trader"]
                for _ in range(_count(rng, traders)):
                    self._add(day_trader(w, rng, started, started), "day_trader")

    def _plan_day(self, index: int) -> None:
        w = self.world
        day = w.start + timedelta(days=index)
        w.hosts.set_today(day)
        vol = w.volume.on(day)
        seed = f"{self.config.seed}:{self.shard}"
        rng = random.Random(f"{seed}:{index}:citizen")
        for _ in range(_count(rng, vol.citizens / CROSSINGS_PER_JOURNEY["citizen"])):
            self._add(citizen_trip(w, rng, day), "citizen")
        foreign_journeys = 0.0
        for cat, crossings in vol.foreign.items():
            rng = random.Random(f"{seed}:{index}:{cat}")
            mean = crossings / CROSSINGS_PER_JOURNEY[cat]
            foreign_journeys += mean
            build = BUILDERS[cat]
            for _ in range(_count(rng, mean)):
                self._add(build(w, rng, day), cat)
        rates = self.config.anomalies
        for name, rate in rates.rates().items():
            rng = random.Random(f"{seed}:{index}:anomaly:{name}")
            n = _count(rng, rate * foreign_journeys / 10_000) + self._extra[name][index]
            for _ in range(n):
                self._inject(name, ANOMALIES[name](w, rng, day))

    # --- emitting -----------------------------------------------------------------------------------------
    def _push(self, em: Emission) -> None:
        self._seq += 1
        heapq.heappush(self._outbox, (em.publish_time, self._seq, em))

    def _materialise(self, journey: Journey) -> None:
        ev = journey.events.pop()
        if journey.events:
            self._seq += 1
            heapq.heappush(self._journeys, (journey.events[-1].time, self._seq, journey))
        kind = kind_of(ev)
        faults = self.faults
        index = self.world.day_index(ev.time)
        publish, late, held = faults.publish_time(ev, kind, index)
        c = self.counts
        c.events[kind] += 1
        c.late_uploads += late
        c.out_of_order += held
        if kind == "crossing":
            c.crossings_by_day[index] += 1
            nat = ev.person.nationality
            if nat == "KAZ":
                c.citizen_crossings += 1
            else:
                c.foreign_crossings_by_nationality[nat] += 1
        key = ev.person.key_bytes
        self._push(Emission(publish, kind, ev, None, key, publish))
        again, broken = faults.extras()
        if again is not None:
            c.duplicates += 1
            self._push(Emission(publish + again, kind, ev, None, key, publish, duplicate=True))
        if broken:
            bad = faults.malformed(ev, publish, self.mat, self.world.ids)
            c.malformed[bad.sort] += 1
            when = publish + faults.jitter(1, 120)
            self._push(Emission(when, kind, None, bad.raw, bad.key, when, reason=f"{bad.sort}: {bad.reason}"))
            self._expect(
                [
                    Expected(
                        "malformed",
                        None,
                        None,
                        bad.traveller_key,
                        bad.event_id,
                        [],
                        None,
                        f"{bad.sort}: {bad.reason}",
                        f"malformed:{bad.sort}",
                        details={"topic_kind": kind, "publish_time": when.isoformat()},
                    )
                ]
            )

    def _drain(self, until: datetime | None) -> Iterator[Emission]:
        """Emit everything published before `until` (None: everything left)."""
        journeys, outbox = self._journeys, self._outbox
        while True:
            if journeys and (until is None or journeys[0][0] < until):
                head = journeys[0][0]
                while outbox and outbox[0][0] <= head:
                    yield heapq.heappop(outbox)[2]
                self._materialise(heapq.heappop(journeys)[2])
                continue
            while outbox and (until is None or outbox[0][0] < until):
                yield heapq.heappop(outbox)[2]
            return

    def run(self) -> Iterator[Emission]:
        """Every emission of the run in publish-time order (duplicates and malformed payloads included)."""
        with fewer_collections(200_000):
            self._warm_up()
            w = self.world
            for index in range(self.config.days):
                self._plan_day(index)
                yield from self._drain(w.day_start(w.start + timedelta(days=index + 1)))
            yield from self._drain(None)

    def take_truth(self) -> list[Expected]:
        """Expected items produced since the last call (for writing them out as the run goes)."""
        out, self.truth = self.truth, []
        return out

    @property
    def pending(self) -> int:
        """Journeys under way and events held back: what the engine keeps in memory."""
        return len(self._journeys) + len(self._outbox)


class Simulation:
    """One run: `events()` streams SimEvents (all shards merged by publish time); `expected()` gives the truth.

    Iterate `events()` to the end first, then `expected()` returns the items collected on the way; called
    before that, `expected()` runs an independent generation of the same config (same seed, same truth)
    and discards its events, so memory stays flat either way.
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.engines = [Engine(config, shard) for shard in range(config.shards)]
        self._truth: list[Expected] = []
        self._done = False

    def emissions(self) -> Iterator[Emission]:
        """Every shard's emissions merged in publish-time order (ties: lower shard first)."""
        streams = [engine.run() for engine in self.engines]
        for em in heapq.merge(*streams, key=_publish_time):
            for engine in self.engines:
                if engine.truth:
                    self._truth.extend(engine.take_truth())
            yield em
        for engine in self.engines:
            self._truth.extend(engine.take_truth())
        self._done = True

    def events(self) -> Iterator[SimEvent]:
        mat = self.engines[0].mat
        for em in self.emissions():
            if em.event is None:
                yield SimEvent(em.publish_time, em.kind, None, em.raw, em.key)
            else:
                yield SimEvent(em.publish_time, em.kind, mat.record(em.event, em.received), None, em.key)

    def expected(self) -> Iterator[Expected]:
        if self._done:
            yield from self._truth
            return
        for shard in range(self.config.shards):
            engine = Engine(self.config, shard)
            for _ in engine.run():
                yield from engine.take_truth()
            yield from engine.take_truth()

    @property
    def counts(self) -> list[Counts]:
        return [e.counts for e in self.engines]


def _publish_time(em: Emission) -> datetime:
    return em.publish_time


def simulate(config: SimulationConfig) -> Iterator[SimEvent]:
    """The run's messages in publish-time order: deterministic for a config, streaming, flat memory."""
    return Simulation(config).events()


def simulate_with_truth(config: SimulationConfig) -> tuple[Iterator[SimEvent], Iterator[Expected]]:
    """(events, expected alerts and malformed payloads) of one run; see `Simulation` for the order of use."""
    sim = Simulation(config)
    return sim.events(), sim.expected()


def describe(config: SimulationConfig) -> dict[str, Any]:
    """The config as plain values (for summary.json; the pseudonym key is never written)."""
    return {
        "days": config.days,
        "seed": config.seed,
        "scale": config.scale,
        "start": config.start.isoformat(),
        "end_exclusive": (config.start + timedelta(days=config.days)).isoformat(),
        "shards": config.shards,
        "anomalies": {**config.anomalies.rates(), "minimum": config.anomalies.minimum},
        "faults": {
            "duplicate": config.faults.duplicate,
            "out_of_order": config.faults.out_of_order,
            "late_upload": config.faults.late_upload,
            "malformed": config.faults.malformed,
        },
        "rules_path": str(config.rules_path) if config.rules_path else None,
        "checkpoints_path": str(config.checkpoints_path) if config.checkpoints_path else None,
    }
