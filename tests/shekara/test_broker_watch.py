"""A process tells a restarted (new, empty) broker from an outage; restarts back off; reconnect noise is throttled."""

from __future__ import annotations

import logging
import threading
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from harness.faults import _fields
from shekara.admin import ensure_topics
from shekara.broker_watch import BrokerWatch, Throttle, await_topics, throttle_loggers, topic_problems
from shekara.embedded import launch
from shekara.settings import Settings, TopicNames
from streams.supervise import Backoff, exit_line


def test_backoff_doubles_to_a_ceiling_and_resets_after_a_healthy_run() -> None:
    b = Backoff(first=1.0, longest=8.0, settled=60.0)
    b.started(0.0)
    assert [b.exited(t) for t in (1.0, 2.0, 3.0, 4.0, 5.0)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    b.started(10.0)
    assert b.exited(75.0) == 1.0  # ran 65 s: healthy again
    assert b.restarts == 6
    assert exit_line("worker 0", 75, 2.0, 3) == "worker 0 exited with code 75; restarting in 2 s (restart 3)"


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, text, (), None)


def test_throttle_lets_one_line_of_a_kind_through_then_counts_the_rest() -> None:
    throttle = Throttle(every=0.2)
    lines = [f"Unable connect to node with id 111: Connect call failed ('127.0.0.1', {p})" for p in range(40000, 40050)]
    passed = [throttle.filter(_record(line)) for line in lines]
    assert passed.count(True) == 1
    assert throttle.filter(_record("Heartbeat failed: local member_id was not recognized"))  # another kind
    time.sleep(0.25)
    again = _record(lines[0])
    assert throttle.filter(again)
    assert "(and 49 more like it in" in again.getMessage()


def test_hostile_mutations_reach_every_date_and_time_field() -> None:
    from harness.simulator import SimulationConfig, simulate

    kinds: dict[str, set[tuple[str, ...]]] = {}
    wanted = {
        "Crossing": {("event_time",), ("received_time",), ("traveller", "birth_date"), ("entry_basis", "visa_expiry")},
        "Registration": {
            ("event_time",),
            ("received_time",),
            ("traveller", "birth_date"),
            ("valid_from",),
            ("valid_until",),
        },
        "StatusChange": {
            ("event_time",),
            ("received_time",),
            ("traveller", "birth_date"),
            ("valid_from",),
            ("valid_until",),
        },
    }
    for ev in simulate(SimulationConfig(days=3, seed=7, scale=0.002)):
        if ev.record is not None and type(ev.record).__name__ in wanted:
            paths = {p for p, kind in _fields(ev.record) if kind in (date, datetime)}
            kinds.setdefault(type(ev.record).__name__, set()).update(paths)
    for name, paths in wanted.items():
        assert paths <= kinds.get(name, set()), (name, kinds.get(name))


@pytest.mark.integration
def test_watch_says_once_that_a_restarted_broker_went_away(tmp_path: Path) -> None:
    broker = launch(log_path=tmp_path / "broker.log")
    try:
        settings = Settings(broker_url=broker.url, data_dir=tmp_path / "var", partitions=2)
        said: list[str] = []
        gone = threading.Event()

        def on_gone(line: str) -> None:
            said.append(line)
            gone.set()

        watch = BrokerWatch(settings, on_gone=on_gone, interval=0.5).start()
        assert watch.cluster_id == broker.cluster_id
        assert not gone.wait(2.0)  # the same broker: nothing to say
        port = broker.port
        broker.stop()
        time.sleep(1.5)  # unreachable for a while: an outage, not yet gone
        assert not gone.is_set()
        broker = launch(port, tmp_path / "broker.log")
        assert gone.wait(10.0)
        assert len(said) == 1
        assert said[0].startswith(f"broker at {settings.bootstrap_servers} went away:")
        assert broker.cluster_id in said[0]
    finally:
        broker.stop()


@pytest.mark.integration
def test_watch_asks_the_cluster_id_alone(tmp_path: Path) -> None:
    """DescribeCluster, not a Metadata request of every topic (10.5 ms CPU a check on a broker of 991 topics)."""
    broker = launch(log_path=tmp_path / "broker.log")
    try:
        settings = Settings(broker_url=broker.url, data_dir=tmp_path / "var", partitions=2)
        watch = BrokerWatch(settings, on_gone=lambda line: None).start()
        watch.stop()
        assert watch._ask() == broker.cluster_id
        assert watch.describe  # the embedded broker knows DescribeCluster: no fallback to list_topics
        port = broker.port
        broker.stop()
        assert watch._ask() is None  # unreachable: not an answer, and not taken for an old broker
        assert watch.describe
        broker = launch(port, tmp_path / "broker.log")
        assert watch._ask() == broker.cluster_id != watch.cluster_id
    finally:
        broker.stop()


@pytest.mark.integration
def test_topics_a_client_created_with_the_wrong_partition_count_stop_a_worker_in_one_line(settings: Settings) -> None:
    from confluent_kafka import Producer

    # The broker's default count is 4, as the fixture's: topics of 8 partitions here, so a created one differs.
    names = {k: f"{v}.eight" for k, v in settings.topics.model_dump().items()}
    settings = settings.model_copy(update={"partitions": 8, "topics": TopicNames(**names)})
    ensure_topics(settings)
    app = f"app-{names['crossings']}"
    assert topic_problems(settings, changelogs_of=app) == []
    producer = Producer({**settings.kafka_config(), "allow.auto.create.topics": True})
    producer.produce(f"{app}-traveller-state-changelog", b"x")  # the broker makes it with its default count
    producer.flush(10)
    problems = topic_problems(settings, changelogs_of=app)
    assert len(problems) == 1 and f"{app}-traveller-state-changelog has 4 partitions" in problems[0], problems
    with pytest.raises(SystemExit, match=r"cannot start: topic .*-traveller-state-changelog has 4 partitions"):
        await_topics(settings, timeout=5.0, changelogs_of=app)


def test_loggers_throttle_leaves_debug_lines_unformatted() -> None:
    """A healthy aiokafka client's debug lines (a repr of every response) are not formatted to tell their kind."""
    formatted: list[int] = []

    class Costly:
        def __str__(self) -> str:
            formatted.append(1)
            return "FetchResponse(...)"

    throttle = throttle_loggers(("shekara.test.throttle",), every=60.0)
    try:
        debug = logging.LogRecord("shekara.test.throttle", logging.DEBUG, "", 0, "%s", (Costly(),), None)
        assert throttle.filter(debug) and throttle.filter(debug)  # passed on untouched
        assert formatted == []
        warning = logging.LogRecord("shekara.test.throttle", logging.WARNING, "", 0, "%s", (Costly(),), None)
        assert throttle.filter(warning) and not throttle.filter(warning)  # throttled as before
        assert formatted
    finally:
        logging.getLogger("shekara.test.throttle").removeFilter(throttle)
