"""Retention on the real engine (chDB): a TTL on every table with personal or host data, the 5-year rule for the
crossings of overstays (the sink's sweep), and TTLs that land in the future for any date a row can hold."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Producer

from harness import samples
from schemas.records import Direction
from schemas.serde import Serde
from shekara.pseudonym import partition_key
from shekara.settings import Settings
from sinks.clickhouse import connect
from sinks.migrate import MIGRATIONS_DIR, migrate
from sinks.retention import mark_overstay_exits
from sinks.sink import run_sink

pytestmark = pytest.mark.integration

# Reference data and the migration record: no person, no host, nothing derived from one.
WITHOUT_PERSONAL_DATA = {"schema_migrations", "registration_deadlines", "nationality_groups", "checkpoints"}
# Dates a valid_until / visa expiry / allowed_until (Date32) can hold, from its documented ends (1900-01-01,
# 2299-12-31; toDate32 keeps 9999-12-31 too) to the end of Date (2149-06-06), where toDate() and + years wrap.
BOUNDARY_DAYS = [
    "1900-01-01",
    "1969-12-31",
    "2140-01-01",
    "2146-12-31",
    "2147-06-01",
    "2149-06-06",
    "2149-06-07",
    "2150-01-01",
    "2299-12-31",
    "9999-12-31",
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(Settings(clickhouse_dsn=f"chdb://{tmp_path / 'ch'}"))
    try:
        migrate(c)
        yield c
    finally:
        c.close()


def ttl_of(client: Client, table: str) -> str:
    engine = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows[0][0]
    found = re.search(r"\bTTL (.+?)(?: SETTINGS .*)?$", engine)
    assert found, f"{table} has no TTL: {engine}"
    return found.group(1)


def ttl_days(client: Client, table: str, key: str) -> dict[str, date]:
    """The TTL expression of `table` as the engine computes it, for each row (by `key`)."""
    rows = client.query(f"SELECT toString({key}), {ttl_of(client, table)} FROM {table}").result_rows
    return {k: d for k, d in rows}


def test_every_table_with_personal_or_host_data_has_a_ttl(client: Client) -> None:
    tables = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
    ).result_rows
    names = {name for name, _ in tables}
    assert {"crossings", "stays", "registration_compliance", "stay_outcomes", "daily_flows", "alert_counts"} <= names
    missing = sorted(name for name, engine in tables if " TTL " not in engine and name not in WITHOUT_PERSONAL_DATA)
    assert missing == []


def test_ttls_of_far_dates_land_in_the_future(client: Client) -> None:
    """A visa or registration valid "until 2299" is kept, never deleted by a TTL that wrapped into the past."""
    values = ", ".join(
        f"('{d}', now(), now(), today(), 'REGISTERED', 'k', toDate32('{d}'), toDate32('{d}'), 'b')"
        for d in BOUNDARY_DAYS
    )
    client.command(
        "INSERT INTO registrations (event_id, event_time, received_time, event_date, action, traveller_key,"
        f" valid_from, valid_until, _batch) VALUES {values}"
    )
    client.command(
        "INSERT INTO status_changes (event_id, event_time, received_time, event_date, kind, traveller_key,"
        " valid_until, _batch) VALUES "
        + ", ".join(f"('{d}', now(), now(), today(), 'VISA', 'k', toDate32('{d}'), 'b')" for d in BOUNDARY_DAYS)
    )
    client.command(
        "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key,"
        " visa_expiry, _batch) VALUES "
        + ", ".join(f"('{d}', now(), now(), today(), 'ENTRY', 'k', toDate32('{d}'), 'b')" for d in BOUNDARY_DAYS)
    )
    client.command(
        "INSERT INTO stays (stay_id, revision, anchor_date, entry_time, exit_time, allowed_until, days_over, outcome,"
        " nationality, entry_checkpoint, _batch) VALUES "
        + ", ".join(
            f"('{d}', 1, today(), now(), NULL, toDate32('{d}'), 0, 'OPEN', 'UZ', 'KZ-ZHZ', 'b')" for d in BOUNDARY_DAYS
        )
        # An exit time far out: DateTime64 runs to 2299 too.
        + ", ('exit-2299', 1, today(), now(), toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), NULL, 9, 'LATE',"
        " 'UZ', 'KZ-ZHZ', 'b')"
    )
    today = client.query("SELECT today()").result_rows[0][0]
    for table, key in [
        ("registrations", "event_id"),
        ("status_changes", "event_id"),
        ("crossings", "event_id"),
        ("stays", "stay_id"),
        ("stay_outcomes", "allowed_until"),  # the aggregate the stays feed
    ]:
        days = ttl_days(client, table, key)
        if table == "stay_outcomes":
            # Keyed by the last allowed day alone: a stay allowed until 1900 is rightly long expired there.
            assert sorted(days) == [d for d in BOUNDARY_DAYS if d >= "2140"], table
        else:
            assert sorted(days) == sorted(BOUNDARY_DAYS + (["exit-2299"] if table == "stays" else [])), table
        past = {k: d for k, d in days.items() if d <= today}
        assert past == {}, f"{table}: TTL in the past for {past}"
        # And the engine agrees: a TTL merge deletes none of them.
        client.command(f"OPTIMIZE TABLE {table} FINAL")
        assert client.query(f"SELECT count() FROM {table}").result_rows[0][0] == len(days), table
    # Far dates are clamped, not wrapped: the latest TTL is the clamp (2144-01-01) plus the retention.
    assert max(ttl_days(client, "registrations", "event_id").values()) == date(2147, 1, 1)
    assert ttl_days(client, "registrations", "event_id")["2140-01-01"] == date(2143, 1, 1)
    assert max(ttl_days(client, "status_changes", "event_id").values()) == date(2149, 1, 1)


def test_the_boundary_days_hit_the_overflow_the_clamp_avoids(client: Client) -> None:
    """Without the clamp (the TTLs before migration 008) these days land in the past: the test above bites."""
    wrapped = client.query(
        "SELECT toDate(toDate32('2149-06-07')) + toIntervalYear(3) < today(),"
        " toDate(toDate32('2147-06-01')) + toIntervalYear(3) < today(),"
        " toDate('2148-01-01') + toIntervalYear(5) < today()"
    ).result_rows[0]
    assert wrapped == (True, True, True)


def _wait_for_mutations(client: Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.query(
        "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND NOT is_done"
    ).result_rows[0][0]:
        assert time.monotonic() < deadline, "mutation not done"
        time.sleep(0.1)


def test_exit_crossings_of_an_overstay_keep_five_years(client: Client) -> None:
    """3 years after exit, 5 for an overstayer: the sweep marks the exit of a stay with days_over > 0."""

    def crossing(event_id: str, direction: str, years: int = 2, overstay: bool = False) -> str:
        day = f"today() - INTERVAL {years} YEAR"
        return (
            f"('{event_id}', toDateTime64({day}, 3, 'UTC') + INTERVAL 12 HOUR, now(), {day}, '{direction}', 'k',"
            f" {str(overstay).lower()}, 'b')"
        )

    def stay(stay_id: str, revision: int, exit_id: str, days_over: int) -> str:
        exit_time = "toDateTime64(today() - INTERVAL 2 YEAR, 3, 'UTC') + INTERVAL 12 HOUR"
        outcome = "LATE" if days_over else "ON_TIME"
        return (
            f"('{stay_id}', {revision}, today() - INTERVAL 2 YEAR - INTERVAL 40 DAY, '{exit_id}', {exit_time},"
            f" {days_over}, '{outcome}', 'b')"
        )

    # Written as the sink writes them, while recent (an exit already past its 3 years is dropped on insert).
    client.command(
        "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key, overstay,"
        " _batch) VALUES "
        + ", ".join(
            [
                crossing("late-exit", "EXIT"),
                crossing("on-time-exit", "EXIT"),
                crossing("late-then-corrected", "EXIT"),
                crossing("entry", "ENTRY"),
            ]
        )
    )
    client.command(
        "INSERT INTO stays (stay_id, revision, anchor_date, exit_event_id, exit_time, days_over, outcome, _batch)"
        " VALUES "
        + ", ".join(
            [
                stay("s1", 1, "late-exit", 10),
                stay("s2", 1, "on-time-exit", 0),
                stay("s3", 1, "late-then-corrected", 10),
                stay("s3", 2, "late-then-corrected", 0),  # the latest revision counts
            ]
        )
    )
    assert mark_overstay_exits(client) == 1
    _wait_for_mutations(client)
    marked = {r[0] for r in client.query("SELECT event_id FROM crossings WHERE overstay").result_rows}
    assert marked == {"late-exit"}
    assert mark_overstay_exits(client) == 0  # nothing left to mark: no new mutation
    day = client.query("SELECT today() - INTERVAL 2 YEAR").result_rows[0][0]
    ttl = ttl_days(client, "crossings", "event_id")
    years = {k: (d.year - day.year) for k, d in ttl.items() if (d.month, d.day) == (day.month, day.day)}
    assert years == {"late-exit": 5, "on-time-exit": 3, "late-then-corrected": 3, "entry": 5}

    # Four years on, the engine keeps a marked exit and drops the others (on insert, here: they are already due).
    client.command(
        "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key, overstay,"
        " _batch) VALUES " + ", ".join([crossing("late-exit-4y", "EXIT", 4, True), crossing("exit-4y", "EXIT", 4)])
    )
    client.command("OPTIMIZE TABLE crossings FINAL")
    kept = {r[0] for r in client.query("SELECT event_id FROM crossings WHERE event_id LIKE '%4y'").result_rows}
    assert kept == {"late-exit-4y"}


def test_the_sweep_since_a_time_looks_only_at_stays_ingested_since(client: Client) -> None:
    client.command(
        "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key, _batch)"
        " VALUES ('x', now(), now(), toDate(now(), 'Asia/Almaty'), 'EXIT', 'k', 'b')"
    )
    client.command(
        "INSERT INTO stays (stay_id, revision, anchor_date, exit_event_id, exit_time, days_over, outcome,"
        " ingested_time, _batch) VALUES ('s', 1, today(), 'x', now(), 3, 'LATE', now() - INTERVAL 3 HOUR, 'b')"
    )
    assert mark_overstay_exits(client, datetime.now(UTC) - timedelta(hours=1)) == 0
    assert mark_overstay_exits(client, datetime.now(UTC) - timedelta(hours=4)) == 1


@pytest.mark.slow
def test_the_running_sink_marks_the_exit_of_an_overstay(settings: Settings) -> None:
    """End to end: the exit crossing and its late stay through Kafka; the sink's sweep marks the exit."""
    exit_time = datetime.now(UTC) - timedelta(days=2)
    entry_time = exit_time - timedelta(days=40)
    exit_crossing = samples.crossing(direction=Direction.EXIT, event_time=exit_time)
    on_time_exit = samples.crossing(direction=Direction.EXIT, event_time=exit_time, number="N7654321")
    late = samples.stay(
        "late", 1, entry_time=entry_time, exit_time=exit_time, exit_event_id=exit_crossing.event_id, days_over=10
    )
    serde = Serde.from_settings(settings)
    producer = Producer(settings.kafka_config())
    for c in (exit_crossing, on_time_exit):
        doc = c.traveller.document
        key = partition_key(doc.issuing_country, doc.number).encode()
        producer.produce(settings.topics.crossings, key=key, value=serde.encode(c, settings.topics.crossings))
    producer.produce(settings.topics.stays, key=b"late", value=serde.encode(late, settings.topics.stays))
    assert producer.flush(30) == 0

    fast = settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"flush_interval": 0.2, "overstay_sweep_interval": 0.3})}
    )
    stop = threading.Event()
    sink = threading.Thread(target=run_sink, args=(fast,), kwargs={"stop": stop})
    sink.start()
    try:
        deadline = time.monotonic() + 60
        marked: set[str] = set()
        while time.monotonic() < deadline and not marked:
            time.sleep(0.3)
            client = connect(settings)
            try:
                rows = client.query("SELECT event_id FROM crossings WHERE overstay").result_rows
            except DatabaseError:  # the sink has not migrated the warehouse yet
                rows = []
            finally:
                client.close()
            marked = {r[0] for r in rows}
        assert marked == {exit_crossing.event_id}
    finally:
        stop.set()
        sink.join()


