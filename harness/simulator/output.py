"""A run written to files: Avro container files per record type, malformed payloads, ground truth, summary.

Same config, same bytes: the container files' sync markers are derived from the seed (fastavro would pick
random ones), and nothing wall-clock (durations, paths) goes into the files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from fastavro import block_reader
from fastavro.write import Writer

from harness.simulator.config import SimulationConfig
from harness.simulator.generate import Counts, Engine, describe
from harness.simulator.materialise import CROSSING, KINDS, RECORD_NAME, REGISTRATION, STATUS_CHANGE
from schemas.serde import latest_version

FILES = {CROSSING: "crossings.avro", REGISTRATION: "registrations.avro", STATUS_CHANGE: "status_changes.avro"}
MALFORMED_FILE = "malformed.jsonl"
TRUTH_FILE = "ground_truth.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class SimSummary:
    """What a run produced (counts, expected alerts by type) and where it went."""

    config: dict[str, Any]
    period_start: datetime
    period_end: datetime  # exclusive: local midnight after the last day
    events: dict[str, int]  # valid events by kind (each counted once)
    messages: int  # everything sent: valid events, duplicates and malformed payloads
    duplicates: int
    late_uploads: int
    out_of_order: int
    malformed: dict[str, int]  # by sort
    expected_alerts: dict[str, int]  # by alert type
    journeys: dict[str, int]
    crossings_by_day: dict[str, int]
    foreign_crossings_by_nationality: dict[str, int]
    citizen_crossings: int
    files: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0  # wall time (not written to summary.json: it would change the bytes)
    rejected_by_client: int = 0  # --to-kafka: valid events the producer client refused (expected 0)
    producer: dict[str, int] = field(default_factory=dict)  # --to-kafka: the client's counters (sent, spooled, ...)
    unsent: int = 0  # --to-kafka: events still spooled or in flight when publishing gave up waiting (expected 0)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def expected_total(self) -> int:
        return sum(self.expected_alerts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "events": dict(sorted(self.events.items())),
            "messages": self.messages,
            "duplicates": self.duplicates,
            "late_uploads": self.late_uploads,
            "out_of_order": self.out_of_order,
            "malformed": dict(sorted(self.malformed.items())),
            "expected_alerts": dict(sorted(self.expected_alerts.items())),
            "journeys": dict(sorted(self.journeys.items())),
            "crossings_by_day": dict(sorted(self.crossings_by_day.items())),
            "foreign_crossings_by_nationality": dict(sorted(self.foreign_crossings_by_nationality.items())),
            "citizen_crossings": self.citizen_crossings,
            "files": self.files,
        }


def summarise(
    config: SimulationConfig, counts: list[Counts], messages: int, begin: datetime, end: datetime
) -> SimSummary:
    """One summary over the shards' counts."""
    total = Counts(crossings_by_day=[0] * config.days)
    for c in counts:
        total.events.update(c.events)
        total.duplicates += c.duplicates
        total.late_uploads += c.late_uploads
        total.out_of_order += c.out_of_order
        total.malformed.update(c.malformed)
        total.journeys.update(c.journeys)
        total.crossings_by_day = [a + b for a, b in zip(total.crossings_by_day, c.crossings_by_day, strict=True)]
        total.foreign_crossings_by_nationality.update(c.foreign_crossings_by_nationality)
        total.citizen_crossings += c.citizen_crossings
        total.expected.update(c.expected)
    return SimSummary(
        describe(config),
        begin,
        end,
        {k: total.events.get(k, 0) for k in KINDS},
        messages,
        total.duplicates,
        total.late_uploads,
        total.out_of_order,
        dict(total.malformed),
        {k: v for k, v in total.expected.items() if k != "malformed"},
        dict(total.journeys),
        {(config.start + timedelta(days=i)).isoformat(): n for i, n in enumerate(total.crossings_by_day)},
        dict(total.foreign_crossings_by_nationality),
        total.citizen_crossings,
    )


def _sync_marker(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"shekara-simulator:{seed}:{name}".encode()).digest()[:16]


@dataclass(frozen=True)
class _ShardResult:
    shard: int
    messages: int
    counts: Counts
    begin: datetime
    end: datetime


# Shared progress of worker processes: fraction of the period each shard has emitted (set by the initializer).
_progress: Any = None


def _init_worker(progress: Any) -> None:
    global _progress
    _progress = progress


