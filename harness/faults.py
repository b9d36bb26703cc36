"""`shekara faults`: the whole pipeline under faults, and the proof that nothing was lost or counted twice.

Each scenario runs on a fresh stack (embedded broker, processor worker, ClickHouse sink in `var/faults/NAME`)
fed with simulated traffic, injects its fault mid-run, lets everything catch up, then checks:

- every accepted event is in ClickHouse exactly once (rows and distinct ids per fact table);
- every expected alert is found, nothing spurious (the simulator's ground truth, as `shekara evaluate`);
- every alert record on the topic is in ClickHouse once (distinct id, revision and action), and nothing else is (after a
  broker replacement: on either broker's topic);
- every rejected message is in the dead-letter topic with a reason (counted by source offset);
- every source offset reached a processor, in every worker process of the run (`streams.positions`).

Scenarios: `processor-kill` and `sink-kill` (SIGKILL mid-run, then a new process), `broker-outage` (the
producer's link to the broker cut for a while: it spools to disk and drains), `clickhouse-failures` (inserts
refused for a while: the sink retries), `hostile-input` (malformed and hostile payloads fuzzed with
hypothesis, mixed into the traffic).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import Producer

from harness.readback import AlertRecord
from shekara.logs import get_logger
from shekara.settings import Limits, Settings, get_settings

log = get_logger(__name__)

CUT_AFTER_MESSAGES = 2_000  # broker-outage: the producer's link is cut once it was handed this many messages
SCENARIOS = (
    "processor-kill",
    "sink-kill",
    "broker-outage",
    "clickhouse-failures",
    "hostile-input",
    "rebalance",
    "long-outage",
    "broker-restart",
)
PACED_S = 40.0  # rebalance, long-outage: publishing spread over this many seconds, so the fault meets traffic


@dataclass
class Check:
    name: str
    expected: int | float
    found: int | float
    ok: bool
    note: str = ""


@dataclass
class ScenarioResult:
    name: str
    done: list[str] = field(default_factory=list)  # what the fault did, in words with figures
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    injected: bool = True  # False: the fault never happened (the run proves nothing)

    @property
    def ok(self) -> bool:
        return self.error is None and self.injected and bool(self.checks) and all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Size:
    days: int
    scale: float
    hostile: int

    @staticmethod
    def of(short: bool) -> Size:
        return Size(days=7, scale=0.01, hostile=1_000) if short else Size(days=21, scale=0.02, hostile=100_000)


# --- the run every scenario shares ------------------------------------------------------------------------


@dataclass
class Run:
    """One scenario's stack, traffic and bookkeeping."""

    name: str
    settings: Settings
    work_dir: Path
    size: Size
    sim_config: Any = None
    expected: list[Any] = field(default_factory=list)
    malformed: int = 0
    published: int = 0
    accepted: Counter[str] = field(default_factory=Counter)  # valid events by kind ("crossing", ...)
    rejected_extra: int = 0  # hostile payloads expected to be rejected
    hostile_ids: set[str] = field(default_factory=set)  # event ids of hostile payloads that are valid events
    hostile_travellers: set[str] = field(default_factory=set)  # traveller keys those events belong to
    spooled: int = 0  # events the producer client spooled to disk (broker unreachable)
    unsent: int = 0  # events the producer client still held when publishing ended
    # Alert records (id, action) the alerts topic of a replaced broker held: landed before it went, so the
    # warehouse keeps them, though the new broker's topic knows nothing of them.
    replaced_alerts: set[AlertRecord] = field(default_factory=set)
    result: ScenarioResult | None = None

    @classmethod
    def prepare(cls, name: str, base: Settings, size: Size) -> Run:
        from harness.evaluate import EvaluationConfig, ground_truth, simulation_config

        work_dir = base.data_dir / "faults" / name
        if work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        settings = base.model_copy(
            update={"data_dir": work_dir / "var", "clickhouse_dsn": f"chdb://{work_dir / 'clickhouse'}"}
        )
        run = cls(name, settings, work_dir, size)
        run.sim_config = simulation_config(EvaluationConfig(days=size.days, scale=size.scale), settings)
        run.expected, run.malformed = ground_truth(run.sim_config)
        run.result = ScenarioResult(name)
        return run

    def say(self, line: str) -> None:
        assert self.result is not None
        self.result.done.append(line)
        log.info("fault", scenario=self.name, what=line)

    def missed(self) -> None:
        assert self.result is not None
        self.result.injected = False

    def publish(
        self, settings: Settings, progress: Callable[[float, int], None] | None = None, *, paced: bool = False
    ) -> None:
        """Publish the run's traffic; `progress` receives (fraction, messages handed to the producer) as it goes.

        `paced`: spread over `PACED_S` seconds instead of as fast as possible."""
        from harness.simulator import publish

        speed = self.size.days * 86_400 / PACED_S if paced else None
        summary = publish(self.sim_config, settings, speed=speed, progress=progress or False)
        self.published += summary.messages
        self.accepted.update(summary.events)
        self.spooled += summary.producer.get("spooled", 0)
        self.unsent += summary.unsent


