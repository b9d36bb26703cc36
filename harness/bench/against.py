"""Before/after in one run: `shekara bench --against REF` (issue 15's benchmark condition).

The processor's throughput (`_throughput`'s topology worker variant) and the sink's (`sink_throughput`) of the
tree at REF and of the working tree, taking turns (REF, working tree, REF, working tree, ...), on the bench's
embedded broker. REF is checked out in a temporary detached `git worktree`, removed afterwards.

Each tree runs its own code, unmodified: every measurement is a subprocess (this venv's interpreter, ``-c``
`_DRIVER`, cwd and PYTHONPATH = the tree) that calls only functions both trees have (the bench modules moved
from ``streams/bench.py`` and ``sinks/bench.py`` to ``harness/bench/`` after 4235b87; the driver takes
whichever the tree has). Each tree builds its settings from its own defaults; only the broker and the data
directory are given (``SHEKARA_*``), so a setting whose default changed is measured as each tree ships it.

CPU per event or row is the steady state, from the first event to the last, without start-up:
- processor: CPU time (user + system, from ``/proc``) of the worker's process tree (the worker and its
  matching process), sampled every 0.1 s and interpolated at the worker's own first-event and last-output
  times, divided by the events;
- sink: CPU time of the process running `run_sink` (every thread, chDB's included) from the first message
  consumed to the last batch committed, the window of the sink's own rate, divided by the rows.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.bench import BenchResult
from shekara.settings import REPO_ROOT, Settings

T = TypeVar("T")

ROUNDS = 3
PROCESSOR_EVENTS = 50_000  # quick: 20,000
SINK_ROWS = 300_000  # quick: 100,000
CPU_PROCESSOR = "CPU of the worker's process tree from its first event to its last output, per event"
CPU_SINK = "CPU of the sink's process from the first message consumed to the last batch committed, per row"


# --- the pure parts -----------------------------------------------------------------------------------------


def interleave(trees: Sequence[T], rounds: int) -> list[tuple[int, T]]:
    """(round, tree) in the order they run: every tree once per round, in the order given (REF first)."""
    return [(r, tree) for r in range(rounds) for tree in trees]


def cpu_between(samples: Sequence[Sequence[float]], start: float, end: float) -> float:
    """CPU seconds between wall times `start` and `end`, from (wall, cumulative CPU) samples in time order,
    linearly interpolated between the samples either side of each."""

    def at(t: float) -> float:
        if not samples or t < samples[0][0] or t > samples[-1][0]:
            raise ValueError(f"time {t} is outside the samples' span")
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        return float(samples[-1][1])  # a single sample, at t

    return at(end) - at(start)


@dataclass(frozen=True, slots=True)
class Round:
    tree: str  # label of the tree
    round: int
    rate: float  # events/s or rows/s
    cpu_us: float | None  # CPU µs per event or row in steady state
    units: int  # events or rows measured
    seconds: float  # first to last, the rate's window


@dataclass(frozen=True, slots=True)
class Summary:
    rate: float  # median over rounds
    rates: list[float]
    cpu_us: float | None
    cpu_us_by_round: list[float | None]


def summarise(rounds: Sequence[Round]) -> Summary:
    """Medians over one tree's rounds, and every round's figure in round order."""
    if not rounds:
        raise ValueError("no rounds to summarise")
    ordered = sorted(rounds, key=lambda r: r.round)
    cpus = [r.cpu_us for r in ordered if r.cpu_us is not None]
    return Summary(
        rate=statistics.median(r.rate for r in ordered),
        rates=[r.rate for r in ordered],
        cpu_us=statistics.median(cpus) if cpus else None,
        cpu_us_by_round=[r.cpu_us for r in ordered],
    )


def verdict(head: float, ref_rounds: Sequence[float | None], *, higher_is_better: bool) -> str:
    """Whether the working tree's median is within REF's rounds or better (the noise of one tree in one run)."""
    seen = [v for v in ref_rounds if v is not None]
    if len(seen) < 2:
        return "one round: no spread to judge noise by"
    low, high = min(seen), max(seen)
    ok = head >= low if higher_is_better else head <= high
    return f"REF's rounds {low:,.1f}-{high:,.1f}: {'within noise or better' if ok else 'WORSE than noise'}"


def results(
    ref: str, sha: str, head_label: str, processor: Sequence[Round], sink: Sequence[Round]
) -> list[BenchResult]:
    """BenchResults of the working tree beside REF's (the baseline): ratio = working tree / REF."""
    out: list[BenchResult] = []
    baseline = f"{ref[:8]} (same run)"
    target = "issue 15: no drop beyond noise"
    for component, runs, unit, cpu_unit, what, cpu_how in (
        ("processor", processor, "events/s", "µs CPU/event", "events/s through one worker (topology)", CPU_PROCESSOR),
        ("sink", sink, "rows/s", "µs CPU/row", "rows/s from Kafka into ClickHouse (crossings)", CPU_SINK),
    ):
        if not runs:
            continue
        ref_runs = [r for r in runs if r.tree != head_label]
        head_runs = [r for r in runs if r.tree == head_label]
        a, b = summarise(ref_runs), summarise(head_runs)
        details: dict[str, Any] = {
            "ref": ref,
            "ref_commit": sha,
            "working_tree": head_label,
            "order": [f"{r.tree} round {r.round + 1}" for r in runs],
            f"{ref[:8]} {unit} by round": [round(v) for v in a.rates],
            f"working tree {unit} by round": [round(v) for v in b.rates],
            f"{ref[:8]} {cpu_unit} by round": [_round1(v) for v in a.cpu_us_by_round],
            f"working tree {cpu_unit} by round": [_round1(v) for v in b.cpu_us_by_round],
            "units_by_round": [r.units for r in runs],
            "seconds_by_round": [round(r.seconds, 2) for r in runs],
            "cpu": cpu_how,
        }
        out.append(
            BenchResult(
                component,
                f"{what}: working tree vs {ref[:8]}, interleaved",
                b.rate,
                unit,
                baseline,
                a.rate,
                f"{target}; {verdict(b.rate, a.rates, higher_is_better=True)}",
                {**details, "ratio_working_tree_to_ref": _ratio(b.rate, a.rate)},
            )
        )
        if a.cpu_us is not None and b.cpu_us is not None:
            out.append(
                BenchResult(
                    component,
                    f"CPU per {'event' if component == 'processor' else 'row'} in steady state: working tree vs"
                    f" {ref[:8]}",
                    b.cpu_us,
                    cpu_unit,
                    baseline,
                    a.cpu_us,
                    f"{target}; {verdict(b.cpu_us, a.cpu_us_by_round, higher_is_better=False)}",
                    {**details, "ratio_working_tree_to_ref": _ratio(b.cpu_us, a.cpu_us)},
                )
            )
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _round1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def processor_round(tree: str, round_: int, data: dict[str, Any]) -> Round:
    """A Round from the driver's report of one worker run (its status file's clock, the CPU samples)."""
    first, last, events = data["first_event_wall"], data["last_output_wall"], data["events"]
    seconds = last - first
    cpu = cpu_between(data["samples"], first, last)
    return Round(tree, round_, events / seconds, cpu / events * 1e6, events, seconds)


