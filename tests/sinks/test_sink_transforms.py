"""The sink's ClickHouse side against the real engine (chDB): staging, SQL transforms, dedup, failures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from harness import samples
from schemas.records import Checkpoint, CheckpointKind, Crossing, DeadLetter, Direction, HostKind, Stay
from schemas.serde import Serde
from shekara.pseudonym import partition_key, pseudonymise, traveller_key
from shekara.rules import load_rules
from shekara.settings import Settings
from sinks.batch import Assembler, BatchPlan, Message, plan_batch
from sinks.clickhouse import connect
from sinks.framing import Framer
from sinks.migrate import migrate
from sinks.writer import INCLUDE, TRANSFORMS_DIR, TransientWriteError, Warehouse, WriteResult, routes, transform_sql

pytestmark = pytest.mark.integration


@dataclass
class Env:
    settings: Settings
    client: Client
    warehouse: Warehouse
    serde: Serde
    offsets: dict[tuple[str, int], int]

    def messages(self, records: list, partition: int = 0) -> list[Message]:
        """Messages as producers send them: source events keyed by their partition key (see `key_of`)."""
        out = []
        for r in records:
            topic = _topic_of(self.settings, r)
            offset = self.offsets.get((topic, partition), 0)
            self.offsets[(topic, partition)] = offset + 1
            out.append(Message(topic, partition, offset, self.key_of(r), self.serde.encode(r, topic)))
        return out

    def key_of(self, record: object) -> bytes | None:
        traveller = getattr(record, "traveller", None)
        if traveller is None:
            return None
        doc = traveller.document
        return partition_key(doc.issuing_country, doc.number).encode()

    def write(self, messages: list[Message], group: str = "test") -> tuple[BatchPlan, WriteResult]:
        a = Assembler(len(messages) or 1, 0.0)
        a.add(messages, 0.0)
        batch, intent = a.take(group, 0.0)
        plan = plan_batch(batch, intent, routes(self.settings), Framer(self.settings))
        return plan, self.warehouse.write(plan)

    def scalar(self, sql: str) -> object:
        return self.client.query(sql).result_rows[0][0]


def _topic_of(settings: Settings, record: object) -> str:
    t = settings.topics
    return {
        "Crossing": t.crossings,
        "Registration": t.registrations,
        "StatusChange": t.status_changes,
        "Stay": t.stays,
        "Alert": t.alerts,
        "DeadLetter": t.dead_letter,
    }[type(record).__name__]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    # One partition: every key belongs on partition 0, where these messages are (the rejects check the partition).
    settings = Settings(clickhouse_dsn=f"chdb://{tmp_path / 'ch'}", data_dir=tmp_path / "var", partitions=1)
    client = connect(settings)
    try:
        migrate(client)
        wh = Warehouse(client, settings, Framer(settings).explain)
        wh.load_rules(load_rules(settings.rules_file), settings.rules_file.read_bytes())
        yield Env(settings, client, wh, Serde.from_settings(settings), {})
    finally:
        client.close()


def test_crossings_are_pseudonymised_exactly_like_python(env: Env):
    numbers = ["n 123-456", "AB\u00a0123.456/7", "ab\u3000123456"]  # ß: refused (schemas.validation.NOT_LATIN)
    records = [samples.crossing(f"e{i}", number=n, nationality="KGZ") for i, n in enumerate(numbers)]
    env.write(env.messages(records))
    got = dict(env.client.query("SELECT event_id, traveller_key FROM crossings").result_rows)
    key = env.settings.pseudonym_key_bytes
    assert got == {f"e{i}": traveller_key("KGZ", n, key) for i, n in enumerate(numbers)}
    # the document number itself is nowhere in the warehouse
    for n in ("123456", "N123456"):
        assert env.scalar(f"SELECT count() FROM crossings WHERE position(toString(tuple(*)), '{n}') > 0") == 0


def test_registrations_pseudonymise_host_and_address(env: Env):
    r = samples.registration("r1", host_id="hotel-7", address="Астана, Кенесары 40")
    env.write(env.messages([r]))
    host, address, tk = env.client.query("SELECT host_key, address_key, traveller_key FROM registrations").result_rows[
        0
    ]
    key = env.settings.pseudonym_key_bytes
    assert host == pseudonymise("hotel-7", key, "host")
    assert address == pseudonymise("Астана, Кенесары 40", key, "address")
    assert tk == traveller_key("UZB", "N1234567", key)


def test_the_pads_are_put_back_on_a_session_that_lost_them_and_never_taken_as_empty(env: Env):
    key = env.settings.pseudonym_key_bytes
    env.write(env.messages([samples.crossing("e1", number="N1111111")]))
    env.client.command("DROP TEMPORARY TABLE _pseudonym_pads")  # as on a new session (server restart, expiry)
    env.write(env.messages([samples.crossing("e2", number="N2222222")]))
    # Lost between staging and storing: the transform fails (retried, staging afresh), it does not hash with
    # empty pads.
    a = Assembler(1, 0.0)
    a.add(env.messages([samples.crossing("e3", number="N3333333")]), 0.0)
    batch, intent = a.take("test", 0.0)
    staged = env.warehouse.stage(plan_batch(batch, intent, routes(env.settings), Framer(env.settings)))
    env.client.command("DROP TEMPORARY TABLE _pseudonym_pads")
    with pytest.raises(TransientWriteError, match="_pseudonym_pads"):
        env.warehouse.store(staged)
    env.warehouse.store(env.warehouse.stage(staged.plan))
    got = dict(env.client.query("SELECT event_id, traveller_key FROM crossings").result_rows)
    assert got == {f"e{i}": traveller_key("UZB", "N" + str(i) * 7, key) for i in (1, 2, 3)}


def test_the_same_batch_twice_is_stored_once_in_tables_and_views(env: Env):
    messages = env.messages([samples.crossing(f"e{i}") for i in range(50)])
    env.write(messages)
    env.write(messages)  # same offsets, same token: a retry after an unknown outcome
    assert env.scalar("SELECT count() FROM crossings") == 50  # physically, not just after FINAL
    assert env.scalar("SELECT sum(crossings) FROM daily_flows") == 50
    assert env.scalar("SELECT sum(entries) FROM monthly_balance") == 50


def test_duplicates_from_producers_and_rereads_are_not_counted_twice(env: Env):
    records = [samples.crossing(f"e{i}") for i in range(100)]
    first = env.messages(records[:60])
    env.write(first)
    # a producer re-sent events 40..59 (new offsets), and a re-read batch starts in the middle of the old one
    again = env.messages(records[40:100])
    env.write(first[30:] + again)
    assert env.scalar("SELECT count() FROM crossings") == 100
    assert env.scalar("SELECT uniqExact(event_id) FROM crossings") == 100
    assert env.scalar("SELECT sum(crossings) FROM daily_flows") == 100
    # duplicates inside one batch too
    dup = env.messages([samples.crossing("twice"), samples.crossing("twice")])
    env.write(dup)
    assert env.scalar("SELECT count() FROM crossings WHERE event_id = 'twice'") == 1


def test_older_writer_versions_are_resolved(env: Env):
    from io import BytesIO

    import fastavro

    from schemas.convert import to_avro
    from schemas.serde import SINGLE_OBJECT_MAGIC, schema_versions

    old = schema_versions()["Crossing"][0]
    record = {
        k: v for k, v in to_avro(samples.crossing("old-one")).items() if k in {f["name"] for f in old.raw["fields"]}
    }
    buf = BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + old.fingerprint)
    fastavro.schemaless_writer(buf, old.parsed, record)
    key = env.key_of(samples.crossing("old-one"))
    plan, result = env.write([Message(env.settings.topics.crossings, 0, 0, key, buf.getvalue())])
    assert not plan.rejected and not result.rejected
    assert env.scalar("SELECT checkpoint_id FROM crossings WHERE event_id = 'old-one'") == "KZ-UZ-ZHIBEK-ZHOLY"


def test_rows_that_can_never_be_stored_are_rejected_with_the_field(env: Env):
    good = samples.crossing("good")
    no_id = replace(samples.crossing("x0"), event_id="")
    no_doc = samples.crossing("x1", number=" - ")
    topic = env.settings.topics.crossings
    corrupt = env.serde.encode(samples.crossing("cut"), topic)[:-30]
    messages = [*env.messages([good, no_id, no_doc]), Message(topic, 0, 99, b"key", corrupt)]
    plan, result = env.write(messages)
    rejected = {r.message.offset: r for r in plan.rejected + result.rejected}
    assert set(rejected) == {1, 2, 99}
    assert rejected[1].field == "event_id" and "event_id: must be a non-empty string" in rejected[1].reason
    assert rejected[2].field == "traveller.document.number"
    assert rejected[99].stage == "decode" and "corrupt" in rejected[99].reason
    assert env.client.query("SELECT event_id FROM crossings").result_rows == [("good",)]


def test_a_row_clickhouse_refuses_is_isolated_and_the_rest_stored(env: Env):
    # A constraint the sink does not check in SQL: ClickHouse refuses the row, bisection finds it.
    env.client.command("ALTER TABLE crossings ADD CONSTRAINT plausible_birth CHECK birth_year >= 1950")
    ok = [samples.crossing(f"ok{i}") for i in range(20)]
    old = samples.crossing("older", traveller=samples.traveller(birth_date=samples.NOW.date().replace(year=1940)))
    _plan, result = env.write(env.messages([*ok[:7], old, *ok[7:]]))
    assert [r.message.offset for r in result.rejected] == [7]
    assert "VIOLATED_CONSTRAINT" in result.rejected[0].reason or "plausible_birth" in result.rejected[0].reason
    assert env.scalar("SELECT count() FROM crossings") == 20
    assert env.scalar("SELECT sum(crossings) FROM daily_flows") == 20


@pytest.mark.faults
def test_clickhouse_unavailable_is_transient_and_the_retry_is_exact(env: Env):
    messages = env.messages([samples.crossing(f"e{i}") for i in range(10)])
    env.client.command("DETACH TABLE daily_flows")  # the view's target is gone: every insert fails
    with pytest.raises(TransientWriteError):
        env.write(messages)
    env.client.command("ATTACH TABLE daily_flows")
    env.write(messages)
    assert env.scalar("SELECT count() FROM crossings") == 10
    assert env.scalar("SELECT sum(crossings) FROM daily_flows") == 10


def test_stay_revisions_latest_wins_and_stale_ones_are_ignored(env: Env):
    open_stay = samples.stay("s1", 0, entry_time=samples.NOW - timedelta(days=40))
    closed = replace(
        open_stay, revision=1, exit_time=samples.NOW, exit_event_id="x", exit_checkpoint="KZ-KG-KORDAI", days_over=11
    )
    env.write(env.messages([open_stay]))
    assert env.client.query("SELECT outcome, sum(stays) FROM stay_outcomes GROUP BY outcome").result_rows == [
        ("OPEN", 1)
    ]
    env.write(env.messages([closed]))
    env.write(env.messages([open_stay]))  # a stale revision arriving late changes nothing
    assert env.client.query("SELECT revision, outcome, prev_outcome FROM stays FINAL").result_rows == [
        (1, "LATE", "OPEN")
    ]
    outcomes = env.client.query(
        "SELECT outcome, sum(stays), sum(days_over) FROM stay_outcomes GROUP BY outcome HAVING sum(stays) != 0"
    ).result_rows
    assert outcomes == [("LATE", 1, 11)]


def test_void_stay_takes_back_the_stay_it_supersedes(env: Env):
    # Late data showed the stay never existed: the core re-emits it with the next revision, rule "void", no
    # events and no times, but the same anchor time, so the sink finds the stored revision on its anchor day.
    entry = samples.NOW - timedelta(days=40)
    open_stay = samples.stay("s3", 0, entry_time=entry)
    void = replace(
        open_stay,
        revision=1,
        entry_event_id=None,
        entry_time=None,
        entry_checkpoint=None,
        days=0,
        allowed_days=None,
        rule_id="void",
    )
    env.write(env.messages([open_stay]))
    env.write(env.messages([void]))
    assert env.client.query("SELECT revision, outcome, prev_outcome, anchor_date FROM stays FINAL").result_rows == [
        (1, "VOID", "OPEN", entry.date())  # 09:30 UTC is 14:30 the same day in Almaty
    ]
    counted = env.client.query("SELECT sum(stays) FROM stay_outcomes").result_rows[0][0]
    assert counted == 0


def test_stays_in_one_batch_keep_the_newest_revision(env: Env):
    s0 = samples.stay("s2", 0)
    s1: Stay = replace(s0, revision=1, allowed_days=90)
    env.write(env.messages([s1, s0]))
    assert env.client.query("SELECT revision, allowed_days FROM stays").result_rows == [(1, 90)]


def test_registration_deadlines_come_from_the_rules_file(env: Env):
    # Arrival Monday 5 Jan 2026; working days after it: Tue 6, (Wed 7 is Orthodox Christmas, a public holiday
    # in Kazakhstan), Thu 8, Fri 9: the deadline is Friday 9 January.
    arrival = samples.NOW.replace(year=2026, month=1, day=5)
    on_time = samples.registration("on", event_time=arrival + timedelta(days=2), valid_from=arrival.date())
    late = samples.registration("late", event_time=arrival + timedelta(days=6), valid_from=arrival.date())
    eaeu = samples.registration(
        "eaeu", nationality="RUS", event_time=arrival + timedelta(days=20), valid_from=arrival.date()
    )
    env.write(env.messages([on_time, late, eaeu]))
    rows = {
        r[0]: r[1:] for r in env.client.query("SELECT event_id, deadline, days_late FROM registrations").result_rows
    }
    deadline = date(2026, 1, 9)
    assert rows["on"] == (deadline, 0)
    assert rows["late"] == (deadline, 2)  # filed Sunday 11 January
    assert rows["eaeu"][1] == 0  # EAEU: 30 days exempt first


def test_crossing_without_conveyance_and_airport_checkpoint(env: Env):
    c: Crossing = samples.crossing(
        "air",
        checkpoint=Checkpoint("KZ-AIR-ALA", CheckpointKind.AIR, None),
        conveyance=None,
        direction=Direction.EXIT,
        migration_card_number="MC1",
    )
    env.write(env.messages([c]))
    row = env.client.query(
        "SELECT border_country, conveyance_kind, carrier, has_migration_card FROM crossings"
    ).result_rows[0]
    assert row == ("", "", "", True)


def test_host_kind_enum_passes_through(env: Env):
    env.write(env.messages([samples.registration("h", host_kind=HostKind.EMPLOYER)]))
    assert env.scalar("SELECT host_kind FROM registrations") == "EMPLOYER"


def test_confluent_wire_format_goes_through_the_same_path(env: Env):
    registry = env.settings.model_copy(update={"schema_registry_url": "mock://sink-transforms"})
    topic = env.settings.topics.crossings
    value = Serde.from_settings(registry).encode(samples.crossing("via-registry"), topic)
    assert value[0] == 0  # Confluent framing: magic 0 + schema id
    a = Assembler(1, 0.0)
    a.add([Message(topic, 0, 0, env.key_of(samples.crossing()), value)], 0.0)
    batch, intent = a.take("test", 0.0)
    plan = plan_batch(batch, intent, routes(env.settings), Framer(registry))
    assert not plan.rejected
    env.warehouse.write(plan)
    assert env.scalar("SELECT count() FROM crossings WHERE event_id = 'via-registry'") == 1


def test_bit_flipped_records_are_rejected_or_stored_never_misattributed(env: Env):
    # A flipped byte in a length or a varint makes ClickHouse read a record of another length: the trailer
    # after it (and every record after it in the block) is then garbage. Each flip below must end as a
    # stored row or a rejection of that very message, and the good records around it must all be stored.
    import random

    rnd = random.Random(7)
    topic = env.settings.topics.crossings
    good = [samples.crossing(f"g{i}") for i in range(30)]
    messages = env.messages(good)
    flipped: list[Message] = []
    for i in range(60):
        record = samples.crossing(f"f{i}")
        value = bytearray(env.serde.encode(record, topic))
        at = rnd.randrange(10, len(value))
        value[at] ^= rnd.randrange(1, 256)
        flipped.append(Message(topic, 0, 1000 + i, env.key_of(record), bytes(value)))
    mixed = [m for pair in zip(messages, flipped, strict=False) for m in pair] + messages[len(flipped) :] + flipped[30:]
    plan, result = env.write(mixed)
    rejected = {r.message.offset for r in plan.rejected + result.rejected}
    stored = {str(e) for (e,) in env.client.query("SELECT event_id FROM crossings").result_rows}
    assert {f"g{i}" for i in range(30)} <= stored
    assert not rejected & set(range(30)), "a good record was blamed for a corrupt one"
    # Every flipped message is either refused with a reason or stored as one event of its own (a flip inside
    # a text field can leave a valid event): nothing vanishes, nothing is stored twice.
    refused = rejected & {m.offset for m in flipped}
    assert refused, "no flip was caught: the test exercises nothing"
    assert len(stored) == 30 + len(flipped) - len(refused)
    assert all(r.reason for r in plan.rejected + result.rejected)


def test_hundreds_of_corrupt_records_in_one_batch_are_screened_not_bisected(env: Env):
    # Hostile input: one batch with 400 corrupt records among 1,600 good ones. Bisection alone would need
    # thousands of inserts (more than its budget: the batch would be retried for ever); decoding the refused
    # group once finds them all.
    topic = env.settings.topics.crossings
    good = env.messages([samples.crossing(f"ok{i}") for i in range(1600)])
    bad = []
    for i in range(400):
        record = samples.crossing(f"bad{i}")
        value = env.serde.encode(record, topic)
        bad.append(Message(topic, 1, i, env.key_of(record), value[: len(value) // 2]))
    mixed = [m for k, g in enumerate(good) for m in ([g, bad[k // 4]] if k % 4 == 0 else [g])]
    plan, result = env.write(mixed)
    rejected = plan.rejected + result.rejected
    assert len(rejected) == 400 and all(r.stage == "decode" and r.reason for r in rejected)
    assert {r.message.partition for r in rejected} == {1}
    assert env.scalar("SELECT count() FROM crossings") == 1600


def test_a_dead_letters_reason_lands_without_the_value_it_quotes(env: Env):
    # Analysts read dead_letters; the processors' reasons quote the value at fault, which may be a traveller's.
    letter = DeadLetter(
        source_topic=env.settings.topics.crossings,
        source_partition=0,
        source_offset=41,
        key=b"k",
        value=b"IVANOV",
        stage="validate",
        reason="traveller.birth_date: is outside the accepted dates 1900-01-01..2100-12-31; got 1850-02-03",
        field="traveller.birth_date",
        rejected_time=datetime(2026, 6, 1, tzinfo=UTC),
    )
    env.write(env.messages([letter, replace(letter, source_offset=42, reason="empty message")]))
    rows = env.client.query("SELECT source_offset, reason FROM dead_letters ORDER BY source_offset").result_rows
    assert rows == [
        (41, "traveller.birth_date: is outside the accepted dates 1900-01-01..2100-12-31"),
        (42, "empty message"),
    ]


def test_every_transform_is_read_with_its_includes_in_place() -> None:
    """The screen and the judging query of crossings read the values both use from one file (`-- include:`)."""
    for path in sorted(TRANSFORMS_DIR.glob("*.sql")):
        assert not INCLUDE.search(transform_sql(path.stem)), f"{path.name}: an include left unresolved"
    checked = transform_sql("crossings.checked")
    for name in ("crossings.screen", "crossings.rejects"):
        assert INCLUDE.search((TRANSFORMS_DIR / f"{name}.sql").read_text()), f"{name}.sql no longer includes it"
        assert checked in transform_sql(name)