def _write_shard(config: SimulationConfig, shard: int, part: Path, codec: str) -> _ShardResult:
    """Generate one shard into `part` (container files, malformed.jsonl, ground_truth.jsonl)."""
    part.mkdir(parents=True, exist_ok=True)
    engine = Engine(config, shard)
    w = engine.world
    span = (w.end - w.begin).total_seconds()
    handles: list[BinaryIO] = []
    writers: dict[str, Any] = {}
    messages = 0
    try:
        for kind, name in FILES.items():
            fo = (part / name).open("wb")
            handles.append(fo)
            schema = latest_version(RECORD_NAME[kind]).parsed
            writers[kind] = Writer(fo, schema, codec=codec, sync_marker=_sync_marker(config.seed, name))
        with (
            (part / MALFORMED_FILE).open("w", encoding="utf-8") as bad,
            (part / TRUTH_FILE).open("w", encoding="utf-8") as truth,
        ):
            avro = engine.mat.avro
            next_progress = w.begin
            for em in engine.run():
                messages += 1
                if em.event is not None:
                    writers[em.kind].write(avro(em.event, em.received, hint_unions=True))
                else:
                    assert em.raw is not None
                    line = {
                        "kind": em.kind,
                        "publish_time": em.publish_time.isoformat(),
                        "key": base64.b64encode(em.key).decode(),
                        "value": base64.b64encode(em.raw).decode(),
                        "reason": em.reason,
                    }
                    bad.write(json.dumps(line) + "\n")
                if engine.truth:
                    for x in engine.take_truth():
                        truth.write(json.dumps(x.to_json(), sort_keys=True) + "\n")
                if _progress is not None and em.publish_time >= next_progress:
                    _progress[shard] = min(1.0, (em.publish_time - w.begin).total_seconds() / span)
                    next_progress = em.publish_time + timedelta(hours=3)
            for x in engine.take_truth():
                truth.write(json.dumps(x.to_json(), sort_keys=True) + "\n")
        for wr in writers.values():
            wr.flush()
    finally:
        for h in handles:
            h.close()
    if _progress is not None:
        _progress[shard] = 1.0
    return _ShardResult(shard, messages, engine.counts, w.begin, w.end)


Progress = Callable[[float], None]


def default_workers(config: SimulationConfig) -> int:
    """Worker processes for a run: one for small runs (start-up costs more than it saves), else one per core."""
    est_events = 190_000 * 1.15 * config.scale * config.days
    if est_events < 1_500_000:
        return 1
    return max(1, min(config.shards, os.cpu_count() or 1))


def write_files(
    config: SimulationConfig,
    out_dir: Path,
    *,
    codec: str = "deflate",
    workers: int | None = None,
    progress: Progress | None = None,
) -> SimSummary:
    """Generate the run into `out_dir`: crossings.avro, registrations.avro, status_changes.avro (Avro
    container files, latest schemas), malformed.jsonl (raw payloads base64 with the reason), ground_truth.jsonl
    (one expected alert or malformed payload per line) and summary.json.

    Each shard is generated (by `workers` processes in parallel) in publish-time order, duplicates included,
    and the files list shard after shard, so the bytes do not depend on the number of workers."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = workers or default_workers(config)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".parts-") as tmp:
        parts = [Path(tmp) / f"shard-{i}" for i in range(config.shards)]
        results = _run_shards(config, parts, codec, workers, progress)
        _merge(config, parts, out_dir, codec)
    results.sort(key=lambda r: r.shard)
    summary = summarise(
        config, [r.counts for r in results], sum(r.messages for r in results), results[0].begin, results[0].end
    )
    summary.files = {
        **{k: name for k, name in FILES.items()},
        "malformed": MALFORMED_FILE,
        "ground_truth": TRUTH_FILE,
        "summary": SUMMARY_FILE,
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2, sort_keys=True) + "\n")
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _run_shards(
    config: SimulationConfig, parts: list[Path], codec: str, workers: int, progress: Progress | None
) -> list[_ShardResult]:
    if workers <= 1:
        done: list[_ShardResult] = []
        for i, part in enumerate(parts):
            _init_worker({} if progress is None else _Fraction(progress, i, len(parts)))
            try:
                done.append(_write_shard(config, i, part, codec))
            finally:
                _init_worker(None)
        return done
    ctx = multiprocessing.get_context("spawn")  # no fork: the parent may run progress threads
    shared = ctx.Array("d", len(parts))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(shared,)) as pool:
        futures = [pool.submit(_write_shard, config, i, part, codec) for i, part in enumerate(parts)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if progress is not None:
                progress(sum(shared[:]) / len(parts))
        return [f.result() for f in futures]


class _Fraction:
    """Progress of shard i of n run in this process, reported as the fraction of the whole run."""

    def __init__(self, report: Progress, shard: int, shards: int) -> None:
        self._report, self._shard, self._shards = report, shard, shards

    def __setitem__(self, shard: int, fraction: float) -> None:
        self._report((self._shard + fraction) / self._shards)


def _merge(config: SimulationConfig, parts: list[Path], out_dir: Path, codec: str) -> None:
    """Shard files into one file per kind: Avro blocks copied as they are (no re-encoding), lines appended."""
    meta = {"shekara.simulation": json.dumps(describe(config), sort_keys=True)}
    for kind, name in FILES.items():
        schema = latest_version(RECORD_NAME[kind]).parsed
        with (out_dir / name).open("wb") as fo:
            writer = Writer(fo, schema, codec=codec, sync_marker=_sync_marker(config.seed, name), metadata=dict(meta))
            for part in parts:
                with (part / name).open("rb") as src:
                    for block in block_reader(src):
                        writer.write_block(block)
            writer.flush()
    for name in (MALFORMED_FILE, TRUTH_FILE):
        with (out_dir / name).open("wb") as dst:
            for part in parts:
                with (part / name).open("rb") as src:
                    shutil.copyfileobj(src, dst)


def read_truth(path: Path) -> list[dict[str, Any]]:
    """The lines of a ground_truth.jsonl file."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
