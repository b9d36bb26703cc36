"""Latency of alerts, produced crossing -> alert at a consumer, per alert policy, at a steady rate (issue 18).

One run: a fresh set of topics, a real worker (`python -m streams.worker`), then `rate` events/s of mixed
traffic for `seconds`: background travellers entering, registering and leaving (one event in three each), and
one event in ten a crossing by a traveller whose document was reported lost (LOST_STOLEN_DOCUMENT, policy
`immediate`). Before the clock starts, the watch list and a set of entries whose registration deadline the
partitions' watermarks pass 5 s into the run (UNREGISTERED_STAY, policy `deadline`).

- immediate: alert received - crossing produced (wall clock, this process).
- deadline: alert received - when the watermark passed the alert's due time. Live event times are the wall clock
  shifted back by a constant (so that a deadline day boundary falls inside the run); the watermark is the latest
  event time less `allowed_lateness_seconds`, so it passes `due` when events stamped `due + lateness` are
  produced: at wall time `due + lateness + shift`.

Baseline, same run, same traffic: `forward`, a bare confluent-kafka loop that decodes each crossing and forwards
the watched ones to the alerts topic (what any consumer -> producer hop costs here, the floor for `immediate`).
The consumer that times the alerts uses a 10 ms fetch wait (librdkafka's 500 ms default would wait that long on
the embedded broker, which answers an empty fetch only when its wait is over: streams.engine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from harness import samples
from schemas.records import (
    Alert,
    Checkpoint,
    Crossing,
    Direction,
    Purpose,
    StatusChangeKind,
    Traveller,
)
from schemas.serde import Serde
from shekara.codes import AlertType
from shekara.pseudonym import partition_key, traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from shekara.settings import REPO_ROOT, Settings
from streams.worker import read_status, spawn_worker, worker_env

VARIANTS = ("topology", "forward")
POLICIES = ("immediate", "deadline")
DEADLINE_TRAVELLERS = 40
DEADLINE_AT_S = 5.0  # seconds into the run at which the watermark passes the deadline entries' due time
FORWARD_PREFIX = b"fwd:"
CONSUMER_FETCH_WAIT_MS = 10


def available(c: Consumer, timeout: float) -> list[Any]:
    """The messages `c` has now: the first waited for up to `timeout` s, then the rest without waiting.

    Not `consume(num_messages=1000, timeout=...)`, which returns only once it has 1,000 messages or the timeout
    is over: a loop over it handed each message over up to its timeout late (the forwarding loop 0.1 s, the timing
    consumer 0.05 s), and measured that wait into every latency.
    """
    first = c.poll(timeout)
    return [] if first is None else [first, *c.consume(num_messages=1000, timeout=0)]


def summary(values: list[float]) -> dict[str, float | int | None]:
    """p50/p99/max (ms) of one run's latencies; None where nothing arrived."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    v = sorted(values)
    return {
        "n": len(v),
        "p50": round(statistics.median(v), 1),
        "p99": round(v[min(len(v) - 1, int(len(v) * 0.99))], 1),
        "max": round(v[-1], 1),
    }


