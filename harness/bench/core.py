"""Micro-benchmark of the pure core: events/s of `step()` over a realistic mix, and state size.

The mix follows docs of the domain (../shared/domain.md): about half the crossings are citizens, the rest
day traders, tourists who register at a hotel, seasonal workers with permits and registrations, a few
transit travellers, and a small share of anomalies (overstays, unregistered stays) so deadlines fire.
Events reach `step()` one at a time in event-time order per partition, as the shell sees them, with a
watermark 6 h behind and deadline ticks from a time-ordered index - the shell's loop without Kafka.

Baselines measured in the same run:
- "bare": the per-event minimum any processor pays here - look the state up, convert the event to its
  compact form, store the state back (no decisions);
- "replay": the same decisions without the fast path (every step replays the traveller's whole history),
  i.e. what the incremental cursor saves.
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from harness import samples
from harness.bench import BenchResult
from schemas.records import (
    Checkpoint,
    Crossing,
    Direction,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    StatusChangeKind,
    Traveller,
)
from shekara.pseudonym import traveller_key
from shekara.reference import CheckpointInfo, load_checkpoints
from shekara.rules import RuleBook, load_rules
from streams.core.model import Event, compact
from streams.core.traveller import Retention, TravellerState, step

if TYPE_CHECKING:
    from shekara.settings import Settings

LATENESS = timedelta(hours=6)
_KEY = b"bench"
_START = datetime(2026, 5, 1, tzinfo=UTC)
_ROAD = ["KZ-UZ-ZHIBEK-ZHOLY", "KZ-KG-KORDAI", "KZ-RU-ZHAISAN", "KZ-RU-PETUKHOVO", "KZ-CN-KHORGOS"]
_AIR = ["KZ-AIR-ALA", "KZ-AIR-NQZ"]
_FOREIGN = ["UZB"] * 30 + ["RUS"] * 30 + ["KGZ"] * 12 + ["TJK"] * 6 + ["CHN"] * 6 + ["TUR"] * 3 + ["IND"] * 2


@dataclass(frozen=True, slots=True)
class _Person:
    traveller: Traveller
    key: str


class _Mix:
    """Deterministic traffic: per-traveller itineraries, merged into one event-time ordered stream."""

    def __init__(self, seed: int, checkpoints: dict[str, CheckpointInfo]) -> None:
        self.rng = random.Random(seed)
        self.checkpoints = checkpoints
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return f"bench-{self.n:09d}"

    def _person(self, nationality: str) -> _Person:
        number = f"N{self.rng.randrange(10**7, 10**8)}"
        t = samples.traveller(number, nationality, birth_date=date(1985, 1, 1))
        return _Person(t, traveller_key(nationality, number, _KEY))

    def _crossing(
        self, p: _Person, when: datetime, direction: Direction, cp: str, basis: EntryBasisKind, purpose: Purpose
    ) -> Crossing:
        info = self.checkpoints[cp]
        return samples.crossing(
            self._id(),
            event_time=when,
            received_time=when,
            checkpoint=Checkpoint(cp, info.kind, info.border_country),
            direction=direction,
            traveller=p.traveller,
            purpose=purpose,
            entry_basis=basis,
            source_system="bench",
            conveyance=None,
        )

    def _registration(self, p: _Person, when: datetime, host: HostKind) -> Registration:
        d = when.date()
        return samples.registration(
            self._id(),
            event_time=when,
            received_time=when,
            registration_id=self._id(),
            traveller=p.traveller,
            host_kind=host,
            host_id="H",
            address="Abai 1",
            valid_until=d + timedelta(days=90),
            source_system="bench",
        )

    def itinerary(self, days: int) -> list[tuple[str, Event]]:
        """One traveller's events over `days` days."""
        rng = self.rng
        roll = rng.random()
        start = _START + timedelta(seconds=rng.randrange(days * 86400))
        out: list[Event] = []
        if roll < 0.5:  # citizen: a trip abroad and back, sometimes repeated
            p = self._person("KAZ")
            t = start
            for _ in range(rng.choice([1, 1, 2, 3])):
                cp = rng.choice(_ROAD + _AIR)
                out.append(self._crossing(p, t, Direction.EXIT, cp, EntryBasisKind.CITIZEN, Purpose.PRIVATE))
                t += timedelta(days=rng.randint(1, 10), hours=rng.randint(1, 8))
                out.append(self._crossing(p, t, Direction.ENTRY, cp, EntryBasisKind.CITIZEN, Purpose.PRIVATE))
                t += timedelta(days=rng.randint(3, 20))
        else:
            p = self._person(rng.choice(_FOREIGN))
            kind = rng.random()
            t = start
            if kind < 0.35:  # day trader: in in the morning, out in the evening, a few times
                cp = rng.choice(_ROAD)
                for _ in range(rng.randint(2, 6)):
                    out.append(self._crossing(p, t, Direction.ENTRY, cp, EntryBasisKind.VISA_FREE, Purpose.BUSINESS))
                    out.append(
                        self._crossing(
                            p, t + timedelta(hours=9), Direction.EXIT, cp, EntryBasisKind.VISA_FREE, Purpose.BUSINESS
                        )
                    )
                    t += timedelta(days=rng.randint(2, 9))
            elif kind < 0.85:  # tourist / business visitor: hotel registration, leaves in time (mostly)
                cp = rng.choice(_AIR + _ROAD)
                out.append(self._crossing(p, t, Direction.ENTRY, cp, EntryBasisKind.VISA_FREE, Purpose.TOURISM))
                if rng.random() < 0.9:
                    out.append(self._registration(p, t + timedelta(hours=rng.randint(1, 30)), HostKind.HOTEL))
                stay = rng.randint(2, 25) if rng.random() < 0.97 else rng.randint(31, 40)
                out.append(
                    self._crossing(
                        p, t + timedelta(days=stay), Direction.EXIT, cp, EntryBasisKind.VISA_FREE, Purpose.TOURISM
                    )
                )
            elif kind < 0.97:  # seasonal worker: permit and employer registration
                cp = rng.choice(_ROAD)
                out.append(self._crossing(p, t, Direction.ENTRY, cp, EntryBasisKind.VISA_FREE, Purpose.WORK))
                out.append(self._registration(p, t + timedelta(hours=20), HostKind.EMPLOYER))
                out.append(
                    samples.status_change(
                        self._id(),
                        event_time=t + timedelta(days=5),
                        received_time=t + timedelta(days=5),
                        kind=StatusChangeKind.WORK_PERMIT_ISSUED,
                        traveller=p.traveller,
                        authority="labour",
                        source_system="bench",
                        valid_until=(t + timedelta(days=200)).date(),
                        reference=None,
                    )
                )
                out.append(
                    self._crossing(
                        p,
                        t + timedelta(days=rng.randint(40, 120)),
                        Direction.EXIT,
                        cp,
                        EntryBasisKind.VISA_FREE,
                        Purpose.WORK,
                    )
                )
            else:  # transit to Russia
                out.append(
                    self._crossing(
                        p, t, Direction.ENTRY, "KZ-UZ-ZHIBEK-ZHOLY", EntryBasisKind.VISA_FREE, Purpose.TRANSIT
                    )
                )
                out.append(
                    self._crossing(
                        p,
                        t + timedelta(hours=rng.randint(30, 100)),
                        Direction.EXIT,
                        "KZ-RU-ZHAISAN",
                        EntryBasisKind.VISA_FREE,
                        Purpose.TRANSIT,
                    )
                )
        key = traveller_key(p.traveller.document.issuing_country, p.traveller.document.number, _KEY)
        return [(key, e) for e in out]