def sink_round(tree: str, round_: int, data: dict[str, Any]) -> Round:
    rows = data["rows"]
    cpu = data.get("cpu_seconds")
    seconds = data["details"].get("sink_active_seconds", rows / data["rate"])
    return Round(tree, round_, data["rate"], None if cpu is None else cpu / rows * 1e6, rows, seconds)


# --- the worktree -------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(ref: str, repo: Path = REPO_ROOT) -> str:
    """REF's commit, or a ValueError naming REF."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RuntimeError:
        raise ValueError(f"{ref!r} is not a commit of {repo}") from None


def head_label(repo: Path = REPO_ROOT) -> str:
    sha = _git(repo, "rev-parse", "HEAD")[:8]
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    return f"working tree (HEAD {sha}{' + uncommitted changes' if dirty else ''})"


@contextmanager
def worktree(ref: str, repo: Path = REPO_ROOT) -> Iterator[Path]:
    """A detached checkout of REF in a temporary directory, removed (and unregistered) afterwards."""
    sha = resolve(ref, repo)
    parent = Path(tempfile.mkdtemp(prefix="shekara-against-"))
    path = parent / sha[:12]
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        yield path
    finally:
        if path.exists():
            # --force: the run leaves nothing of its own there, but a tree with untracked files is refused
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(parent, ignore_errors=True)


# --- the driver: runs in the tree it measures ---------------------------------------------------------------

# Only this tree's modules and functions both trees have; the result goes to spec["out"] as JSON.
_DRIVER = r"""
import importlib, json, os, signal, sys, tempfile, time, uuid
from pathlib import Path

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the worker
spec = json.loads(sys.argv[1])
root = Path.cwd().resolve()
work = Path(spec["work_dir"])
PACKAGES = {"harness", "producers", "schemas", "shekara", "sinks", "streams"}


