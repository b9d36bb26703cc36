"""A worker that takes over a partition does not send again the dead letters its predecessor already sent.

The predecessor was killed after its dead letters were acknowledged but before it committed the source offsets
(issue 15, item 4): the dead-letter topic then holds letters for offsets past the commit, and the replay must
skip them. Real embedded broker and a real worker.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness import readback
from schemas.records import Direction
from shekara.settings import Settings
from streams.outputs import Outputs, dead_letter, lettered_since
from streams.worker import spawn_worker
from tests.streams.test_poison import _encoded
from tests.streams.test_topology import NOW, crossing, worker

pytestmark = pytest.mark.integration
GARBAGE = b"\x01 not avro"


def _publish(settings: Settings, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for topic, key, value in items:
        p.produce(topic, key=key, value=value, partition=0)
    assert p.flush(20) == 0


def _letter_sent_before_the_kill(settings: Settings, topic: str, offset: int, key: bytes) -> None:
    """What a killed worker left: the dead letter of `topic`[0]@`offset`, acknowledged, and no commit."""
    outputs = Outputs(settings, client_id="killed-worker")
    outputs.dead(
        dead_letter(
            topic=topic,
            partition=0,
            offset=offset,
            key=key,
            value=GARBAGE,
            stage="decode",
            reason="bad magic byte 0x01",
            field=None,
            now=datetime.now(UTC),
        )
    )
    outputs.flush_sync(20)
    outputs.close()


def test_lettered_since_finds_letters_past_the_committed_offsets(settings: Settings) -> None:
    t = settings.topics
    _publish(settings, [(t.crossings, b"a", GARBAGE), (t.crossings, b"b", GARBAGE), (t.crossings, b"c", GARBAGE)])
    for offset, key in ((0, b"a"), (2, b"c")):
        _letter_sent_before_the_kill(settings, t.crossings, offset, key)
    # committed at 1: the letter of offset 0 is behind the commit (never replayed), that of offset 2 is not
    assert lettered_since(settings, {(t.crossings, 0): 1, (t.crossings, 1): 0}) == {(t.crossings, 0, 2)}
    assert lettered_since(settings, {(t.crossings, 0): 0}) == {(t.crossings, 0, 0), (t.crossings, 0, 2)}
    assert lettered_since(settings, {(t.crossings, 0): 3}) == set()  # all committed: nothing read


def test_outputs_skip_a_letter_already_sent(settings: Settings) -> None:
    outputs = Outputs(settings)
    outputs.lettered = {(settings.topics.crossings, 0, 5)}
    for offset in (5, 6):
        outputs.dead(
            dead_letter(
                topic=settings.topics.crossings,
                partition=0,
                offset=offset,
                key=b"k",
                value=GARBAGE,
                stage="decode",
                reason="r",
                field=None,
                now=NOW,
            )
        )
    outputs.flush_sync(20)
    outputs.close()
    assert outputs.letters_not_resent == 1
    assert [d.source_offset for d in readback.read_dead_letters(settings)] == [6]


@pytest.mark.slow
def test_a_replay_after_a_kill_leaves_one_dead_letter_per_rejected_message(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    t = s.topics
    _publish(
        s,
        [
            (t.crossings, b"poison-1", GARBAGE),  # offset 0: lettered by the killed worker, uncommitted
            _encoded(s, crossing("in-1", "PP0000001", NOW - timedelta(days=3), Direction.ENTRY)),
            (t.crossings, b"poison-2", GARBAGE),  # offset 2: the killed worker never got to it
        ],
    )
    _letter_sent_before_the_kill(s, t.crossings, 0, b"poison-1")
    topics = [t.crossings, t.registrations, t.status_changes, t.address_registrations]
    with worker(s, tmp_path, "letters-once", "replacement"):
        progress = readback.GroupProgress(s, "letters-once", topics)
        progress.wait_until_caught_up(timeout=90)
        progress.close()
        dead = readback.read_dead_letters(s)
    per_offset = sorted((d.source_topic, d.source_partition, d.source_offset) for d in dead)
    assert per_offset == [(t.crossings, 0, 0), (t.crossings, 0, 2)]  # one each: offset 0 not lettered again


@pytest.mark.slow
def test_a_worker_killed_between_its_dead_letter_and_its_commit_is_not_lettered_again(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    t = s.topics
    _publish(
        s,
        [
            (t.crossings, b"poison-1", GARBAGE),
            _encoded(s, crossing("in-1", "PP0000001", NOW - timedelta(days=3), Direction.ENTRY)),
        ],
    )
    doomed = s.model_copy()
    doomed.faust = s.faust.model_copy(update={"kill_after_dead_letters": True})
    proc = spawn_worker(doomed, app_id="letters-kill", log_path=tmp_path / "doomed.log")
    assert proc.wait(120) == -signal.SIGKILL  # killed itself right after its dead letter was acknowledged
    topics = [t.crossings, t.registrations, t.status_changes, t.address_registrations]
    progress = readback.GroupProgress(s, "letters-kill", topics)
    assert progress.committed().get((t.crossings, 0), 0) == 0  # nothing committed past the poison
    assert [d.source_offset for d in readback.read_dead_letters(s)] == [0]

    with worker(s, tmp_path, "letters-kill", "replacement"):
        progress.wait_until_caught_up(timeout=90)
        progress.close()
        dead = readback.read_dead_letters(s)
    assert [(d.source_topic, d.source_partition, d.source_offset) for d in dead] == [(t.crossings, 0, 0)]