def traffic(n_events: int, seed: int = 7, days: int = 60) -> list[tuple[str, Event]]:
    """About `n_events` events of the mix, in event-time order (a partition's view)."""
    mix = _Mix(seed, load_checkpoints())
    out: list[tuple[str, Event]] = []
    while len(out) < n_events:
        out.extend(mix.itinerary(days))
    out.sort(key=lambda ke: (ke[1].event_time, ke[1].event_id))
    return out[:n_events]


@dataclass
class _Loop:
    steps: int = 0
    ticks: int = 0
    alerts: int = 0
    stays: int = 0


def _drive(
    events: list[tuple[str, Event]],
    rules: RuleBook,
    checkpoints: dict[str, CheckpointInfo],
    *,
    serialise: bool,
    retention: Retention,
    snapshot_at: int | None = None,
) -> tuple[_Loop, dict[str, Any], dict[str, Any]]:
    """The shell's loop without Kafka: state per key, watermark, a time-ordered index of next-due deadlines
    (one entry per traveller; superseded entries are skipped). Returns the loop counts, the final states and
    a snapshot of the states after `snapshot_at` events (for sizes while stays are open)."""
    states: dict[str, Any] = {}
    snapshot: dict[str, Any] = {}
    due_of: dict[str, datetime] = {}
    due: list[tuple[datetime, str]] = []
    loop = _Loop()
    now = datetime(2030, 1, 1, tzinfo=UTC)
    high = events[0][1].event_time

    def run(key: str, batch: list[Event], wm: datetime) -> None:
        held = states.get(key)
        st = TravellerState.empty(key) if held is None else (TravellerState.from_bytes(held) if serialise else held)
        r = step(st, batch, watermark=wm, emitted_time=now, rules=rules, checkpoints=checkpoints, retention=retention)
        states[key] = r.state.to_bytes() if serialise else r.state
        loop.alerts += len(r.alerts)
        loop.stays += len(r.stays)
        if r.next_due is None:
            due_of.pop(key, None)
        elif due_of.get(key) != r.next_due:
            due_of[key] = r.next_due
            heapq.heappush(due, (r.next_due, key))

    for i, (key, ev) in enumerate(events):
        if ev.event_time > high:
            high = ev.event_time
        wm = high - LATENESS
        while due and due[0][0] <= wm:
            when, k = heapq.heappop(due)
            if due_of.get(k) != when:
                continue  # superseded by a later step of this traveller
            del due_of[k]
            run(k, [], wm)
            loop.ticks += 1
        run(key, [ev], wm)
        loop.steps += 1
        if snapshot_at is not None and i + 1 == snapshot_at:
            snapshot = {k: (v.to_bytes() if isinstance(v, TravellerState) else v) for k, v in states.items()}
    return loop, states, snapshot


