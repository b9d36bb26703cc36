"""Benchmarks of the stream processors: throughput against baselines from the same run, memory, latency.

`run(settings, quick)` (called by `shekara bench`) measures, each time on the broker in `settings`:

1. **events/s through one worker**, end to end: the simulator's traffic is put on fresh source topics first, then
   a real worker (`python -m streams.worker`) consumes it and produces alerts, stays and dead letters; the rate
   is events / (last batch's outputs acknowledged - first batch started). Baseline, same topics, same run: a
   bare Faust agent looping over ``stream.take()`` and doing nothing else (the ceiling of Faust + aiokafka here).
   A second baseline takes the same batches the processors take (`streams.drain`) and does nothing with them:
   the ceiling of the processors' own way of consuming, so the ratio to it is what the processing itself costs.
2. the same against a **naive** Faust version: per-event iteration, a changelog-backed table write and a Faust
   ``topic.send`` for every event (what a first Faust app usually looks like).
3. **memory per open stay**: stored bytes of traveller states with one open stay each, and the memory the
   in-memory store spends on them (tracemalloc).
4. **latency produce -> alert per alert policy** (`harness.bench.latency`): immediate and deadline alerts at
   100, 1,000 and the maximum sustainable events/s (the highest of a few fractions of the worker's rate in 1. of
   this run that a short live run keeps up with; each run says whether the worker kept up),
   p50/p99/max, each run `rounds` times, interleaved with a bare confluent-kafka forwarding loop (the floor).

Every variant runs in its own process and consumer group, so they cannot share caches or warm-up, and writes
to output topics of its own. The throughput variants run three times each (once with ``--quick``), interleaved;
each figure is the median of its runs, and every run's rate is in the details.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from harness import samples
from harness.bench import BenchResult, latency
from schemas.records import (
    Checkpoint,
    Crossing,
    Purpose,
    Sex,
)
from schemas.serde import Serde
from shekara.admin import ensure_topics
from shekara.logs import get_logger
from shekara.pseudonym import traveller_key
from shekara.reference import load_checkpoints
from shekara.settings import REPO_ROOT, Settings, TopicNames
from streams.worker import read_status, spawn_worker, worker_env

log = get_logger(__name__)

COMPONENT = "processor"


# --- workload ---------------------------------------------------------------------------------------------


def _fresh_settings(settings: Settings, tag: str, work_dir: Path) -> Settings:
    topics = TopicNames(**{k: f"{v}.bench-{tag}" for k, v in TopicNames().model_dump().items()})
    s = settings.model_copy(update={"topics": topics, "data_dir": work_dir / f"var-{tag}"})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    ensure_topics(s)
    return s


def _fresh_outputs(settings: Settings, tag: str) -> Settings:
    """The same sources, output topics of its own: a run must not also consume the address-keyed registrations an
    earlier run produced (each run reads from the beginning, in a group of its own)."""
    outputs = ("alerts", "stays", "dead_letter", "address_registrations")
    topics = settings.topics.model_copy(update={k: f"{getattr(settings.topics, k)}.{tag}" for k in outputs})
    s = settings.model_copy(update={"topics": topics})
    ensure_topics(s)
    return s


def simulated_messages(settings: Settings, events: int) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of the first `events` valid events of the simulator's traffic (anomalies on)."""
    from harness.simulator import FaultRates, SimulationConfig, simulate

    serde = Serde.from_settings(settings)
    t = settings.topics
    topic_of = {"crossing": t.crossings, "registration": t.registrations, "status_change": t.status_changes}
    config = SimulationConfig(
        days=30, seed=11, scale=0.05, faults=FaultRates.none(), pseudonym_key=settings.pseudonym_key_bytes
    )
    out: list[tuple[str, bytes, bytes]] = []
    for ev in simulate(config):
        if ev.record is None:
            continue
        topic = topic_of[ev.kind]
        out.append((topic, ev.key, serde.encode(ev.record, topic)))
        if len(out) >= events:
            break
    if len(out) < events:
        raise RuntimeError(f"the simulator gave only {len(out)} events, {events} wanted")
    return out


