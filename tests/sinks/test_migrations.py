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


# Checksums of released migrations: a warehouse that applied one refuses it changed (`pending`), so a change to
# the schema or to a SQL function is a new migration, never an edit. Add the next one here when it is released.
RELEASED = {
    1: "4c46ed8b161348cf9dd843c31a6e8333ce21c545879c1ee2d33ead1bd8c78b83",
    2: "06796488e8e1dc53d6d1ff99e1744025c554bc865f30a3cb158b264c1612d9e8",
    3: "a02631812f5af6c5cd566db87f3d5ed6465222f4bcc04462ad1012a04eed309a",
    4: "89c01362f92d735e51333173eb3be94129cadc4c998ca70a155530a6a6887d0a",
    5: "0650008ef9d01c5872c76c14113a64702329a9b6b02864cc376497e9b3d5540a",
    6: "f1e3e3c145f5d70d6998a4fed79274f84afee4e667ded9b0f305e30cc754b12c",
    7: "385a67c20338e99b16194d1552d66c0f49aa8b6f86ed1ea8ab8bd7b301031dbf",
    8: "6ac68a6d956c5a1d3a3ccf3d9af3d6b8afa4546b376358566022be75f7d3839d",
    9: "780aef97a77f347e8c92ff4aa217d8c347e044b0c6b743c32a19b7e5b2ffd780",
    10: "8175335e9543e2aa06ffe21532afbddc1e0d33cc8815546c571b39fdea59e4f0",
    11: "9c98486d0163c8f7b0c8835cd8f2ac0c14157e16897d50ee9c2dd5bcd357aa89",
    12: "a04f5d99b66f5dbb66a7d4c109694b836c3554c47b8e41ad1d00a505f57f0ffd",
    13: "76eeba0492e6b4924980dd55ba9512c1f47e8f4de77fc2ebf40e045942d4f87b",
    14: "0410d7972d4546c8658cf2973b07bd4b7aede589f79bf9a8d8ddd5cedb17cd20",
    15: "cf0c1501b04a431db5002d850305e63af7a5da598c3ee14a026e641e9a487d85",
}


def test_released_migrations_are_never_edited():
    current = {m.version: m.checksum for m in load_migrations()}
    edited = [f"{v:03d}" for v, checksum in RELEASED.items() if current.get(v) != checksum]
    assert not edited, f"released migrations edited (existing warehouses would refuse them): {edited}; add a new one"


def test_pending_refuses_edited_or_unknown_migrations():
    migrations = load_migrations()
    applied = {m.version: m.checksum for m in migrations[:2]}
    assert [m.version for m in pending(migrations, applied)] == [m.version for m in migrations[2:]]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        pending(migrations, {1: "0" * 64})
    with pytest.raises(MigrationError, match="does not know"):
        pending(migrations, {**applied, 999: "x"})


def test_pending_refuses_a_migration_older_than_the_newest_applied():
    # A number reserved by a branch that lands after a newer migration was applied: it must be renumbered.
    migrations = load_migrations()
    applied = {m.version: m.checksum for m in migrations if m.version != 2}
    with pytest.raises(MigrationError, match=r"002_\w+ is older than the newest applied"):
        pending(migrations, applied)


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


@pytest.mark.integration
def test_migration_015_keeps_the_meaning_of_alerts_stored_before_revisions(client: Client, tmp_path: Path) -> None:
    """Rows of Alert v1 read revision 0; a RESOLVED or RETRACTED row ends the alert as before, and a v2 record
    with a later revision supersedes them all (a second RAISED row of an id is kept, not merged away)."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("0*.sql")):
        if int(path.name[:3]) < 15:
            shutil.copy(path, older / path.name)
    migrate(client, older)
    rows = [("open", "RAISED", 1), ("shut", "RAISED", 1), ("shut", "RESOLVED", 2), ("gone", "RAISED", 1)]
    rows += [("gone", "RETRACTED", 3), ("back", "RAISED", 1), ("back", "RETRACTED", 2)]
    values = ", ".join(
        f"('{i}', '{a}', 'WINDOW_BREACH', '2026-01-10', toDateTime64('2026-01-10 06:00:0{t}', 3, 'UTC'), 'b')"
        for i, a, t in rows
    )
    client.command(f"INSERT INTO alerts (alert_id, action, type, due_date, emitted_time, _batch) VALUES {values}")
    assert [m.version for m in migrate(client)] == [15]
    client.command(
        "INSERT INTO alerts (alert_id, action, revision, type, due_date, emitted_time, _batch)"
        " VALUES ('back', 'RAISED', 1, 'WINDOW_BREACH', '2026-01-10', toDateTime64('2026-01-24 06:00:00', 3), 'c')"
    )
    client.command("OPTIMIZE TABLE alerts FINAL")
    assert client.query("SELECT count() FROM alerts WHERE alert_id = 'back'").result_rows == [(3,)]
    states = client.query("SELECT alert_id, action, revision FROM alert_states ORDER BY alert_id").result_rows
    assert states == [("back", "RAISED", 1), ("gone", "RETRACTED", 0), ("open", "RAISED", 0), ("shut", "RESOLVED", 0)]
    assert client.query("SELECT alert_id FROM open_alerts_triage ORDER BY alert_id").result_rows == [
        ("back",),
        ("open",),
    ]