def _bare(events: list[tuple[str, Event]], rules: RuleBook) -> None:
    states: dict[str, list[Any]] = {}
    for key, ev in events:
        held = states.get(key)
        if held is None:
            held = states[key] = []
        held.append(compact(ev, rules))


def _replay(events: list[tuple[str, Event]], rules: RuleBook, checkpoints: dict[str, CheckpointInfo]) -> None:
    """Every step replays the traveller's whole history from an empty state (no cursor, no fast path)."""
    histories: dict[str, list[Event]] = {}
    now = datetime(2030, 1, 1, tzinfo=UTC)
    high = events[0][1].event_time
    for key, ev in events:
        high = max(high, ev.event_time)
        h = histories.setdefault(key, [])
        h.append(ev)
        step(
            TravellerState.empty(key),
            h,
            watermark=high - LATENESS,
            emitted_time=now,
            rules=rules,
            checkpoints=checkpoints,
        )


def _frequent_traveller(n: int) -> list[tuple[str, Event]]:
    """One day trader in in the morning and out in the evening every third day (60 days in any 180, within
    the limit): a long history."""
    mix = _Mix(1, load_checkpoints())
    p = mix._person("UZB")
    out: list[tuple[str, Event]] = []
    t = _START + timedelta(hours=3)
    while len(out) < n:
        for direction, hours in ((Direction.ENTRY, 0), (Direction.EXIT, 9)):
            c = mix._crossing(
                p,
                t + timedelta(hours=hours),
                direction,
                "KZ-UZ-ZHIBEK-ZHOLY",
                EntryBasisKind.VISA_FREE,
                Purpose.BUSINESS,
            )
            out.append((p.key, c))
        t += timedelta(days=3)
    return out[:n]