def _committed(settings: Settings, group: str, topics: list[str]) -> int:
    from harness.readback import GroupProgress

    progress = GroupProgress(settings, group, topics)
    try:
        return sum(progress.committed().values())
    except Exception:  # the group may be rebalancing: nothing known yet
        return 0
    finally:
        progress.close()


def _when(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def _in_background(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


def _join(thread: threading.Thread, errors: list[BaseException], timeout: float = 900.0) -> None:
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError("publishing did not finish")
    if errors:
        raise errors[0]


# --- checks -----------------------------------------------------------------------------------------------


def check_outputs(run: Run, stack: Any) -> tuple[list[Check], set[AlertRecord]]:
    """Checks while the stack runs: alerts vs the ground truth, rejections vs dead letters, delivery to processors."""
    from harness import readback
    from harness.evaluate import DEFAULT_MARGIN
    from harness.scoring import final_alerts, score
    from shekara.rules import load_rules
    from sinks.dead_letters import tally

    settings = stack.settings
    alerts = readback.read_alerts(settings)
    final = final_alerts(alerts)
    rules = load_rules(settings.rules_file)
    end = rules.day_start(run.sim_config.start + timedelta(days=run.size.days))
    cutoff = end - timedelta(seconds=settings.allowed_lateness_seconds) - DEFAULT_MARGIN
    # Valid hostile events are new events the ground truth knows nothing of: the alerts of the travellers they
    # touch (found or expected), and any alert they are evidence of, are not judged.
    touched = run.hostile_travellers
    caused = {i for i, a in final.items() if a.traveller_key in touched or run.hostile_ids & set(a.evidence_event_ids)}
    expected = [e for e in run.expected if e.traveller_key not in touched]
    left_out = len(run.expected) - len(expected)
    s = score(expected, {i: a for i, a in final.items() if i not in caused}, cutoff)
    t = settings.topics
    sources = {t.crossings, t.registrations, t.status_changes}
    letters = readback.read_dead_letters(settings)
    once = tally(letters)  # by source coordinates: a second dead letter of one message is a failure
    # Refused at the door (decode, validate: the processors' own; the sink leaves those out): must be exactly
    # what was sent bad.
    # A valid event the matcher cannot apply (stage "process", e.g. older than a traveller's retained
    # history) is dead-lettered too, with its reason, and reported beside.
    rejected = {
        (d.source_topic, d.source_partition, d.source_offset)
        for d in letters
        if d.source_topic in sources and d.stage != "process"
    }
    no_reason = sum(1 for d in letters if not d.reason.strip())
    expected_rejected = run.malformed + run.rejected_extra
    wanted = {e.alert_id: e for e in expected}
    missed = [
        f"{wanted[i].type} {i} traveller {wanted[i].traveller_key} due {wanted[i].due_time:%Y-%m-%d %H:%M}"
        for i in s.missed_ids
    ]
    spurious = [f"{final[i].type} {i} traveller {final[i].traveller_key}: {final[i].reason}" for i in s.spurious_ids]
    checks = [
        Check(
            "expected alerts found (recall)",
            s.true_positives + s.missed,
            s.true_positives,
            s.missed == 0,
            f"{s.recall:.3f}"
            + (f"; {left_out} of hostile-touched travellers left out" if left_out else "")
            + "".join(f"; missed {m}" for m in missed),
        ),
        Check(
            "no spurious alerts (precision)",
            0,
            s.spurious,
            s.spurious == 0,
            f"{s.precision:.3f}"
            + (f"; {len(caused)} of hostile-touched travellers not judged" if caused else "")
            + "".join(f"; spurious {m}" for m in spurious),
        ),
        Check(
            "rejected messages dead-lettered, each with a reason",
            expected_rejected,
            len(rejected),
            len(rejected) == expected_rejected and no_reason == 0,
            ", ".join(f"{k}: {v}" for k, v in sorted(Counter(d.stage for d in letters).items())),
        ),
        Check("each rejected message dead-lettered once", 0, once.twice, once.twice == 0, once.line()),
        check_delivery(stack),
    ]
    return checks, {(a.alert_id, a.revision, a.action.value) for a in alerts}


def check_warehouse(run: Run, settings: Settings, alert_pairs: set[AlertRecord]) -> list[Check]:
    """Checks in ClickHouse (after the sink stopped): every accepted event and alert record exactly once."""
    from sinks.clickhouse import connect

    tables = {"crossing": "crossings", "registration": "registrations", "status_change": "status_changes"}
    client = connect(settings, readonly=True)
    try:
        checks = []
        for kind, table in tables.items():
            rows, distinct = client.query(f"SELECT count(), uniqExact(event_id) FROM {table} FINAL").result_rows[0]
            accepted = run.accepted.get(kind, 0)
            checks.append(
                Check(
                    f"accepted {table} in ClickHouse exactly once",
                    accepted,
                    rows,
                    rows == distinct == accepted,
                    f"{distinct:,} distinct ids",
                )
            )
        landed = {
            (str(a), int(r), str(b))
            for a, r, b in client.query("SELECT alert_id, revision, action FROM alerts FINAL").result_rows
        }
    finally:
        client.close()
    checks.append(alert_records_check(alert_pairs, run.replaced_alerts, landed))
    return checks


def alert_records_check(on_topic: set[AlertRecord], replaced: set[AlertRecord], landed: set[AlertRecord]) -> Check:
    """Every alert record (id, revision, action) that either broker's topic carried landed, and nothing else.

    `replaced`: the records of a broker that was replaced mid-run. The replay on its successor re-raises the
    same ids (deterministic), but not necessarily the same transient records: an immediate alert raised on
    an out-of-order arrival and RETRACTED once the earlier event came (FICTITIOUS_ADDRESS anchored on the
    wrong registration) depends on the arrival order, which differs between the two runs. Those records were
    real (notified, shown): the warehouse keeps them, and must.
    """
    wanted = on_topic | replaced
    missing, extra = len(wanted - landed), len(landed - wanted)
    only_replaced = len(replaced - on_topic)
    return Check(
        "alert records in ClickHouse exactly once",
        len(wanted),
        len(landed),
        landed == wanted,
        f"{missing} missing, {extra} extra"
        + (f"; {only_replaced} only on the replaced broker's topic" if only_replaced else ""),
    )


def verdicts_check(settings: Settings, final: set[str]) -> Check:
    """The warehouse's verdict on each alert (its current state, view alert_states, not RETRACTED) is the final
    alert set's.

    After a broker replacement the warehouse holds the records of both runs: this shows the ones only the
    replaced broker carried (transient alerts, raised and retracted) change no verdict."""
    from sinks.clickhouse import connect

    client = connect(settings, readonly=True)
    try:
        standing = {
            str(a) for (a,) in client.query("SELECT alert_id FROM alert_states WHERE action != 'RETRACTED'").result_rows
        }
    finally:
        client.close()
    missing, extra = len(final - standing), len(standing - final)
    return Check(
        "alerts standing in ClickHouse are the final alert set",
        len(final),
        len(standing),
        standing == final,
        f"{missing} missing, {extra} extra",
    )


def finish(run: Run, stack: Any) -> None:
    """Wait for everything to be processed and landed, then check the topics and the warehouse."""
    assert run.result is not None
    stack.wait_processed()
    stack.wait_landed()
    checks, pairs = check_outputs(run, stack)
    stack.stop_sink()
    run.result.checks = checks + check_warehouse(run, stack.settings, pairs)


def check_delivery(stack: Any) -> Check:
    """Every source offset reached a processor (`streams.positions`), in every worker process of the run."""
    statuses = stack.worker_statuses()
    skipped = sum(int(st.get("offsets_skipped", 0)) for st in statuses)
    duplicates = sum(int(st.get("duplicates_dropped", 0)) for st in statuses)
    return Check(
        "source offsets never delivered to a processor",
        0,
        skipped,
        skipped == 0 and bool(statuses),
        f"{len(statuses)} worker process(es); {duplicates} duplicate deliveries dropped",
    )


# --- scenarios --------------------------------------------------------------------------------------------


def processor_kill(run: Run) -> None:
    from harness.stack import Stack

    with Stack(run.settings, run.work_dir) as stack:
        thread, errors = _in_background(lambda: run.publish(stack.settings))
        sources = stack.source_topics[:3]
        target = 20_000 if run.size.days > 7 else 3_000
        if _when(lambda: _committed(stack.settings, stack.app_id, sources) >= target, 300):
            done = _committed(stack.settings, stack.app_id, sources)
            stack.kill_worker(0)
            run.say(f"worker killed with SIGKILL after the group committed {done:,} source messages; restarted")
        else:
            run.say("the worker never reached the kill point: no kill")
            run.missed()
        _join(thread, errors)
        finish(run, stack)


def sink_kill(run: Run) -> None:
    from harness.stack import Stack

    with Stack(run.settings, run.work_dir) as stack:
        thread, errors = _in_background(lambda: run.publish(stack.settings))
        group, topics = stack.settings.sink.group_id, stack.sink_topics
        target = 30_000 if run.size.days > 7 else 4_000
        if _when(lambda: _committed(stack.settings, group, topics) >= target, 300):
            done = _committed(stack.settings, group, topics)
            stack.kill_sink()
            run.say(f"sink killed with SIGKILL after it committed {done:,} messages; restarted")
        else:
            run.say("the sink never reached the kill point: no kill")
            run.missed()
        _join(thread, errors)
        finish(run, stack)


class Proxy:
    """A TCP proxy in front of the broker that can cut one Kafka client off (by its client.id) while others pass.

    Every client reaches the broker through it (the broker advertises the proxy's port). A Kafka connection's
    first request names the client (request header: api key, version, correlation id, client id), so the
    proxy reads that header, then pipes bytes both ways. `cut(client_id)` drops that client's connections and
    refuses its new ones until `restore()`: to that client the broker is unreachable, to the rest it is not.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._cut: Callable[[str], bool] = lambda _: False
        self._conns: list[tuple[str, socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            head = _recv_exactly(client, 14)  # size(4) api_key(2) api_version(2) correlation_id(4) id_len(2)
            id_len = int.from_bytes(head[12:14], "big", signed=True)
            name = _recv_exactly(client, max(id_len, 0))
            client_id = name.decode("utf-8", "replace")
            with self._lock:
                if self._cut(client_id):
                    self.refused += 1
                    client.close()
                    return
                server = socket.create_connection(self.upstream)
                self._conns.append((client_id, client, server))
            server.sendall(head + name)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(server, client), daemon=True).start()
        _pipe(client, server)

    def cut(self, client_id: str | None, *, spare: frozenset[str] = frozenset()) -> None:
        """Cut `client_id` off, or with None every client but those in `spare`."""

        def doomed_id(name: str) -> bool:
            return name == client_id if client_id is not None else name not in spare

        with self._lock:
            self._cut = doomed_id
            doomed = [c for c in self._conns if doomed_id(c[0])]
            self._conns = [c for c in self._conns if not doomed_id(c[0])]
        for _, a, b in doomed:
            for s in (a, b):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        with self._lock:
            self._cut = lambda _: False

    def close(self) -> None:
        with suppress(OSError):
            self.listener.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with suppress(OSError):
                s.close()


PRODUCER_CLIENT_ID = "shekara-simulator"  # the simulator's EventProducer (the spooling client)


def broker_outage(run: Run) -> None:
    from harness.stack import Stack
    from shekara.embedded import free_port

    outage_s = 20.0 if run.size.days > 7 else 10.0
    broker_port = free_port()
    proxy = Proxy(broker_port)
    try:
        with Stack(run.settings, run.work_dir, advertised_port=proxy.port, broker_port=broker_port) as stack:
            handed = [0]  # messages handed to the producer so far (reported every 2,000)
            thread, errors = _in_background(lambda: run.publish(stack.settings, lambda _, n: handed.__setitem__(0, n)))
            # Cut once publishing is under way, not a fixed 3 s after it started: once (in CI) the producer had
            # nothing queued at the cut and nothing came after it, so the outage tested nothing.
            _when(lambda: handed[0] >= CUT_AFTER_MESSAGES or not thread.is_alive(), 300)
            if not thread.is_alive() or handed[0] < CUT_AFTER_MESSAGES:
                run.say(f"publishing was not under way at the cut ({handed[0]:,} messages handed to the producer)")
                run.missed()
            proxy.cut(PRODUCER_CLIENT_ID)
            started = time.monotonic()
            time.sleep(outage_s)
            proxy.restore()
            run.say(
                f"the broker unreachable to the producer for {time.monotonic() - started:.1f} s mid-publish "
                f"({proxy.refused} connection attempts refused), then reachable again"
            )
            _join(thread, errors)
            run.say(f"producer: {run.spooled:,} events spooled to disk during the outage, {run.unsent:,} left unsent")
            finish(run, stack)
            assert run.result is not None
            run.result.checks.append(
                Check(
                    "the outage made the producer spool, and the spool drained",
                    0,
                    run.unsent,
                    run.spooled > 0 and run.unsent == 0,
                    f"{run.spooled:,} spooled",
                )
            )
    finally:
        proxy.close()


def clickhouse_failures(run: Run) -> None:
    """The sink runs in this process, its inserts refused for a while (as a ClickHouse outage would)."""
    from harness.stack import Stack
    from sinks import writer
    from sinks.sink import run_sink

    fail_s = 12.0 if run.size.days > 7 else 6.0
    failing = threading.Event()
    refused = Counter[str]()
    stored = threading.Event()  # a first batch landed: the sink is consuming
    original = writer.Warehouse.store  # what the sink calls to insert a staged batch (`write` it never calls)

    def store(self: Any, staged: Any) -> Any:
        if failing.is_set():
            refused["inserts"] += 1
            raise writer.TransientWriteError("injected: ClickHouse refuses inserts")
        stored.set()
        return original(self, staged)

    with Stack(run.settings, run.work_dir, sink=False) as stack:
        stop = threading.Event()
        writer.Warehouse.store = store  # type: ignore[method-assign]
        sink_thread, sink_errors = _in_background(lambda: run_sink(stack.settings, stop=stop))
        try:
            thread, errors = _in_background(lambda: run.publish(stack.settings))
            stored.wait(60)  # refuse while traffic flows, not after the short run's traffic has all landed
            failing.set()
            time.sleep(fail_s)
            failing.clear()
            run.say(f"ClickHouse inserts refused for {fail_s:.0f} s: {refused['inserts']} insert attempts failed")
            _join(thread, errors)
            stack.wait_processed()
            stack.wait_landed()
            checks, pairs = check_outputs(run, stack)
        finally:
            stop.set()
            sink_thread.join(120)
            writer.Warehouse.store = original  # type: ignore[method-assign]
        if sink_errors:
            raise sink_errors[0]
        assert run.result is not None
        run.result.checks = checks + check_warehouse(run, stack.settings, pairs)


def hostile_input(run: Run) -> None:
    from harness.stack import Stack

    with Stack(run.settings, run.work_dir) as stack:
        payloads = hostile_payloads(run, stack.settings, run.size.hostile)
        thread, errors = _in_background(lambda: run.publish(stack.settings))
        valid = _send_raw(stack.settings, payloads)
        _join(thread, errors)
        run.rejected_extra = len(payloads) - sum(valid.values())
        run.accepted.update(valid)
        run.hostile_ids = {p.event_id for p in payloads if p.valid_kind is not None and p.event_id}
        run.hostile_travellers = {p.key.decode() for p in payloads if p.valid_kind is not None and p.key}
        run.say(
            f"{len(payloads):,} hostile payloads fuzzed with hypothesis sent among the traffic: "
            f"{run.rejected_extra:,} invalid, {sum(valid.values()):,} valid ({dict(valid)}); "
            f"{sum(1 for p in payloads if len(p.key or b'') + len(p.value) > 100_000)} of them over 100 KB, "
            f"the largest {max(len(p.key or b'') + len(p.value) for p in payloads):,} bytes"
        )
        finish(run, stack)


def rebalance(run: Run) -> None:
    """A second worker joins the group mid-run, later the first is killed: two rebalances, both ways."""
    from harness.stack import Stack
    from streams.worker import read_status

    with Stack(run.settings, run.work_dir) as stack:
        done = [0.0]
        thread, errors = _in_background(
            lambda: run.publish(stack.settings, lambda f, _: done.__setitem__(0, f), paced=True)
        )
        if not _when(lambda: done[0] >= 0.15, 120):
            run.say("publishing never got under way: no rebalance")
            run.missed()
        else:
            added = stack.add_worker()
            joined = _committed(stack.settings, stack.app_id, stack.source_topics[:3])
            status = stack.work_dir / f"worker-{added}.json"
            owns = _when(lambda: bool((read_status(status) or {}).get("partitions")), 120)
            shared = len((read_status(status) or {}).get("partitions", []))
            run.say(
                f"a second worker joined once the group had committed {joined:,} source messages: "
                f"it got {shared} partitions"
            )
            if owns and _when(lambda: done[0] >= 0.6 or not thread.is_alive(), 300) and thread.is_alive():
                stack.retire_worker(0)
                run.say(
                    f"worker 0 killed with SIGKILL at {done[0]:.0%} of publishing: "
                    f"its partitions went to worker {added}"
                )
            else:
                run.say("the second worker got no partitions, or publishing ended first: no kill")
                run.missed()
        _join(thread, errors)
        finish(run, stack)
        assert run.result is not None
        statuses = stack.worker_statuses()
        run.result.checks.append(
            Check(
                "both workers processed source events",
                2,
                sum(1 for st in statuses if int(st.get("events", 0)) > 0),
                len(statuses) >= 2 and all(int(st.get("events", 0)) > 0 for st in statuses),
                ", ".join(f"pid {st.get('pid')}: {int(st.get('events', 0)):,} events" for st in statuses),
            )
        )


def _outage_s(run: Run) -> float:
    """Longer than the session timeout: the group has evicted every member by the time the link returns."""
    return run.settings.faust.session_timeout * (2.5 if run.size.days <= 7 else 5.0)


def long_outage(run: Run) -> None:
    """The broker unreachable for every client (processors, sink, producer) for longer than the session timeout."""
    from harness.stack import Stack
    from shekara.embedded import free_port

    outage_s = _outage_s(run)
    broker_port = free_port()
    proxy = Proxy(broker_port)
    try:
        with Stack(run.settings, run.work_dir, advertised_port=proxy.port, broker_port=broker_port) as stack:
            done = [0.0]
            thread, errors = _in_background(
                lambda: run.publish(stack.settings, lambda f, _: done.__setitem__(0, f), paced=True)
            )
            if not _when(lambda: done[0] >= 0.3 or not thread.is_alive(), 120) or not thread.is_alive():
                run.say("publishing was not under way at the cut")
                run.missed()
            proxy.cut(None)
            started = time.monotonic()
            time.sleep(outage_s)
            proxy.restore()
            run.say(
                f"the broker unreachable to every client for {time.monotonic() - started:.1f} s (session timeout "
                f"{run.settings.faust.session_timeout:.0f} s) at {done[0]:.0%} of publishing; "
                f"{proxy.refused} connection attempts refused"
            )
            _join(thread, errors)
            finish(run, stack)
            run.say(
                f"producer: {run.spooled:,} events spooled; processes that exited and were restarted: "
                + ("; ".join(stack.exits) if stack.exits else "none")
            )
            assert run.result is not None
            run.result.checks.append(
                Check("events left unsent by the producer", 0, run.unsent, run.unsent == 0, f"{run.spooled:,} spooled")
            )
    finally:
        proxy.close()


FAULT_ADMIN_ID = "shekara-faults-admin"  # the client that makes the new broker's topics while the rest wait


def _make_topics(settings: Settings, port: int, before: dict[str, int]) -> None:
    """The catalogue's topics on the broker listening on `port`, made by a client the proxy lets through.

    And the other topics the old broker had (`before`: name -> partitions; the tables' changelogs Faust made):
    a worker's client would otherwise create them by using them, with the broker's default count.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    from shekara.topics import catalogue

    direct = settings.model_copy(update={"broker_url": f"kafka://127.0.0.1:{port}"})  # not through the proxy
    admin = AdminClient({**direct.kafka_config(), "client.id": FAULT_ADMIN_ID})
    topics = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, config=t.config)
        for t in catalogue(settings)
    ]
    compact = {"cleanup.policy": "compact"}
    topics += [
        NewTopic(name, num_partitions=n, replication_factor=1, config=compact if name.endswith("-changelog") else {})
        for name, n in before.items()
        if name not in {t.topic for t in topics}
    ]
    for future in admin.create_topics(topics, operation_timeout=10).values():
        future.result()


def broker_restart(run: Run) -> None:
    """The embedded broker stopped and a new one started on its port (memory only: empty) after the traffic landed.

    Every worker and the sink must say in one line that the broker went away and exit; the stack restarts
    them; the same traffic published again to the new broker is processed and landed (the warehouse keeps
    each event and alert once: the replay has the same ids).
    """
    from harness.readback import read_alerts
    from harness.scoring import final_alerts
    from harness.stack import Stack
    from shekara.admin import admin_client
    from shekara.embedded import free_port

    broker_port = free_port()
    proxy = Proxy(broker_port)
    try:
        with Stack(run.settings, run.work_dir, advertised_port=proxy.port, broker_port=broker_port) as stack:
            run.publish(stack.settings)
            stack.wait_processed()
            stack.wait_landed()
            # Clients held off until the new broker has its topics: one using a topic first would create it
            # with the broker's default partition count (a worker then refuses to start, in one line).
            listed = admin_client(stack.settings).list_topics(timeout=10).topics
            before = {name: len(t.partitions) for name, t in listed.items()}
            # Read at the last moment before the broker (memory only) takes them away: the warehouse has them.
            run.replaced_alerts = {(a.alert_id, a.revision, a.action.value) for a in read_alerts(stack.settings)}
            proxy.cut(None, spare=frozenset({FAULT_ADMIN_ID}))
            started = time.monotonic()
            stack.restart_broker(
                3.0, make_topics=lambda: _make_topics(stack.settings, broker_port, before), release=proxy.restore
            )
            run.say(
                f"broker stopped after all {run.published:,} messages landed, a new one started 3 s later; the "
                f"worker and the sink had exited {time.monotonic() - started:.1f} s after the stop"
            )
            run.accepted.clear()  # the same events again: the warehouse must still hold each once
            run.publish(stack.settings)
            finish(run, stack)
            final = set(final_alerts(read_alerts(stack.settings)))  # all processed: the sink alone stopped
            assert run.result is not None
            run.result.checks.append(verdicts_check(stack.settings, final))
            run.say("restarted by the stack: " + "; ".join(stack.exits))
            logs = [*sorted(stack.work_dir.glob("worker-*.log")), stack.work_dir / "sink.log"]
            said = {p.name: p.read_text(errors="replace").count("went away") for p in logs}
            assert run.result is not None
            run.result.checks.append(
                Check(
                    "each worker and the sink said once that the broker went away",
                    len(said),
                    sum(1 for n in said.values() if n == 1),
                    all(n == 1 for n in said.values()),
                    ", ".join(f"{k}: {v}" for k, v in said.items()),
                )
            )
    finally:
        proxy.close()


# --- hostile payloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    topic: str
    key: bytes | None
    value: bytes
    valid_kind: str | None  # "crossing" etc. when the intake must accept it, else None
    event_id: str | None = None  # of a valid one


def hostile_payloads(run: Run, settings: Settings, n: int) -> list[Payload]:
    """`n` payloads drawn by hypothesis: garbage, truncated or bit-flipped Avro, hostile field values."""
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from harness.simulator import simulate
    from schemas.records import Registration
    from schemas.serde import Serde

    serde = Serde()
    base: list[Any] = []
    for ev in simulate(run.sim_config):
        if ev.record is not None:
            base.append(ev.record)
        if len(base) >= 400:
            break
    t = settings.topics
    topics = {"Crossing": t.crossings, "Registration": t.registrations, "StatusChange": t.status_changes}
    text = (
        st.text(min_size=0, max_size=40)
        | st.sampled_from(["", " ", "\x00", "Ωмир", "A" * 300, "12A", "ru", *HOSTILE_TEXT])
        | st.text(st.characters(categories=["Cc", "Cf", "Zs", "Mn", "Co"]), max_size=12)  # control, bidi, marks
        | st.tuples(st.sampled_from(HOSTILE_TEXT), st.text(max_size=8)).map("".join)
    )
    days = st.integers(min_value=-60_000, max_value=60_000).map(lambda d: timedelta(days=d))
    big_left = [max(5, n // 2_000)]  # MB-size payloads: a few in the short run, 50 in 100,000
    out: list[Payload] = []

    def draw(data: Any) -> None:
        record = data.draw(st.sampled_from(base))
        topic = topics[type(record).__name__]
        how = data.draw(st.sampled_from(["garbage", "truncate", "flip", "field", "field", "field", "topic", "big"]))
        if how == "big":  # drawn the same whatever the quota (hypothesis replays draws): kept while it lasts
            big = _big(record, topic, data, serde, settings)
            if big.valid_kind is None and big_left[0] > 0:  # trailing bytes a decoder ignores: a known event
                big_left[0] -= 1
                out.append(big)
            return
        if how == "garbage":
            out.append(Payload(topic, b"k", data.draw(st.binary(max_size=120)), None))
            return
        value = serde.encode(record, topic)
        if how == "truncate":
            cut = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
            out.append(Payload(topic, _key(record, settings), value[:cut], None))
            return
        if how == "flip":
            at = data.draw(st.integers(min_value=10, max_value=len(value) - 1))
            flipped = value[:at] + bytes([value[at] ^ data.draw(st.integers(1, 255))]) + value[at + 1 :]
            payload = _classified(topic, _key(record, settings), flipped, serde, settings)
            if payload.valid_kind is None:  # a flip that leaves a valid event is not hostile: it is not sent
                out.append(payload)
            return
        if how == "topic":  # a valid record on a topic that carries another type
            other = data.draw(st.sampled_from([x for x in topics.values() if x != topic]))
            out.append(Payload(other, _key(record, settings), value, None))
            return
        # A new event (its own id): the system must treat it as any other, which the checks can then tell.
        mutated = replace(_mutate(record, data, text, days), event_id=f"hostile-{len(out):05d}")
        if isinstance(mutated, Registration):  # an address of its own: it must not change a real address's count
            mutated = replace(mutated, address=f"{len(out)} Hostile street")
        try:
            encoded = serde.encode(mutated, topic)
        except Exception:
            return  # not encodable at all: the client would refuse it before any broker saw it
        out.append(_classified(topic, _key(mutated, settings), encoded, serde, settings))

    # Flips that leave a valid event are not sent: draw again until there are `n` payloads.
    while len(out) < n:
        hsettings(
            max_examples=n - len(out),
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )(given(st.data())(draw))()
    del out[n:]
    return out


def _key(record: Any, settings: Settings) -> bytes | None:
    from producers.client import key_for

    try:
        return key_for(record)
    except Exception:
        return b"no-key"


# Look-alikes and invisible or reordering characters: confusables (ß, Cyrillic and Greek capitals, a ligature,
# full-width digits), control characters, bidi overrides and isolates, zero-width joiners, a BOM.
HOSTILE_TEXT = (
    "STRAßE",
    "\u0410\u0412\u0421123",  # Cyrillic A, B, C
    "\u0391\u0392\u0395",  # Greek A, B, E
    "\ufb01le",  # the fi ligature
    "\uff11\uff12\uff13",  # full-width digits
    "\x1b[31m",
    "\x07\x08\x7f",
    "\u202eevil\u202c",
    "\u2066x\u2069",
    "a\u200bb\u200d",
    "\ufeffKZ",
    "e\u0301",
    "\r\n",
)
# The largest message the broker takes (librdkafka's and Kafka's default message.max.bytes), less framing.
MESSAGE_MAX_BYTES = 1_000_000 - 1_024


def _big(record: Any, topic: str, data: Any, serde: Any, settings: Settings) -> Payload:
    """A key or a value of up to a megabyte: over the processors' limits, under the broker's."""
    from hypothesis import strategies as st

    value = serde.encode(record, topic)
    what = data.draw(st.sampled_from(["key", "value", "both"]))
    size = data.draw(st.integers(min_value=settings.limits.max_key_bytes + 1, max_value=MESSAGE_MAX_BYTES // 2))
    key = _key(record, settings) or b""
    if what in ("key", "both"):
        key = (key * (size // max(1, len(key)) + 1))[:size]
    if what in ("value", "both"):
        room = MESSAGE_MAX_BYTES - len(key) - len(value)
        value += data.draw(st.binary(min_size=16, max_size=64)) * (room // 64)  # trailing bytes: not one record
    return _classified(topic, key, value, serde, settings)


def _mutate(record: Any, data: Any, text: Any, days: Any) -> Any:
    """One hostile change to one field: any date or time (shifted, or at and past the limits), any text."""
    from hypothesis import strategies as st

    paths = _fields(record)
    path, kind = data.draw(st.sampled_from(paths))
    old = _get(record, path)
    if kind is str:
        return _set(record, path, data.draw(text))
    early, late = Limits().earliest_date, Limits().latest_date
    edges = [date.min, date.max, early, early - timedelta(days=1), late, late + timedelta(days=1)]
    if kind is date:
        shifted = [old + d for d in [data.draw(days)] if old is not None and date.min < old + d < date.max]
        return _set(record, path, data.draw(st.sampled_from(edges + shifted)))
    moments = [datetime.combine(d, datetime.min.time(), UTC) for d in edges[2:]]
    moments += [datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)]
    if old is not None:
        moments.append(old + data.draw(days) / 100)
    return _set(record, path, data.draw(st.sampled_from(moments)))


def _fields(record: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type]]:
    """(path, date | datetime | str) of every date, time and text field of a record, nested ones included.

    Ids and the registration's address are left out: the run gives a hostile event its own of both.
    """
    from dataclasses import fields, is_dataclass
    from typing import get_args, get_type_hints

    out: list[tuple[tuple[str, ...], type]] = []
    hints = get_type_hints(type(record))
    for f in fields(record):
        value = getattr(record, f.name)
        kinds = {hints[f.name], *get_args(hints[f.name])}
        if is_dataclass(value):
            out += _fields(value, (*prefix, f.name))
        elif datetime in kinds:
            out.append(((*prefix, f.name), datetime))
        elif date in kinds:
            out.append(((*prefix, f.name), date))
        elif str in kinds and f.name not in ("event_id", "address"):
            out.append(((*prefix, f.name), str))
    return out


def _get(record: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        record = getattr(record, name)
    return record


def _set(record: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(record, **{path[0]: value})
    return replace(record, **{path[0]: _set(getattr(record, path[0]), path[1:], value)})


def _classified(topic: str, key: bytes | None, value: bytes, serde: Any, settings: Settings) -> Payload:
    """What the intake must do with it: decode, check the type and key, validate against the send time."""
    from schemas.validation import validation_errors

    kinds = {"Crossing": "crossing", "Registration": "registration", "StatusChange": "status_change"}
    t = settings.topics
    on = {"Crossing": t.crossings, "Registration": t.registrations, "StatusChange": t.status_changes}
    limits = settings.limits
    if len(value) > limits.max_value_bytes or (key is not None and len(key) > limits.max_key_bytes):
        return Payload(topic, key, value, None)
    try:
        record = serde.decode(value, topic)
    except Exception:
        return Payload(topic, key, value, None)
    name = type(record).__name__
    if on.get(name) != topic or key != _key(record, settings):
        return Payload(topic, key, value, None)
    now = datetime.now(UTC)
    bad = validation_errors(record, now=now, max_future_skew_s=settings.max_future_skew_seconds, limits=limits)
    return Payload(topic, key, value, None if bad else kinds[name], None if bad else record.event_id)


def _send_raw(settings: Settings, payloads: list[Payload]) -> Counter[str]:
    producer = Producer({**settings.kafka_config(), "linger.ms": 20, "acks": "all"})
    for p in payloads:
        while True:
            try:
                producer.produce(p.topic, key=p.key, value=p.value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} hostile payloads not acknowledged by the broker")
    # A valid event sent twice (the fuzzer drew the same record and change twice) lands once.
    seen: dict[str | None, str] = {p.event_id: p.valid_kind for p in payloads if p.valid_kind is not None}
    return Counter(seen.values())


# --- the command ------------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Run], None]] = {
    "processor-kill": processor_kill,
    "sink-kill": sink_kill,
    "broker-outage": broker_outage,
    "clickhouse-failures": clickhouse_failures,
    "hostile-input": hostile_input,
    "rebalance": rebalance,
    "long-outage": long_outage,
    "broker-restart": broker_restart,
}


def run_scenario(name: str, base: Settings, *, short: bool) -> ScenarioResult:
    started = time.monotonic()
    run = Run.prepare(name, base, Size.of(short))
    assert run.result is not None
    try:
        RUNNERS[name](run)
    except Exception as exc:
        log.error("fault scenario failed", scenario=name, error=repr(exc))
        run.result.error = f"{type(exc).__name__}: {exc}"
    run.result.seconds = time.monotonic() - started
    return run.result


def render(results: list[ScenarioResult]) -> Iterator[str]:
    for r in results:
        verdict = "PASS" if r.ok else "FAIL"
        yield f"{r.name}: {verdict} ({r.seconds:.0f} s)" + ("" if r.injected else ": the fault was not injected")
        for line in r.done:
            yield f"  fault: {line}"
        if r.error:
            yield f"  error: {r.error}"
        for c in r.checks:
            note = f" ({c.note})" if c.note else ""
            yield f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: expected {c.expected:,}, found {c.found:,}{note}"
    passed = sum(r.ok for r in results)
    yield f"{passed}/{len(results)} scenarios passed"


def register(app: typer.Typer) -> None:
    app.command()(faults)


def faults(
    short: Annotated[bool, typer.Option("--short", help="Smaller traffic: the form CI runs")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help=f"Scenarios to run: {', '.join(SCENARIOS)}")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the results here")] = None,
) -> None:
    """Run the pipeline under faults (kills, outages, hostile input) and check nothing was lost or doubled."""
    names = list(only or SCENARIOS)
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        typer.secho(f"error: unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}", fg="red")
        raise typer.Exit(2)
    base = get_settings()
    results = []
    for name in names:
        typer.echo(f"running {name} ...")
        results.append(run_scenario(name, base, short=short))
    for line in render(results):
        typer.echo(line)
    if json_file is not None:
        json_file.write_text(json.dumps([asdict(r) | {"ok": r.ok} for r in results], indent=2, default=str))
    if not all(r.ok for r in results):
        raise typer.Exit(1)