def test_migration_008_upgrades_a_warehouse_that_has_data(tmp_path: Path) -> None:
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("00[1-7]_*.sql")):
        shutil.copy(path, older / path.name)
    c = connect(Settings(clickhouse_dsn=f"chdb://{tmp_path / 'ch'}"))
    try:
        migrate(c, older)
        c.command(
            "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key, _batch)"
            " VALUES ('old-exit', now() - INTERVAL 2 YEAR, now(), today() - INTERVAL 2 YEAR, 'EXIT', 'k', 'b')"
        )
        c.command(
            "INSERT INTO registrations (event_id, event_time, received_time, event_date, action, traveller_key,"
            " valid_from, valid_until, _batch) VALUES ('r', now(), now(), today(), 'REGISTERED', 'k', today(),"
            " toDate32('2140-01-01'), 'b')"
        )
        assert 8 in [m.version for m in migrate(c)]
        _wait_for_mutations(c)  # MODIFY TTL re-judges the existing parts in the background
        assert c.query("SELECT event_id, overstay FROM crossings").result_rows == [("old-exit", False)]
        assert ttl_days(c, "registrations", "event_id") == {"r": date(2143, 1, 1)}
        c.command("OPTIMIZE TABLE registrations FINAL")
        assert c.query("SELECT count() FROM registrations").result_rows == [(1,)]
    finally:
        c.close()