def _long_history(
    events: list[tuple[str, Event]], rules: RuleBook, checkpoints: dict[str, CheckpointInfo]
) -> tuple[float, float]:
    """us/event for one traveller's long history: incremental (with state bytes) vs replaying it each time."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    key = events[0][0]
    data = TravellerState.empty(key).to_bytes()
    t0 = time.perf_counter()
    for _, ev in events:
        r = step(
            TravellerState.from_bytes(data),
            [ev],
            watermark=ev.event_time - LATENESS,
            emitted_time=now,
            rules=rules,
            checkpoints=checkpoints,
        )
        data = r.state.to_bytes()
    incremental = (time.perf_counter() - t0) / len(events) * 1e6
    history: list[Event] = []
    t0 = time.perf_counter()
    for _, ev in events:
        history.append(ev)
        step(
            TravellerState.empty(key),
            history,
            watermark=ev.event_time - LATENESS,
            emitted_time=now,
            rules=rules,
            checkpoints=checkpoints,
        )
    replay = (time.perf_counter() - t0) / len(events) * 1e6
    return incremental, replay


def _open_stay_bytes(states: dict[str, Any]) -> tuple[float, float, int, int]:
    """Mean serialised bytes of travellers with an open stay, of citizens/others, and their counts."""
    open_sizes: list[int] = []
    other: list[int] = []
    for st in states.values():
        data = st.to_bytes() if isinstance(st, TravellerState) else st
        s = st if isinstance(st, TravellerState) else TravellerState.from_bytes(st)
        (open_sizes if s.cursor.open is not None else other).append(len(data))
    return _mean(open_sizes), _mean(other), len(open_sizes), len(other)


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def run_core_benchmark(n_events: int = 50_000, seed: int = 7) -> dict[str, Any]:
    """events/s of `step()` over the mix, against baselines measured in the same run, and state sizes.

    - `step_with_state_bytes_events_per_s`: what the shell does per event - `from_bytes`, `step`, `to_bytes`;
    - `step_events_per_s`: states kept as objects (no serialisation; Python's GC then walks them all);
    - `bare_events_per_s`: the per-event floor (state lookup, compact form, store) - no decisions;
    - `replay_events_per_s`: the same decisions without the cursor, replaying each traveller's history;
    - `long_history_*`: one day trader's 300 crossings, incremental vs replayed on every event (where the
      cursor and the pruning matter: the replay grows with the history, the incremental step does not).
    Prints and returns the figures.
    """
    rules = load_rules()
    checkpoints = load_checkpoints()
    events = traffic(n_events, seed)
    retention = Retention()
    _drive(events[: min(len(events), 2000)], rules, checkpoints, serialise=True, retention=retention)  # warm caches

    t0 = time.perf_counter()
    _bare(events, rules)
    bare_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    loop_b, _, middle = _drive(
        events, rules, checkpoints, serialise=True, retention=retention, snapshot_at=len(events) // 2
    )
    ser_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    loop, states, _ = _drive(events, rules, checkpoints, serialise=False, retention=retention)
    core_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    _replay(events, rules, checkpoints)
    replay_s = time.perf_counter() - t0

    open_b, other_b, n_open, n_other = _open_stay_bytes(middle)
    long_inc, long_replay = _long_history(_frequent_traveller(300), rules, checkpoints)
    out = {
        "events": len(events),
        "travellers": len(states),
        "steps": loop.steps,
        "deadline_ticks": loop.ticks,
        "alerts_emitted": loop.alerts,
        "stays_emitted": loop.stays,
        "step_with_state_bytes_events_per_s": len(events) / ser_s,
        "step_with_state_bytes_us_per_event": ser_s / len(events) * 1e6,
        "step_events_per_s": len(events) / core_s,
        "bare_events_per_s": len(events) / bare_s,
        "replay_events_per_s": len(events) / replay_s,
        "long_history_us_per_event": long_inc,
        "long_history_replay_us_per_event": long_replay,
        "bytes_per_open_stay": open_b,
        "bytes_per_traveller_without_open_stay": other_b,
        "travellers_with_open_stay": n_open,
        "travellers_without_open_stay": n_other,
    }
    if (loop_b.alerts, loop_b.stays) != (loop.alerts, loop.stays):
        raise AssertionError("serialising the state changed the decisions")
    for k, v in out.items():
        print(f"{k:45s} {v:,.1f}" if isinstance(v, float) else f"{k:45s} {v:,}")
    return out


def run(settings: Settings, quick: bool) -> list[BenchResult]:
    """The core's figures for `shekara bench` (pure: `settings` is not needed)."""
    f = run_core_benchmark(10_000 if quick else 100_000)
    details = {k: f[k] for k in ("events", "travellers", "deadline_ticks", "alerts_emitted", "stays_emitted")}
    return [
        BenchResult(
            "processor",
            "core step() with state (de)serialisation, events/s",
            f["step_with_state_bytes_events_per_s"],
            "events/s",
            "bare loop: state lookup + compact form, no decisions",
            f["bare_events_per_s"],
            "per-event cost small beside the shell's ~140 us budget at 7,000 events/s",
            details,
        ),
        BenchResult(
            "processor",
            "core step() incremental vs full replay, events/s",
            f["step_with_state_bytes_events_per_s"],
            "events/s",
            "replay of each traveller's history per event (no cursor)",
            f["replay_events_per_s"],
            ">= 1x: the fast path must not cost more than replaying",
            details,
        ),
        BenchResult(
            "processor",
            "serialised state per traveller with an open stay",
            f["bytes_per_open_stay"],
            "bytes",
            "traveller without an open stay",
            f["bytes_per_traveller_without_open_stay"],
            None,
            details,
        ),
    ]


if __name__ == "__main__":
    run_core_benchmark()