class _Traffic:
    """The run's records: mixed background traffic, watched crossings, the prelude (watch list, deadline entries)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cps = load_checkpoints()
        self.cps = [Checkpoint(c.id, c.kind, c.border_country) for c in cps.values() if c.border_country == "UZB"]
        self.run_tag = uuid.uuid4().hex[:6]

    def person(self, prefix: str, i: int) -> Traveller:
        return samples.traveller(f"{prefix}{i:08d}", birth_date=date(1990, 1, 1))

    def key(self, who: Traveller) -> bytes:
        return partition_key("UZB", who.document.number).encode()

    def crossing(self, eid: str, who: Traveller, when: datetime, direction: Direction, cp: int) -> Crossing:
        return samples.crossing(
            eid,
            event_time=when,
            received_time=when,
            checkpoint=self.cps[cp % len(self.cps)],
            direction=direction,
            traveller=who,
            purpose=Purpose.TOURISM,
            source_system="bench",
            conveyance=None,
        )

    def event(self, i: int, now: datetime) -> tuple[str, Any, bytes, str | None]:
        """(topic, record, key, watched event id or None) of the run's `i`-th event, stamped `now` (shifted)."""
        t = self.settings.topics
        if i % 10 == 0:  # a traveller on the watch list: an immediate alert names this event
            who = self.person("LT", i // 10)
            eid = f"lat-{self.run_tag}-{i}"
            return t.crossings, self.crossing(eid, who, now, Direction.ENTRY, i), self.key(who), eid
        n = i - i // 10 - 1
        k, kind = divmod(n, 3)
        who = self.person("BG", k)
        if kind == 1:
            start = now.date()
            reg = samples.registration(
                f"bg-reg-{self.run_tag}-{k}",
                event_time=now,
                received_time=now,
                registration_id=f"REG-{self.run_tag}-{k}",
                traveller=who,
                host_id=f"H-{k % 500}",
                address=f"Abai ave {k}, apt {k % 97}",
                valid_from=start,
                valid_until=start + timedelta(days=20),
                source_system="bench",
            )
            return t.registrations, reg, self.key(who), None
        direction = Direction.ENTRY if kind == 0 else Direction.EXIT
        return t.crossings, self.crossing(f"bg-{self.run_tag}-{n}", who, now, direction, k), self.key(who), None

    def watch_list(self, watched: int, when: datetime) -> list[tuple[str, Any, bytes]]:
        out = []
        for j in range(watched):
            who = self.person("LT", j)
            lost = samples.status_change(
                f"lat-lost-{self.run_tag}-{j}",
                event_time=when,
                received_time=when,
                kind=StatusChangeKind.DOCUMENT_LOST,
                traveller=who,
                authority="police",
                source_system="bench",
                valid_from=None,
                valid_until=None,
                reference=None,
            )
            out.append((self.settings.topics.status_changes, lost, self.key(who)))
        return out

    def deadline_entries(self, when: datetime) -> list[tuple[str, Any, bytes]]:
        out = []
        for j in range(DEADLINE_TRAVELLERS):
            who = self.person("DL", j)
            ev = self.crossing(f"dl-{self.run_tag}-{j}", who, when, Direction.ENTRY, j)
            out.append((self.settings.topics.crossings, ev, self.key(who)))
        return out


def _stage_means(status: dict[str, Any] | None, before: dict[str, Any] | None = None) -> dict[str, float] | None:
    """The worker's own per-event means (ms) of where its matcher's events spent their time (`StageTimes`), over
    the events since the status `before` (the prelude's events waited for the worker to start)."""
    stages = dict((status or {}).get("stages") or {})
    for k, v in ((before or {}).get("stages") or {}).items():
        stages[k] = stages.get(k, 0) - v
    events = stages.pop("events", 0)
    return {k: round(v / events, 2) for k, v in stages.items()} if events else None


def _deadline_probe(settings: Settings, entry_time: datetime) -> datetime:
    """When the registration deadline of a UZB visa-free entry at `entry_time` falls due (the core, run here)."""
    from streams.core import TravellerState, step

    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()
    traffic = _Traffic(settings)
    who = traffic.person("DL", 0)
    ev = traffic.crossing("probe", who, entry_time, Direction.ENTRY, 0)
    key = traveller_key("UZB", who.document.number, settings.pseudonym_key_bytes)
    r = step(
        TravellerState.empty(key),
        [ev],
        watermark=entry_time,
        emitted_time=entry_time,
        rules=rules,
        checkpoints=checkpoints,
    )
    if r.next_due is None:
        raise RuntimeError("the rules give a visa-free entry no deadline: nothing to time for the deadline policy")
    return r.next_due


def run_forward(settings: Settings, result_file: Path) -> None:
    """Baseline process: consume the crossings, decode each, forward the watched ones to the alerts topic."""
    serde = Serde.from_settings(settings)
    t = settings.topics
    c = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"fwd-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": CONSUMER_FETCH_WAIT_MS,
        }
    )
    c.assign([TopicPartition(t.crossings, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    p = Producer({**settings.kafka_config(), "linger.ms": 5})
    result_file.write_text(json.dumps({"partitions": [0], "accepted": 10**9}))  # ready at once: no group to join
    while True:
        for m in available(c, 0.1):
            if m.error() or m.value() is None:
                continue
            ev = serde.decode(m.value() or b"", t.crossings)
            if isinstance(ev, Crossing) and ev.event_id.startswith("lat-"):
                p.produce(t.alerts, key=FORWARD_PREFIX + ev.event_id.encode(), value=b"")
        p.poll(0)


def _spawn_forward(settings: Settings, result_file: Path, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "harness.bench.latency", "--forward", "--result", str(result_file)]
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd, env=worker_env(settings), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _spawn(variant: str, s: Settings, work_dir: Path, tag: str, worker_root: Path | None) -> subprocess.Popen[bytes]:
    status = work_dir / f"latency-{tag}.json"
    log_path = work_dir / f"latency-{tag}.log"
    if variant == "forward":
        return _spawn_forward(s, status, log_path)
    app_id = f"shekara-bench-latency-{tag}"
    if worker_root is None:
        return spawn_worker(s, app_id=app_id, status_file=status, log_path=log_path)
    # Another checkout's worker (a before/after comparison): its own code first on the path.
    cmd = [sys.executable, "-m", "streams.worker", "--app-id", app_id, "--status-file", str(status)]
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd, env=worker_env(s), cwd=worker_root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_once(
    settings: Settings,
    work_dir: Path,
    *,
    rate: int,
    seconds: float,
    variant: str = "topology",
    say: Callable[[str], None] = lambda _: None,
    worker_root: Path | None = None,
) -> dict[str, Any]:
    """One run (module doc): latencies per policy (ms, summarised), the rate achieved and the alerts missing."""
    from harness.bench.processor import _fresh_settings

    tag = f"{variant}-{uuid.uuid4().hex[:6]}"
    s = _fresh_settings(settings, tag.replace("-", ""), work_dir)
    serde = Serde.from_settings(s)
    rules = load_rules(s.rules_file)
    lateness = timedelta(seconds=s.allowed_lateness_seconds)
    # Event times: the wall clock shifted back so that the deadline entries' due time is passed DEADLINE_AT_S into
    # the run. The entries themselves are four days before it (a registration deadline is about 3 working days).
    entry_time = (datetime.now(UTC) - timedelta(days=20)).replace(microsecond=0)
    due = _deadline_probe(s, entry_time)
    total = int(rate * seconds)
    watched = (total + 9) // 10
    traffic = _Traffic(s)
    proc = _spawn(variant, s, work_dir, tag, worker_root)
    status = work_dir / f"latency-{tag}.json"
    producer = Producer({**s.kafka_config(), "linger.ms": 0, "enable.idempotence": True})
    sent_at: dict[str, float] = {}
    stages: dict[str, float] | None = None
    received: dict[str, tuple[float, str]] = {}  # evidence event id -> (received wall, policy)
    deadline_seen: list[tuple[float, datetime]] = []  # (received wall, due time) of deadline alerts
    stop = threading.Event()
    immediate = {t.value: rules.policy(t).immediate for t in AlertType}

    def consume() -> None:
        # Assigned, not subscribed: no group join to wait for, every partition read from its start.
        c = Consumer(
            {
                **s.kafka_config(),
                "group.id": f"lat-{tag}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": CONSUMER_FETCH_WAIT_MS,
            }
        )
        c.assign([TopicPartition(s.topics.alerts, p, OFFSET_BEGINNING) for p in range(s.partitions)])
        while not stop.is_set():
            batch = available(c, 0.05)
            got = time.time()
            for m in batch:
                if m.error():
                    continue
                key = m.key() or b""
                if key.startswith(FORWARD_PREFIX):
                    received.setdefault(key[len(FORWARD_PREFIX) :].decode(), (got, "immediate"))
                    continue
                if m.value() is None:
                    continue
                a = serde.decode(m.value() or b"", s.topics.alerts)
                if not isinstance(a, Alert):
                    continue
                policy = "immediate" if immediate.get(str(a.type), False) else "deadline"
                if policy == "deadline":
                    if any(e.startswith("dl-") for e in a.evidence_event_ids):
                        deadline_seen.append((got, a.due_time))
                    continue
                for ev_id in a.evidence_event_ids:
                    received.setdefault(ev_id, (got, policy))
        c.close()

    produce_ms: list[float] = []

    def acked(err: Any, msg: Any) -> None:
        if err is None and msg.latency() is not None:
            produce_ms.append(msg.latency() * 1000)  # produce() -> broker acknowledgement (librdkafka's clock)

    def send(topic: str, record: Any, key: bytes, timed: bool = False) -> float:
        """Produce one record; the wall time of the produce call (the record's timestamp is taken in it too)."""
        value = serde.encode(record, topic)
        while True:
            try:
                at = time.time()
                producer.produce(topic, key=key, value=value, on_delivery=acked if timed else None)
                return at
            except BufferError:
                producer.poll(0.01)

    try:
        prelude = traffic.watch_list(watched, entry_time - timedelta(hours=1)) + traffic.deadline_entries(entry_time)
        for topic, record, key in prelude:
            send(topic, record, key)
        producer.flush(30)
        wait_until = time.monotonic() + 120
        while time.monotonic() < wait_until:
            st = read_status(status)
            if st and st.get("partitions") and st.get("accepted", 0) >= len(prelude):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"the latency {variant} process exited with code {proc.returncode}")
            time.sleep(0.1)
        else:
            raise TimeoutError(f"the latency {variant} process did not take the prelude in time")
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        time.sleep(1.5)  # the timing consumer's first fetch; the worker writes its status every second
        prelude_status = read_status(status)
        say(f"latency: {variant}, {total:,} events at {rate:,}/s")
        start = time.monotonic()
        start_wall = time.time()
        # The shift that makes the watermark pass `due` DEADLINE_AT_S into the run (module doc).
        shift = datetime.fromtimestamp(start_wall + DEADLINE_AT_S, UTC) - (due + lateness)
        for i in range(total):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            topic, record, key, eid = traffic.event(i, datetime.now(UTC) - shift)
            at = send(topic, record, key, timed=eid is not None)
            if eid is not None:
                sent_at[eid] = at
            producer.poll(0)
        producer.flush(30)
        achieved = total / (time.monotonic() - start)
        wait_until = time.monotonic() + 15
        while time.monotonic() < wait_until and len(received) < len(sent_at):
            time.sleep(0.1)
        if variant == "topology":
            time.sleep(1.5)  # a deadline alert comes with the next batch or tick (and the status file is written)
            stages = _stage_means(read_status(status), prelude_status)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    immediate_ms = [(received[k][0] - t) * 1000 for k, t in sent_at.items() if k in received]
    # The watermark passed the probe's `due` DEADLINE_AT_S into the run, and any other due time as much later.
    passed_at = start_wall + DEADLINE_AT_S
    deadline_ms = [(got - passed_at - (d - due).total_seconds()) * 1000 for got, d in deadline_seen]
    return {
        "variant": variant,
        "rate": rate,
        "achieved_rate": round(achieved, 1),
        "produce_ack": summary(produce_ms),
        "stages_mean_ms": stages,
        "immediate": summary(immediate_ms),
        "immediate_missing": len(sent_at) - len(immediate_ms),
        # Kept up: every watched alert arrived and the median under a second (a worker falling behind shows as
        # latency growing through the run, not as a lower rate: the producer sets the pace).
        "kept_up": len(sent_at) == len(immediate_ms) and bool(immediate_ms) and statistics.median(immediate_ms) < 1000,
        "deadline": summary(deadline_ms) if variant == "topology" else None,
        "deadline_missing": DEADLINE_TRAVELLERS - len(deadline_ms) if variant == "topology" else None,
    }


# Fractions of the worker's backlog rate tried, highest first, for the highest live rate it keeps up with: live
# traffic comes in small batches, which cost more per event than a backlog's, and the broker shares the machine.
PROBE_FRACTIONS = (0.5, 0.35, 0.25, 0.18, 0.12)
PROBE_SECONDS = 6.0


def probe_rates(backlog_rate: float, floor: int = 1000) -> list[int]:
    """The live rates to probe for the sustainable one, highest first: fractions of the backlog rate, rounded down
    to 100 events/s, above `floor` (which is measured anyway) and each once."""
    rates = [int(backlog_rate * f) // 100 * 100 for f in PROBE_FRACTIONS]
    return sorted({r for r in rates if r > floor}, reverse=True)


def sustainable_rate(
    settings: Settings,
    work_dir: Path,
    backlog_rate: float,
    *,
    say: Callable[[str], None],
    floor: int = 1000,
    seconds: float = PROBE_SECONDS,
) -> tuple[int, list[dict[str, Any]]]:
    """The highest of `probe_rates` a short run of the worker keeps up with (`kept_up`), else `floor`; with the
    probes' results (each with its rate and whether it kept up), for the report."""
    probes: list[dict[str, Any]] = []
    for rate in probe_rates(backlog_rate, floor):
        try:
            r = run_once(settings, work_dir, rate=rate, seconds=seconds, say=say)
        except (RuntimeError, TimeoutError) as exc:
            probes.append({"rate": rate, "kept_up": False, "error": str(exc)})
            continue
        probes.append({"rate": rate, "kept_up": r["kept_up"], "immediate": r["immediate"]})
        say(f"  probe at {rate:,}/s: {'kept up' if r['kept_up'] else 'fell behind'} (p50 {r['immediate']['p50']} ms)")
        if r["kept_up"]:
            return rate, probes
    return floor, probes


def matrix(
    settings: Settings,
    work_dir: Path,
    *,
    rates: list[int],
    rounds: int,
    seconds: float,
    say: Callable[[str], None],
    variants: tuple[str, ...] = VARIANTS,
) -> list[dict[str, Any]]:
    """Every rate x variant, `rounds` times, interleaved (the variants' order rotating each round)."""
    runs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
        for rate in rates:
            for variant in order:
                try:
                    r = run_once(settings, work_dir, rate=rate, seconds=seconds, variant=variant, say=say)
                except (RuntimeError, TimeoutError) as exc:
                    # One run's process failing (a worker exiting, say) is reported in the JSON, not a lost bench.
                    runs.append({"variant": variant, "rate": rate, "round": round_ + 1, "error": str(exc)})
                    say(f"  {variant} at {rate:,}/s: failed: {exc}")
                    continue
                r["round"] = round_ + 1
                runs.append(r)
                imm, dl = r["immediate"], r["deadline"]
                dl_text = f"; deadline p50 {dl['p50']} p99 {dl['p99']} max {dl['max']} ms" if dl else ""
                stages = f"; per event (ms): {r['stages_mean_ms']}" if r.get("stages_mean_ms") else ""
                say(
                    f"  {variant} at {rate:,}/s (achieved {r['achieved_rate']:,.0f}): immediate p50 {imm['p50']}"
                    f" p99 {imm['p99']} max {imm['max']} ms{dl_text}{stages}"
                )
    return runs


def medians(runs: list[dict[str, Any]], variant: str, rate: int, policy: str) -> dict[str, float | None]:
    """Per figure (p50, p99, max), the median over the rounds of `variant` at `rate`."""
    mine = [r[policy] for r in runs if r["variant"] == variant and r["rate"] == rate and r.get(policy)]
    out: dict[str, float | None] = {}
    for fig in ("p50", "p99", "max"):
        values = [m[fig] for m in mine if m[fig] is not None]
        out[fig] = statistics.median(values) if values else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.latency")
    parser.add_argument("--forward", action="store_true", help="run the forwarding baseline (internal)")
    parser.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    if args.forward:
        run_forward(Settings(), args.result)


if __name__ == "__main__":
    main()
