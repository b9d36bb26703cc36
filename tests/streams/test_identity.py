"""Identity continuity (issue 16, item 5): DOCUMENT_REPLACED links an old document to its renewal.

The contract (StatusChange v3) carries the new document; the producer client, the processors and the sink judge
it alike; the warehouse stores the new document's keyed traveller key beside the old one, and `travel_history`
given either key lists both documents' crossings. The pure link logic is in tests/streams/core/test_identity.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest

from harness import readback, samples
from harness.stack import Stack
from producers.client import EventProducer
from schemas.compat import check_compatibility
from schemas.ids import alert_id
from schemas.records import (
    Alert,
    AlertAction,
    AlertType,
    Crossing,
    Direction,
    StatusChange,
    StatusChangeKind,
    Stay,
)
from schemas.serde import schema_versions
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key, traveller_key
from shekara.settings import Settings
from sinks.analyst import query_table, saved_queries
from sinks.sink import run_sink
from streams.handoff import Handoff
from tests.sinks.test_sink_parity import Case, Parity, parity_on

T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
T_MS = int(T.timestamp() * 1000)
REPLACED = StatusChangeKind.DOCUMENT_REPLACED


def _renewal(old: str = "OLD123456", new: str = "NEW654321", **over: object) -> StatusChange:
    base = samples.status_change(
        f"renew-{old}-{new}", event_time=T, number=old, kind=REPLACED, valid_from=None, valid_until=None
    )
    return replace(base, authority="passport-office", new_document_number=new, new_document_issuing_country="UZB")


def test_v3_is_backward_compatible_and_only_its_new_symbol_is_forward_incompatible() -> None:
    v2, v3 = schema_versions()["StatusChange"][1:3]
    problems = check_compatibility(v2.path, v3.path)
    assert len(problems) == 1 and problems[0].startswith("forward") and "DOCUMENT_REPLACED" in problems[0]
    added = {f["name"]: f for f in v3.raw["fields"]}.keys() - {f["name"] for f in v2.raw["fields"]}
    assert added == {"new_document_number", "new_document_issuing_country"}
    assert all(f.get("default", "absent") is None for f in v3.raw["fields"] if f["name"] in added)


@pytest.fixture
def parity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    tmp = tmp_path_factory.mktemp("identity")  # closed after the test: chDB opens one warehouse path at a time
    with parity_on(Settings(clickhouse_dsn=f"chdb://{tmp / 'ch'}", data_dir=tmp / "var")) as p:
        yield p


@pytest.mark.integration
def test_processors_and_sink_judge_replacements_alike(parity: Parity) -> None:
    ok = _renewal()
    cases: dict[str, tuple[StatusChange, str | None]] = {
        "renewal": (ok, None),
        "renewal written with separators": (replace(ok, new_document_number="NEW-654 321"), None),
        "no new number": (replace(ok, new_document_number=None), "new_document_number"),
        "new number too short": (replace(ok, new_document_number="N-1"), "new_document_number"),
        "new number not Latin": (
            replace(ok, new_document_number="\u041d\u041e\u0412\u042b\u0419123"),
            "new_document_number",
        ),
        "no new issuing country": (replace(ok, new_document_issuing_country=None), "new_document_issuing_country"),
        "new issuing country of 2 letters": (
            replace(ok, new_document_issuing_country="UZ"),
            "new_document_issuing_country",
        ),
        "the same document again": (replace(ok, new_document_number="old 123 456"), "new_document_number"),
        "the same number from another state": (
            replace(ok, new_document_number="OLD123456", new_document_issuing_country="KGZ"),
            None,
        ),
        "a new document on another kind": (replace(ok, kind=StatusChangeKind.DOCUMENT_LOST), "new_document_number"),
        "a new country on another kind": (
            replace(ok, kind=StatusChangeKind.DOCUMENT_LOST, new_document_number=None),
            "new_document_issuing_country",
        ),
    }
    verdicts = parity.check([Case(r, parity.key(r), T_MS) for r, _ in cases.values()])  # asserts they agree
    assert {n: v and v[0] for n, v in zip(cases, verdicts, strict=True)} == {n: f for n, (_, f) in cases.items()}
    same = verdicts[list(cases).index("the same document again")]
    assert same == ("new_document_number", "new_document_number: is the document it replaces (traveller.document)")


def _crossing(event_id: str, number: str, when: datetime, direction: Direction) -> Crossing:
    c = samples.crossing(event_id, event_time=when)
    doc = replace(c.traveller.document, number=number, issuing_country="UZB")
    return replace(c, direction=direction, traveller=replace(c.traveller, document=doc, nationality="UZB"))


@pytest.mark.integration
def test_a_renewal_published_through_the_broker_links_both_histories_in_the_warehouse(settings: Settings) -> None:
    s = settings.model_copy(update={"sink": settings.sink.model_copy(update={"flush_interval": 0.2})})
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    events: list[Crossing | StatusChange] = [
        _crossing("a-in", "OLD123456", now - 40 * day, Direction.ENTRY),
        _crossing("a-out", "OLD123456", now - 20 * day, Direction.EXIT),
        replace(_renewal(), event_time=now - 10 * day, received_time=now - 10 * day),
        _crossing("b-in", "NEW654321", now - 5 * day, Direction.ENTRY),
        _crossing("b-out", "NEW654321", now - 2 * day, Direction.EXIT),
        _crossing("other-in", "OTHER12345", now - 5 * day, Direction.ENTRY),  # someone else: never listed
    ]
    with EventProducer(s, spool=False) as producer:  # validated as at any integrator's
        for e in events:
            producer.publish(e)
    stats = run_sink(s, once=True)
    assert stats.dead_lettered == stats.skipped == 0 and stats.messages == len(events)
    key = s.pseudonym_key_bytes
    old, new = traveller_key("UZB", "OLD123456", key), traveller_key("UZB", "NEW654321", key)
    links = query_table(s, "SELECT old_traveller_key, new_traveller_key FROM traveller_links").rows
    assert links == [[old, new]]
    history = saved_queries()["travel_history"]
    for given in (old, new[:12]):
        rows = query_table(s, history.sql, {"traveller_key": given}).rows
        assert [(r[2], r[-1]) for r in rows] == [("ENTRY", old), ("EXIT", old), ("ENTRY", new), ("EXIT", new)]


def _person(number: str, partitions: int) -> tuple[str, int]:
    key = partition_key("UZB", number).encode()
    return number, partition_of(key, partitions)


@pytest.mark.integration
@pytest.mark.slow
def test_an_overstay_on_the_old_passport_is_resolved_by_the_exit_on_the_new_one_across_partitions(
    settings: Settings, tmp_path: Path
) -> None:
    """Through the real broker and one worker: the old and new documents hash to different partitions, the
    renewal's handoff carries the open overstay to the new document's partition, whose exit resolves it."""
    old, new = "OLD123456", "NEW654322"
    assert _person(old, settings.partitions)[1] != _person(new, settings.partitions)[1]
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    arrival = _crossing("ov-in", old, now - 60 * day, Direction.ENTRY)  # 30 days allowed (visa-free)
    renewal = replace(_renewal(old, new), event_time=now - 20 * day, received_time=now - 20 * day)
    departure = _crossing("ov-out", new, now - 5 * day, Direction.EXIT)
    with Stack(settings, tmp_path / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        with EventProducer(settings, spool=False) as producer:
            for e in (arrival, renewal, departure):
                producer.publish(e)
        stack.wait_processed(timeout=120)
        time.sleep(1.5)  # the status file is written by the one-second tick
        [status] = stack.worker_statuses()
        alerts = readback.read_alerts(settings)
        stays = readback.read_stays(settings)
    key = settings.pseudonym_key_bytes
    person = traveller_key("UZB", old, key)  # the person keeps the first document's key
    latest: dict[str, Alert] = {}
    for a in alerts:
        latest[a.alert_id] = a
    final = {a.type: a for a in latest.values() if a.action != AlertAction.RETRACTED}
    overstay = final[AlertType.IN_COUNTRY_OVERSTAY]
    assert overstay.alert_id == alert_id(AlertType.IN_COUNTRY_OVERSTAY.value, person, "ov-in")
    assert overstay.action == AlertAction.RESOLVED
    assert AlertType.EXIT_WITHOUT_ENTRY not in final  # raised alone on the new partition at most, then retracted
    closed = [s for s in stays.values() if s.rule_id != "void" and s.exit_event_id == "ov-out"]
    assert [(s.entry_event_id, s.traveller_key, s.days_over > 0) for s in closed] == [("ov-in", person, True)]
    assert (status["handoffs_sent"], status["handoffs_merged"]) == (1, 1)


def _final(alerts: list[Alert]) -> dict[str, Alert]:
    latest: dict[str, Alert] = {}
    for a in alerts:
        latest[a.alert_id] = a
    return {i: a for i, a in latest.items() if a.action != AlertAction.RETRACTED}


@pytest.mark.integration
@pytest.mark.slow
def test_an_exit_on_the_new_passport_judged_before_the_handoff_arrives_is_retracted_under_its_own_key(
    settings: Settings, tmp_path: Path
) -> None:
    """The demo's spurious alert (seed 7, scale 0.02): the exit on the renewed passport was judged, and its
    EXIT_WITHOUT_ENTRY raised under the new document's key, before the renewal's handoff reached the new
    partition (the processors run ahead of the handoff's round trip through the broker). The merge retracted it
    under the person's key, an id never raised, so it stood. Made deterministic here: the exit is judged before
    the renewal is even published (a status change delivered late)."""
    old, new = "OLD123456", "NEW654322"
    _, new_partition = _person(new, settings.partitions)
    assert _person(old, settings.partitions)[1] != new_partition
    # Someone else on the new document's partition, a day later: moves its watermark past the exit (6 h lateness)
    pusher = next(
        n for n in (f"PUSH{i:05d}" for i in range(1000)) if _person(n, settings.partitions)[1] == new_partition
    )
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    arrival = _crossing("late-in", old, now - 40 * day, Direction.ENTRY)  # 30 days allowed (visa-free)
    departure = _crossing("late-out", new, now - 5 * day, Direction.EXIT)
    renewal = replace(_renewal(old, new), event_time=now - 20 * day, received_time=now - 20 * day)
    key = settings.pseudonym_key_bytes
    person, own = traveller_key("UZB", old, key), traveller_key("UZB", new, key)
    alone = alert_id(AlertType.EXIT_WITHOUT_ENTRY.value, own, "late-out")
    with Stack(settings, tmp_path / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        with EventProducer(settings, spool=False) as producer:
            for e in (arrival, departure, _crossing("push-in", pusher, now - day, Direction.ENTRY)):
                producer.publish(e)
        stack.wait_processed(timeout=120)
        raised = [a for a in readback.read_alerts(settings) if a.alert_id == alone]
        assert [a.action for a in raised] == [AlertAction.RAISED]  # judged alone, under the new document's key
        with EventProducer(settings, spool=False) as producer:
            producer.publish(renewal)
        stack.wait_processed(timeout=120)
        time.sleep(1.5)  # the status file is written by the one-second tick
        [status] = stack.worker_statuses()
        alerts = readback.read_alerts(settings)
        stays = readback.read_stays(settings)
    assert (status["handoffs_sent"], status["handoffs_merged"]) == (1, 1)
    assert [a.action for a in alerts if a.alert_id == alone] == [AlertAction.RAISED, AlertAction.RETRACTED]
    final = {a.type: a for a in _final(alerts).values() if a.traveller_key in (person, own)}
    assert AlertType.EXIT_WITHOUT_ENTRY not in final
    overstay = final[AlertType.IN_COUNTRY_OVERSTAY]
    assert (overstay.alert_id, overstay.action) == (
        alert_id(AlertType.IN_COUNTRY_OVERSTAY.value, person, "late-in"),
        AlertAction.RESOLVED,
    )
    assert {a.traveller_key for a in final.values()} == {person}
    live = [s for s in stays.values() if s.rule_id != "void" and s.traveller_key in (person, own)]
    assert [(s.entry_event_id, s.exit_event_id, s.traveller_key) for s in live] == [("late-in", "late-out", person)]


@pytest.mark.integration
@pytest.mark.slow
def test_a_late_upload_on_the_old_passport_after_the_handoff_reaches_the_person(
    settings: Settings, tmp_path: Path
) -> None:
    """A border agency's case: entry on A, renewal A -> B, exit on B 35 days after the entry (30 allowed: an
    overstay); then, uploaded late, an exit on A and a re-entry on A before the renewal (15 days, then 8: none).
    The late events reach A's partition after its state was handed off: not judged there, forwarded to B's
    partition and merged into the person's history, as if they had come in order."""
    old, new = "OLD123456", "NEW654322"
    assert _person(old, settings.partitions)[1] != _person(new, settings.partitions)[1]
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    arrival = _crossing("lu-in", old, now - 40 * day, Direction.ENTRY)  # 30 days allowed (visa-free)
    renewal = replace(_renewal(old, new), event_time=now - 11 * day, received_time=now - 11 * day)
    departure = _crossing("lu-out", new, now - 6 * day + timedelta(hours=9), Direction.EXIT)
    late = [
        _crossing("lu-late-out", old, now - 26 * day, Direction.EXIT),
        _crossing("lu-late-in", old, now - 13 * day, Direction.ENTRY),
    ]
    key = settings.pseudonym_key_bytes
    person, own = traveller_key("UZB", old, key), traveller_key("UZB", new, key)
    with Stack(settings, tmp_path / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        with EventProducer(settings, spool=False) as producer:
            for e in (arrival, renewal, departure):
                producer.publish(e)
        stack.wait_processed(timeout=120)
        before = _final(readback.read_alerts(settings))
        before = {a.type: a for a in _final(readback.read_alerts(settings)).values() if a.traveller_key == person}
        # 35 days on A then B, judged as one person: overstayed in the country, then left late
        assert before[AlertType.OUT_OF_COUNTRY_OVERSTAY].action == AlertAction.RAISED
        assert before[AlertType.IN_COUNTRY_OVERSTAY].action == AlertAction.RESOLVED
        with EventProducer(settings, spool=False) as producer:
            for e in late:
                producer.publish(e)
        stack.wait_processed(timeout=120)
        time.sleep(1.5)  # the status file is written by the one-second tick
        [status] = stack.worker_statuses()
        alerts = [a for a in readback.read_alerts(settings) if a.traveller_key in (person, own)]
        stays = [s for _, s in readback.read_records(settings, settings.topics.stays) if isinstance(s, Stay)]
        dead = readback.read_dead_letters(settings)
    assert dead == []
    final = _final(alerts)
    # retracted: with the late events, no stay was longer than 30 days
    assert not {a.alert_id for a in before.values() if a.type != AlertType.UNREGISTERED_STAY} & final.keys()
    kinds = {a.type for a in final.values()}
    assert not kinds & {
        AlertType.OUT_OF_COUNTRY_OVERSTAY,
        AlertType.IN_COUNTRY_OVERSTAY,
        AlertType.EXIT_WITHOUT_ENTRY,
        AlertType.DOUBLE_ENTRY,
    }
    assert {a.traveller_key for a in final.values()} <= {person}
    # nothing twice: each alert record (id, revision) once, whichever partition sent it
    assert len({(a.alert_id, a.revision) for a in alerts}) == len(alerts)
    mine = [s for s in stays if s.traveller_key in (person, own)]
    assert len({(s.stay_id, s.revision) for s in mine}) == len(mine)
    latest: dict[str, Stay] = {}
    for s in mine:
        if s.stay_id not in latest or s.revision >= latest[s.stay_id].revision:
            latest[s.stay_id] = s
    live = sorted(
        (s.entry_event_id, s.exit_event_id, s.traveller_key, s.days_over)
        for s in latest.values()
        if s.rule_id != "void"
    )
    assert live == [("lu-in", "lu-late-out", person, 0), ("lu-late-in", "lu-out", person, 0)]
    assert status["handoffs_sent"] >= 2 and status["handoffs_merged"] >= 2  # the handoff, then the forward(s)


def test_a_handoff_record_of_the_previous_format_reads_as_a_whole_state() -> None:
    """Records already on the identity-links topic when the processors are upgraded (format 1, no `late` flag)."""
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    state = b"state-bytes"
    before = msgpack.packb((1, "renew-1", "old-key", "new-key", int(at.timestamp() * 1_000_000), state))
    assert Handoff.from_bytes(before) == Handoff("renew-1", "old-key", "new-key", at, state, late=False)
    late = Handoff("renew-1", "old-key", "new-key", at, state, late=True)
    assert Handoff.from_bytes(late.to_bytes()) == late
    with pytest.raises(ValueError, match="identity handoff format 9 is not one of"):
        Handoff.from_bytes(msgpack.packb((9, "renew-1", "old-key", "new-key", 0, state, False)))


@pytest.mark.integration
@pytest.mark.slow
def test_a_late_upload_on_the_first_passport_follows_a_chain_of_renewals(settings: Settings, tmp_path: Path) -> None:
    """A -> B -> C, both handoffs merged, the exit on C judged (34 days: an overstay); then a late exit and re-entry
    on A. A's retired state forwards them to B's partition, B's retired state passes them on to C's, where they
    join the person's history: no overstay, two stays, under A's key (the person's) only."""
    old, mid = "OLD123456", "NEW654322"
    parts = settings.partitions
    taken = {_person(old, parts)[1], _person(mid, parts)[1]}
    assert len(taken) == 2
    last = next(n for n in (f"THIRD{i:04d}" for i in range(1000)) if _person(n, parts)[1] not in taken)
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    events: list[Crossing | StatusChange] = [
        _crossing("ch-in", old, now - 40 * day, Direction.ENTRY),  # 30 days allowed (visa-free)
        replace(_renewal(old, mid), event_time=now - 12 * day, received_time=now - 12 * day),
        replace(_renewal(mid, last), event_time=now - 10 * day, received_time=now - 10 * day),
        _crossing("ch-out", last, now - 6 * day, Direction.EXIT),
    ]
    late = [
        _crossing("ch-late-out", old, now - 26 * day, Direction.EXIT),
        _crossing("ch-late-in", old, now - 13 * day, Direction.ENTRY),
    ]
    key = settings.pseudonym_key_bytes
    person = traveller_key("UZB", old, key)
    keys = {person, traveller_key("UZB", mid, key), traveller_key("UZB", last, key)}
    with Stack(settings, tmp_path / "stack", workers=1, sink=False, embedded_broker=False) as stack:
        with EventProducer(settings, spool=False) as producer:
            for e in events:
                producer.publish(e)
        stack.wait_processed(timeout=120)
        before = {a.type for a in _final(readback.read_alerts(settings)).values() if a.traveller_key == person}
        assert AlertType.OUT_OF_COUNTRY_OVERSTAY in before  # the chain judged as one person
        with EventProducer(settings, spool=False) as producer:
            for e in late:
                producer.publish(e)
        stack.wait_processed(timeout=120)
        alerts = [a for a in readback.read_alerts(settings) if a.traveller_key in keys]
        stays = readback.read_stays(settings)
        dead = readback.read_dead_letters(settings)
    assert dead == []
    final = _final(alerts)
    assert not {a.type for a in final.values()} & {
        AlertType.OUT_OF_COUNTRY_OVERSTAY,
        AlertType.IN_COUNTRY_OVERSTAY,
        AlertType.EXIT_WITHOUT_ENTRY,
    }
    assert {a.traveller_key for a in final.values()} <= {person}
    assert len({(a.alert_id, a.revision) for a in alerts}) == len(alerts)
    live = sorted(
        (s.entry_event_id, s.exit_event_id, s.traveller_key)
        for s in stays.values()
        if s.rule_id != "void" and s.traveller_key in keys
    )
    assert live == [("ch-in", "ch-late-out", person), ("ch-late-in", "ch-out", person)]