def module(*names):
    for name in names:
        if (root / (name.replace(".", "/") + ".py")).exists():
            return importlib.import_module(name)
    sys.exit(f"{root} has none of {names}")


def own_code():
    # The editable install finds the project's packages in the working tree after PYTHONPATH: a module this
    # tree lacks would come from there, and the tree would not be measured alone.
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if name.split(".")[0] in PACKAGES and path and not Path(path).resolve().is_relative_to(root):
            sys.exit(f"{name} was imported from {path}, outside {root}")


def write(data):
    own_code()  # again: modules imported on the way, lazily, count too
    Path(spec["out"]).write_text(json.dumps(data))


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid):
    # utime + stime + cutime + cstime of the process and its descendants, in seconds
    pids, total, i = [pid], 0, 0
    while i < len(pids):
        p, i = pids[i], i + 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split()]
            with open(f"/proc/{p}/stat") as f:
                total += sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])
        except OSError:
            pass
    return total / TICK


def processor():
    mod = module("harness.bench.processor", "streams.bench")
    from shekara.settings import Settings
    from streams.worker import read_status, spawn_worker

    own_code()
    s = mod._fresh_settings(Settings(), spec["tag"], work)
    if spec["what"] == "publish":
        mod._produce_all(s, mod.simulated_messages(s, spec["events"]))
        return write({"published": spec["events"]})
    name = f"{spec['tag']}-topology-{spec['round']}"
    run_settings = mod._fresh_outputs(s, f"topology-{spec['round']}")
    status, log = work / f"{name}.json", work / f"{name}.log"
    proc = spawn_worker(run_settings, app_id=f"shekara-bench-topology-{uuid.uuid4().hex[:6]}", status_file=status,
                        log_path=log)
    samples, deadline = [], time.monotonic() + spec["timeout"]
    try:
        while True:
            samples.append((time.time(), tree_cpu(proc.pid)))
            data = read_status(status)
            if data and data.get("events", 0) >= spec["events"] and data.get("last_output_wall"):
                samples.append((time.time(), tree_cpu(proc.pid)))  # after the last output for certain
                break
            if proc.poll() is not None:
                sys.exit(f"the worker exited with code {proc.returncode}: see {log}")
            if time.monotonic() > deadline:
                sys.exit(f"the worker did not get through {spec['events']} events in {spec['timeout']:.0f} s")
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except Exception:
            proc.kill()
            proc.wait()
    keys = ("events", "first_event_wall", "last_output_wall")
    write({**{k: data[k] for k in keys}, "samples": samples})


def sink():
    mod = module("harness.bench.sink", "sinks.bench")
    import sinks.sink as sk
    from shekara.settings import Settings

    own_code()
    marks = {}

    class Timed(sk.SinkStats):
        # The sink's own marks of its window (first message consumed, each batch committed), with the CPU then.
        @property
        def _first(self):
            return self.__dict__.get("_first_value")

        @_first.setter
        def _first(self, value):
            if value is not None and "first" not in marks:
                marks["first"] = time.process_time()
            self.__dict__["_first_value"] = value

        @property
        def active_seconds(self):
            return self.__dict__.get("_active_value", 0.0)

        @active_seconds.setter
        def active_seconds(self, value):
            if "first" in marks:
                marks["last"] = time.process_time()
            self.__dict__["_active_value"] = value

    sk.SinkStats = Timed
    tmp = Path(tempfile.mkdtemp(prefix="sink-", dir=work))
    first = mod.sink_throughput(mod._bench_settings(Settings(), tmp), spec["rows"])[0]
    cpu = marks["last"] - marks["first"] if "last" in marks else None
    write({"rate": first.value, "rows": spec["rows"], "cpu_seconds": cpu, "details": first.details})