def _produce_all(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    p = Producer({**settings.kafka_config(), "linger.ms": 20, "enable.idempotence": True})
    for topic, key, value in messages:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise RuntimeError("could not publish the benchmark workload")


# --- variants run in their own processes ------------------------------------------------------------------


def _variant_app(settings: Settings, app_id: str) -> Any:
    from streams.app import new_app

    return new_app(settings, app_id)


def _run_bare_loop(
    settings: Settings, app_id: str, result_file: Path, name: str, take: Callable[[Any, int, float], Any]
) -> None:
    """A Faust agent over the three source topics that takes batches with `take(stream, max, within)`, acknowledges
    them (if the stream does not) and does nothing else."""
    import faust

    app = _variant_app(settings, app_id)
    t, fs = settings.topics, settings.faust
    sources = app.topic(t.crossings, t.registrations, t.status_changes, key_serializer="raw", value_serializer="raw")
    progress: dict[str, Any] = {"events": 0, "first_event_wall": None, "last_output_wall": None}

    @app.agent(sources, name=name)
    async def bare(stream: faust.StreamT) -> None:
        async for batch in take(stream, fs.batch_size, fs.batch_within):
            if progress["first_event_wall"] is None:
                progress["first_event_wall"] = time.time()
            progress["events"] += len(batch)
            progress["last_output_wall"] = time.time()
            _write_json(result_file, progress)

    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


def run_bare(settings: Settings, app_id: str, result_file: Path) -> None:
    """Baseline: a Faust agent looping over ``stream.take()`` (which acknowledges) and doing nothing else."""
    _run_bare_loop(settings, app_id, result_file, "bare-take-loop", lambda s, n, w: s.take(n, within=w))


def run_drain(settings: Settings, app_id: str, result_file: Path) -> None:
    """Second baseline: the processors' own way of taking batches (`streams.drain`), doing nothing with them."""
    from streams.drain import batches

    async def take(stream: Any, n: int, within: float) -> AsyncIterator[list[Any]]:
        async for events in batches(stream.channel, n, within):
            for event in events:
                event.ack()  # as the processors' commit pipeline does once a batch is durable
            yield events

    _run_bare_loop(settings, app_id, result_file, "bare-drain-loop", take)


def run_confluent(settings: Settings, app_id: str, result_file: Path) -> None:
    """Floor: a bare confluent-kafka (librdkafka) consumer reading the same three source topics and doing nothing
    else. Faust's own cost per event is this loop's time per event subtracted from the bare Faust loop's."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    t = settings.topics
    c = Consumer({**settings.kafka_config(), "group.id": app_id, "enable.auto.commit": False})
    c.assign(
        [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in (t.crossings, t.registrations, t.status_changes)
            for p in range(settings.partitions)
        ]
    )
    progress: dict[str, Any] = {"events": 0, "first_event_wall": None, "last_output_wall": None}
    while True:
        got = [m for m in c.consume(num_messages=1000, timeout=0.2) if not m.error()]
        if got:
            if progress["first_event_wall"] is None:
                progress["first_event_wall"] = time.time()
            progress["events"] += len(got)
            progress["last_output_wall"] = time.time()
            _write_json(result_file, progress)


def run_naive(settings: Settings, app_id: str, result_file: Path) -> None:
    """A first-draft Faust processor: one event at a time, a table write and Faust sends for every event."""
    import faust

    from shekara.rules import load_rules
    from streams.core import TravellerState, step
    from streams.intake import Accepted, Intake

    app = _variant_app(settings, app_id)
    t = settings.topics
    serde = Serde.from_settings(settings)
    intake = Intake(settings, serde)
    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()
    sources = app.topic(t.crossings, t.registrations, t.status_changes, key_serializer="raw", value_serializer="raw")
    alerts = app.topic(t.alerts, key_serializer="raw", value_serializer="raw")
    stays = app.topic(t.stays, key_serializer="raw", value_serializer="raw")
    table = app.Table("naive-state", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    lateness = timedelta(seconds=settings.allowed_lateness_seconds)
    watermarks: dict[int, datetime] = {}
    progress: dict[str, Any] = {"events": 0, "first_event_wall": None, "last_output_wall": None}

    @app.agent(sources, name="naive-matcher")
    async def naive(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if progress["first_event_wall"] is None:
                progress["first_event_wall"] = time.time()
            msg = event.message
            now = datetime.now(UTC)
            verdict = intake.admit(msg.topic, msg.key, msg.value, now=now)
            if isinstance(verdict, Accepted):
                p = msg.partition
                wm = max(watermarks.get(p, verdict.event.event_time - lateness), verdict.event.event_time - lateness)
                watermarks[p] = wm
                stored = table.get(verdict.traveller_key.encode())
                state = TravellerState.from_bytes(stored) if stored else TravellerState.empty(verdict.traveller_key)
                result = step(
                    state, [verdict.event], watermark=wm, emitted_time=now, rules=rules, checkpoints=checkpoints
                )
                for a in result.alerts:
                    await alerts.send(key=a.alert_id.encode(), value=serde.encode(a, t.alerts))
                for s in result.stays:
                    await stays.send(key=s.stay_id.encode(), value=serde.encode(s, t.stays))
                table[verdict.traveller_key.encode()] = result.state.to_bytes()
            progress["events"] += 1
            progress["last_output_wall"] = time.time()
            if progress["events"] % 500 == 0:
                _write_json(result_file, progress)

    @app.timer(0.5)
    async def report() -> None:
        _write_json(result_file, progress)

    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _spawn_variant(
    settings: Settings, kind: str, app_id: str, result_file: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "harness.bench.processor", "--variant", kind, "--app-id", app_id]
    cmd += ["--result", str(result_file)]
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd, env=worker_env(settings), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _measure(proc: subprocess.Popen[bytes], result_file: Path, events: int, timeout: float) -> dict[str, Any]:
    """Wait until the process reports `events` consumed; (events, seconds, events/s) from its own clock."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"benchmark process exited with code {proc.returncode}")
            data = read_status(result_file)
            if data and data.get("events", 0) >= events and data.get("last_output_wall"):
                seconds = data["last_output_wall"] - data["first_event_wall"]
                return {"events": data["events"], "seconds": seconds, "rate": data["events"] / seconds}
            time.sleep(0.1)
        raise TimeoutError(f"benchmark process did not get through {events} events in {timeout:.0f}s")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


VARIANTS = ("confluent", "bare", "drain", "topology", "naive")


def _throughput(
    settings: Settings, work_dir: Path, events: int, rounds: int, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Each variant `rounds` times over the same topics, interleaved (the order rotating each round); per variant the
    median rate and every round's.

    One run of one variant varies by about 10 % here (the machine, and the order in which the embedded broker
    hands out the partitions' backlogs, which changes with each process's hash seed): interleaved rounds and
    medians keep a slow moment of the machine or a bad order from deciding a comparison."""
    s = _fresh_settings(settings, uuid.uuid4().hex[:8], work_dir)
    say(f"publishing {events:,} simulated events for the throughput runs")
    _produce_all(s, simulated_messages(s, events))
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in VARIANTS}
    timeout = max(120.0, events / 300)
    for round_ in range(rounds):
        for kind in VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]:
            app_id = f"shekara-bench-{kind}-{uuid.uuid4().hex[:6]}"
            run_settings = _fresh_outputs(s, f"{kind}-{round_}")
            result_file = work_dir / f"{kind}-{round_}.json"
            log_path = work_dir / f"{kind}-{round_}.log"
            say(f"measuring: {kind} (round {round_ + 1} of {rounds})")
            if kind == "topology":
                proc = spawn_worker(run_settings, app_id=app_id, status_file=result_file, log_path=log_path)
            else:
                proc = _spawn_variant(run_settings, kind, app_id, result_file, log_path)
            runs[kind].append(_measure(proc, result_file, events, timeout))
            say(f"  {kind}: {runs[kind][-1]['rate']:,.0f} events/s")
    return {
        kind: {
            "rate": statistics.median(r["rate"] for r in results),
            "rates": [round(r["rate"]) for r in results],
        }
        for kind, results in runs.items()
    }


# --- memory per open stay ---------------------------------------------------------------------------------


def _entry(i: int, now: datetime, checkpoint: Checkpoint) -> Crossing:
    return samples.crossing(
        f"bench-entry-{i}",
        event_time=now,
        received_time=now,
        checkpoint=checkpoint,
        traveller=samples.traveller(f"BN{i:08d}", birth_date=date(1985, 5, 5), sex=Sex.F),
        purpose=Purpose.TOURISM,
        source_system="bench",
        conveyance=None,
    )


def memory_per_open_stay(settings: Settings, stays: int) -> dict[str, float]:
    """Bytes per traveller with one open stay: stored value size, and store memory as tracemalloc sees it."""
    from shekara.rules import load_rules
    from streams.core import TravellerState, step
    from streams.stored import pack

    rules, checkpoints = load_rules(settings.rules_file), load_checkpoints()
    cp = next(c for c in checkpoints.values() if c.border_country == "UZB")
    checkpoint = Checkpoint(cp.id, cp.kind, cp.border_country)
    now = datetime.now(UTC) - timedelta(hours=1)
    values: list[tuple[bytes, bytes]] = []
    for i in range(stays):
        ev = _entry(i, now, checkpoint)
        key = traveller_key("UZB", ev.traveller.document.number, settings.pseudonym_key_bytes)
        r = step(
            TravellerState.empty(key),
            [ev],
            watermark=now - timedelta(hours=6),
            emitted_time=now,
            rules=rules,
            checkpoints=checkpoints,
        )
        values.append((key.encode(), pack(0, r.next_due, r.state.to_bytes())))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    # What the memory store holds: a dict of key bytes -> value bytes (fresh copies, so they are counted).
    store = {bytes(bytearray(k)): bytes(bytearray(v)) for k, v in values}
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(store) == stays
    return {
        "stored_bytes": statistics.fmean(len(v) for _, v in values),
        "memory_bytes": held / stays,
    }


# --- entry point ------------------------------------------------------------------------------------------


def run(
    settings: Settings, quick: bool, progress: Callable[[str], None] | None = None, rounds: int | None = None
) -> list[BenchResult]:
    say = progress or (lambda line: print(line, file=sys.stderr))
    events = 20_000 if quick else 100_000
    rounds = rounds or (1 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="shekara-bench-streams-") as tmp:
        work_dir = Path(tmp)
        tp = _throughput(settings, work_dir, events, rounds, say)
        mem = memory_per_open_stay(settings, 2_000 if quick else 20_000)
        # The highest live rate a short run keeps up with, among fractions of the backlog rate; each run of the
        # matrix still says whether the worker sustained it (`kept_up`).
        sustainable, probes = latency.sustainable_rate(settings, work_dir, tp["topology"]["rate"], say=say)
        rates = sorted({100, 1000, sustainable})
        lat_runs = latency.matrix(
            settings, work_dir, rates=rates, rounds=rounds, seconds=8.0 if quick else 20.0, say=say
        )
    batch = f"streams.drain adaptive batches of at most {settings.faust.batch_size}"
    return [
        BenchResult(
            COMPONENT,
            "events/s through one worker, source -> outputs",
            tp["topology"]["rate"],
            "events/s",
            baseline_name="bare Faust stream.take() loop, same topics",
            baseline_value=tp["bare"]["rate"],
            target=">= 90 % of baseline",
            details={
                "events": events,
                "rounds": rounds,
                "batching": batch,
                **{f"{k} events/s by round": v["rates"] for k, v in tp.items()},
            },
        ),
        BenchResult(
            COMPONENT,
            "events/s through one worker vs the same batching doing nothing",
            tp["topology"]["rate"],
            "events/s",
            baseline_name="bare loop over streams.drain batches, same topics",
            baseline_value=tp["drain"]["rate"],
            details={"events": events},
        ),
        BenchResult(
            COMPONENT,
            "events/s through one worker vs naive per-event Faust",
            tp["topology"]["rate"],
            "events/s",
            baseline_name="naive: per-event table write + topic.send",
            baseline_value=tp["naive"]["rate"],
            target=">= 4x baseline",
            details={"events": events},
        ),
        BenchResult(
            COMPONENT,
            "bare Faust loop vs bare confluent-kafka consume loop",
            tp["bare"]["rate"],
            "events/s",
            baseline_name="bare confluent-kafka consume loop, same topics",
            baseline_value=tp["confluent"]["rate"],
            details={"events": events},
        ),
        BenchResult(
            COMPONENT,
            "Faust's own cost per event (bare Faust loop - bare confluent-kafka loop)",
            _per_event_us(tp["bare"]["rate"]) - _per_event_us(tp["confluent"]["rate"]),
            "µs/event",
            details={"events": events},
        ),
        BenchResult(
            COMPONENT,
            "the worker's cost per event beyond a bare confluent-kafka loop",
            _per_event_us(tp["topology"]["rate"]) - _per_event_us(tp["confluent"]["rate"]),
            "µs/event",
            details={"events": events},
        ),
        BenchResult(
            COMPONENT,
            "memory per open stay (in-memory store)",
            mem["memory_bytes"],
            "bytes",
            details={"stored value bytes": round(mem["stored_bytes"], 1)},
        ),
        *_latency_results(lat_runs, rates, rounds, probes),
    ]


def _per_event_us(rate: float) -> float:
    return 1e6 / rate


def _latency_results(
    runs: list[dict[str, Any]], rates: list[int], rounds: int, probes: list[dict[str, Any]] | None = None
) -> list[BenchResult]:
    """Per policy, rate and figure the median over the rounds (the baseline's beside immediate); every run's figures,
    and the probes that found the sustainable rate, are in the details of the first."""
    out: list[BenchResult] = []
    for policy in latency.POLICIES:
        for rate in rates:
            mine = latency.medians(runs, "topology", rate, policy)
            floor = latency.medians(runs, "forward", rate, policy) if policy == "immediate" else {}
            for fig in ("p50", "p99", "max"):
                value = mine[fig]
                details: dict[str, Any] = {
                    "rounds": rounds,
                    "by round": [
                        r[policy][fig]
                        for r in runs
                        if r["variant"] == "topology" and r["rate"] == rate and r.get(policy)
                    ],
                }
                if not out:
                    details["runs"] = runs
                    details["sustainable rate probes"] = probes or []
                out.append(
                    BenchResult(
                        "end-to-end",
                        f"latency produce -> {policy} alert, {fig} at {rate:,} events/s",
                        value if value is not None else float("nan"),
                        "ms",
                        baseline_name="bare confluent-kafka forward loop, same traffic" if floor else None,
                        baseline_value=floor.get(fig),
                        target="< 250 ms"
                        if policy == "immediate" and fig == "p99" and rate == 1000
                        else "< 1,000 ms after the watermark passes due"
                        if policy == "deadline"
                        else None,
                        details=details,
                    )
                )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.processor")
    parser.add_argument("--variant", choices=["confluent", "bare", "drain", "naive"], help="one baseline (internal)")
    parser.add_argument("--app-id")
    parser.add_argument("--result", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.variant == "bare":
        run_bare(settings, args.app_id, args.result)
        return
    if args.variant == "drain":
        run_drain(settings, args.app_id, args.result)
        return
    if args.variant == "confluent":
        run_confluent(settings, args.app_id, args.result)
        return
    if args.variant == "naive":
        run_naive(settings, args.app_id, args.result)
        return
    # Stand-alone: own embedded broker, print the figures.
    from shekara.admin import wait_for_broker
    from shekara.embedded import launch

    with tempfile.TemporaryDirectory(prefix="shekara-bench-") as tmp:
        broker = launch(log_path=Path(tmp) / "broker.log")
        try:
            s = Settings(broker_url=broker.url, data_dir=Path(tmp) / "var")
            wait_for_broker(s)
            for r in run(s, args.quick):
                ratio = f" ratio {r.ratio:.2f}" if r.ratio is not None else ""
                base = f" (baseline {r.baseline_name}: {r.baseline_value:,.1f})" if r.baseline_value else ""
                print(f"{r.component:10} {r.name:55} {r.value:12,.1f} {r.unit}{base}{ratio}")
        finally:
            broker.stop()
    os._exit(0)


if __name__ == "__main__":
    main()
