"""Versioned DDL: ``sinks/migrations/NNN_name.sql`` applied in order, recorded in ``schema_migrations``.

Every statement is idempotent (IF NOT EXISTS / OR REPLACE), so a migration cut short re-runs cleanly and
running `shekara migrate` twice changes nothing. An applied migration must not be edited: its checksum is
recorded and a changed file is an error (add a new migration instead).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from shekara.logs import get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")

log = get_logger(__name__)


class MigrationError(RuntimeError):
    """The migrations on disk and the ones recorded in the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    checksum: str  # sha256 of the file
    statements: tuple[str, ...]


def split_statements(sql: str) -> list[str]:
    """Statements of a SQL file: ``--`` comments dropped, split on ``;``, both outside quoted strings."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < n:
                current.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'`\"":
            quote = ch
            current.append(ch)
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
            continue
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, by version; versions rise strictly (gaps allowed: a number may be reserved by
    a branch still in work; `pending` refuses one that would run behind a newer applied migration)."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNN_lower_snake.sql")
        text = path.read_text(encoding="utf-8")
        found.append(
            Migration(
                version=int(m["version"]),
                name=m["name"],
                checksum=hashlib.sha256(text.encode()).hexdigest(),
                statements=tuple(split_statements(text)),
            )
        )
    versions = [mig.version for mig in found]
    if versions != sorted(set(versions)):
        raise MigrationError(f"migration versions must not repeat, found {versions}")
    return found


def pending(migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The migrations still to apply, given {version: checksum} of those already applied."""
    for mig in migrations:
        recorded = applied.get(mig.version)
        if recorded is not None and recorded != mig.checksum:
            raise MigrationError(
                f"migration {mig.version:03d}_{mig.name} was changed after it was applied; add a new migration instead"
            )
    unknown = set(applied) - {m.version for m in migrations}
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {sorted(unknown)} (newer code?)")
    todo = [m for m in migrations if m.version not in applied]
    behind = [m for m in todo if applied and m.version < max(applied)]
    if behind:
        # Applying it now would run it after migrations that were written assuming it did not exist.
        raise MigrationError(
            f"migration {behind[0].version:03d}_{behind[0].name} is older than the newest applied ({max(applied):03d});"
            " renumber it above the newest"
        )
    return todo


def migrate(client: Client, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the pending migrations in order on `client`'s database; returns those applied (empty if none)."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version UInt32, name String, checksum String, applied_time DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = client.query("SELECT version, argMax(checksum, applied_time) FROM schema_migrations GROUP BY version")
    applied = {int(v): str(c) for v, c in rows.result_rows}
    todo = pending(load_migrations(directory), applied)
    for mig in todo:
        for statement in mig.statements:
            client.command(statement)
        client.insert(
            "schema_migrations", [[mig.version, mig.name, mig.checksum]], column_names=["version", "name", "checksum"]
        )
        log.info("migration applied", version=mig.version, name=mig.name, statements=len(mig.statements))
    return todo