sink() if spec["what"] == "sink" else processor()
"""


@dataclass(frozen=True, slots=True)
class Tree:
    label: str
    root: Path
    tag: str  # in topic and file names


def tree_env(tree: Tree, settings: Settings, work: Path) -> dict[str, str]:
    """The driver's environment: the tree's code first, its own defaults, the bench broker, a data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    data = work / tree.tag
    data.mkdir(parents=True, exist_ok=True)
    env.update(
        PYTHONPATH=str(tree.root),
        PYTHONUNBUFFERED="1",
        SHEKARA_MODE="embedded",
        SHEKARA_BROKER_URL=settings.broker_url,
        SHEKARA_DATA_DIR=str(data),
        SHEKARA_CLICKHOUSE_DSN=f"chdb://{data / 'clickhouse'}",
        SHEKARA_CONFIG=str(data / "no-such-config.toml"),  # not a shekara.toml of the caller's
    )
    return env


def drive(tree: Tree, spec: dict[str, Any], settings: Settings, work: Path, timeout: float) -> dict[str, Any]:
    """Run `_DRIVER` in `tree` with `spec`; its JSON result."""
    out = work / f"{tree.tag}-{uuid.uuid4().hex[:8]}.out.json"
    log = work / f"{tree.tag}-driver.log"
    cmd = [sys.executable, "-c", _DRIVER, json.dumps({**spec, "out": str(out), "work_dir": str(work / tree.tag)})]
    with open(log, "ab") as sink:
        proc = subprocess.Popen(cmd, cwd=tree.root, env=tree_env(tree, settings, work), stdout=sink, stderr=sink)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None:  # a timeout or Ctrl-C: SIGTERM lets it stop its worker first
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if code != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        why = "timed out" if code is None else f"exited with code {code}"
        raise RuntimeError(f"{tree.label}: {spec['what']} {why}:\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def compare(
    settings: Settings,
    ref: str,
    *,
    rounds: int,
    events: int,
    rows: int,
    say: Callable[[str], None],
    repo: Path = REPO_ROOT,
) -> list[BenchResult]:
    """The processor's and the sink's throughput of REF and of the working tree, interleaved (see the module)."""
    sha = resolve(ref, repo)
    label = head_label(repo)
    work = Path(tempfile.mkdtemp(prefix="against-", dir=settings.data_dir if settings.data_dir.exists() else None))
    processor: list[Round] = []
    sink: list[Round] = []
    try:
        with worktree(sha, repo) as ref_root:
            run_tag = uuid.uuid4().hex[:6]
            trees = [Tree(ref[:8], ref_root, f"ref{run_tag}"), Tree(label, repo, f"head{run_tag}")]
            if events:
                for tree in trees:
                    say(f"against {ref[:8]}: publishing {events:,} events for {tree.label}")
                    drive(tree, {"what": "publish", "tag": tree.tag, "events": events}, settings, work, 900)
                for n, tree in interleave(trees, rounds):
                    say(f"against {ref[:8]}: processor, {tree.label}, round {n + 1} of {rounds}")
                    timeout = max(120.0, events / 300)
                    spec = {"what": "processor", "tag": tree.tag, "events": events, "round": n, "timeout": timeout}
                    data = drive(tree, spec, settings, work, timeout + 180)
                    processor.append(processor_round(tree.label, n, data))
                    say(f"  {processor[-1].rate:,.0f} events/s, {processor[-1].cpu_us:,.1f} µs CPU/event")
            if rows:
                for n, tree in interleave(trees, rounds):
                    say(f"against {ref[:8]}: sink, {tree.label}, round {n + 1} of {rounds}")
                    data = drive(tree, {"what": "sink", "rows": rows}, settings, work, 900 + rows / 500)
                    sink.append(sink_round(tree.label, n, data))
                    cpu = sink[-1].cpu_us
                    say(f"  {sink[-1].rate:,.0f} rows/s, {'-' if cpu is None else f'{cpu:,.2f}'} µs CPU/row")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The working tree's rounds are told from REF's by label: REF's label is never the working tree's.
    return results(ref, sha, label, processor, sink)


def run(settings: Settings, quick: bool, ref: str = "HEAD", rounds: int | None = None) -> list[BenchResult]:
    """`shekara bench --against REF`: 3 rounds each (1 with `quick`), 50,000 events and 300,000 rows per round
    (quick: 20,000 and 100,000)."""
    return compare(
        settings,
        ref,
        rounds=rounds or (1 if quick else ROUNDS),
        events=20_000 if quick else PROCESSOR_EVENTS,
        rows=100_000 if quick else SINK_ROWS,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
