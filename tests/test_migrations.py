"""Warehouse schema migrations on the real engine (chDB): order, record, idempotence, retention TTLs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from shekara.settings import Settings
from sinks.clickhouse import connect
from sinks.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate, pending, split_statements


def test_split_statements_respects_quotes_and_comments():
    sql = "-- head; comment\nCREATE TABLE a (x String COMMENT 'a; b -- c');\n\nSELECT ';' -- tail;\n;"
    assert split_statements(sql) == ["CREATE TABLE a (x String COMMENT 'a; b -- c')", "SELECT ';'"]


def test_migrations_are_numbered_in_order():
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.statements for m in migrations)


def test_pending_refuses_edited_or_unknown_migrations():
    migrations = load_migrations()
    applied = {m.version: m.checksum for m in migrations[:2]}
    assert [m.version for m in pending(migrations, applied)] == [m.version for m in migrations[2:]]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        pending(migrations, {1: "0" * 64})
    with pytest.raises(MigrationError, match="does not know"):
        pending(migrations, {**applied, 999: "x"})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(Settings(clickhouse_dsn=f"chdb://{tmp_path / 'ch'}"))
    try:
        yield c
    finally:
        c.close()


@pytest.mark.integration
def test_migrate_applies_in_order_records_and_is_safe_twice(client: Client):
    applied = migrate(client)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    expected = {"crossings", "registrations", "status_changes", "stays", "alerts", "daily_flows", "monthly_balance"}
    expected |= {"stay_outcomes", "registration_compliance", "alert_counts", "open_overstays", "overstay_rates"}
    assert expected <= tables
    recorded = client.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version").result_rows
    assert recorded == [(m.version, m.name, m.checksum) for m in applied]
    assert migrate(client) == []  # second run: nothing to do
    assert client.query("SELECT count() FROM schema_migrations").result_rows == [(len(applied),)]


@pytest.mark.integration
def test_a_migration_cut_short_reruns_cleanly(client: Client, tmp_path: Path):
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    # Apply the first migration's statements by hand, as if the process died before recording it.
    for statement in load_migrations(migrations)[0].statements:
        client.command(statement)
    assert [m.version for m in migrate(client, migrations)] == [m.version for m in load_migrations(migrations)]
    # Then someone edits an applied migration: refused, nothing half-done.
    first = sorted(migrations.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError):
        migrate(client, migrations)


@pytest.mark.integration
def test_retention_ttls_follow_the_ees_rules(client: Client):
    """3 years after exit, 5 years without exit or for overstayers (domain.md)."""
    migrate(client)
    client.command(
        "INSERT INTO crossings (event_id, event_time, received_time, event_date, direction, traveller_key, _batch) "
        "VALUES ('exit-4y', now() - INTERVAL 4 YEAR, now(), today() - INTERVAL 4 YEAR, 'EXIT', 'k', 'b'),"
        " ('entry-4y', now() - INTERVAL 4 YEAR, now(), today() - INTERVAL 4 YEAR, 'ENTRY', 'k', 'b'),"
        " ('entry-6y', now() - INTERVAL 6 YEAR, now(), today() - INTERVAL 6 YEAR, 'ENTRY', 'k', 'b'),"
        " ('exit-2y', now() - INTERVAL 2 YEAR, now(), today() - INTERVAL 2 YEAR, 'EXIT', 'k', 'b')"
    )
    client.command(
        "INSERT INTO stays (stay_id, revision, anchor_date, entry_time, exit_time, allowed_until, days_over, _batch)"
        " VALUES"
        " ('left-4y-on-time', 1, today() - INTERVAL 4 YEAR, now() - INTERVAL 4 YEAR, now() - INTERVAL 4 YEAR,"
        "  today() - INTERVAL 4 YEAR, 0, 'b'),"
        " ('left-4y-late', 1, today() - INTERVAL 4 YEAR, now() - INTERVAL 4 YEAR, now() - INTERVAL 4 YEAR,"
        "  today() - INTERVAL 4 YEAR, 9, 'b'),"
        " ('never-left-4y', 0, today() - INTERVAL 4 YEAR, now() - INTERVAL 4 YEAR, NULL, today() - INTERVAL 4 YEAR,"
        "  0, 'b'),"
        " ('never-left-6y', 0, today() - INTERVAL 6 YEAR, now() - INTERVAL 6 YEAR, NULL, today() - INTERVAL 6 YEAR,"
        "  0, 'b')"
    )
    client.command("OPTIMIZE TABLE crossings FINAL")
    client.command("OPTIMIZE TABLE stays FINAL")
    crossings = {r[0] for r in client.query("SELECT event_id FROM crossings").result_rows}
    assert crossings == {"entry-4y", "exit-2y"}
    stays = {r[0] for r in client.query("SELECT stay_id FROM stays").result_rows}
    assert stays == {"left-4y-late", "never-left-4y"}
