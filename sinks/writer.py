"""The ClickHouse side of the sink: stage a planned batch, derive the fact rows in SQL, insert them once.

Per table and batch: the framed Avro bodies go into a temporary staging table (ClickHouse decodes them),
rows that can never be stored are listed with the field at fault (``<table>.rejects.sql``: for source events,
everything the stream processors refuse, see `schemas.validation` and `streams.intake`), and one
``INSERT ... SELECT`` (the SQL in ``sinks/transforms``) writes the rest with the insert deduplication token
``<batch token>:<table>``.

Failures: a data error (see `sinks.clickhouse.DATA_ERROR_CODES`) is narrowed down by bisection to the
messages that cause it, which are rejected with ClickHouse's reason while the rest is stored. Any other
failure raises `TransientWriteError`: the caller retries the whole batch, which is safe because staging
starts afresh and the inserts are idempotent.

Secrets: the transforms store the keyed traveller key, HMAC-SHA256 of the message key (the public partition key,
checked in the rejects SQL). They read the HMAC pads from the session's temporary table ``_pseudonym_pads``,
filled with an insert (the pads travel in the request body, never in query text or parameters), so neither
``system.processes`` nor ``system.query_log`` shows them to an analyst. A temporary table lives as long as the
writer's session, like the staging tables: `Warehouse.stage` creates it again on a new session.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.validation import catalogue_for
from shekara.logs import get_logger
from shekara.reference import Catalogue
from shekara.rules import RuleBook
from shekara.settings import Settings
from sinks.batch import BatchPlan, Group, Intent, Message, Messages, Range, Rejected, Route, TablePlan
from sinks.clickhouse import is_data_error, is_transient
from sinks.deadlines import deadline_rows, nationality_groups
from sinks.stage import container, stage_ddl

TRANSFORMS_DIR = Path(__file__).resolve().parent / "transforms"
TABLE_RECORDS = {
    "crossings": "Crossing",
    "registrations": "Registration",
    "status_changes": "StatusChange",
    "stays": "Stay",
    "alerts": "Alert",
    "dead_letters": "DeadLetter",
    "alert_triage": "AlertTriage",
}
_MAX_MSG = 2**63 - 1
# Bisection isolates a few bad rows. When a batch needs more queries than this, the "data error" is likely
# systematic (a broken transform, a schema mismatch): retrying beats dead-lettering every row.
BISECT_BUDGET = 1000
DEADLINES_FROM = date(2015, 1, 1)
PADS_TABLE = "_pseudonym_pads"  # session temporary table: the HMAC pads the transforms read (module doc)
CHECKPOINT_COLUMNS = [
    "id", "name", "kind", "border_country", "region", "lat", "lon", "daily_capacity",
    "opened", "closed", "open_from", "open_until", "catalogue_version",
]  # fmt: skip

log = get_logger(__name__)


class TransientWriteError(RuntimeError):
    """ClickHouse could not take the batch now (down, overloaded, a table missing...): retry it later."""


def routes(settings: Settings) -> dict[str, Route]:
    """Which table each consumed topic lands in."""
    t = settings.topics
    topics = {
        t.crossings: "crossings",
        t.registrations: "registrations",
        t.status_changes: "status_changes",
        t.stays: "stays",
        t.alerts: "alerts",
        t.dead_letter: "dead_letters",
        t.alert_actions: "alert_triage",  # officers' triage states (streams.triage), migration 014
    }
    return {topic: Route(table, TABLE_RECORDS[table]) for topic, table in topics.items()}


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256 inner and outer pads of `key` (RFC 2104): what shekara_hmac32() takes."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


INCLUDE = re.compile(r"^[ \t]*-- include: ([\w.]+)[ \t]*$", re.MULTILINE)


@lru_cache(maxsize=32)
def transform_sql(name: str) -> str:
    """``<name>.sql`` of the transforms, each ``-- include: other`` line replaced by ``other.sql`` (two queries that
    must compute the same values read them from one file)."""
    sql = (TRANSFORMS_DIR / f"{name}.sql").read_text(encoding="utf-8")
    return INCLUDE.sub(lambda m: transform_sql(m.group(1)), sql)


@lru_cache(maxsize=16)
def _screen_sql(table: str) -> str | None:
    """``<table>.screen.sql`` if the table has one: the staged rows its rejects query must judge (the rest pass)."""
    return transform_sql(f"{table}.screen") if (TRANSFORMS_DIR / f"{table}.screen.sql").exists() else None


@dataclass
class TableResult:
    staged: int = 0  # rows ClickHouse read from the batch
    rejected: int = 0


@dataclass
class WriteResult:
    tables: dict[str, TableResult] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class _StagedTable:
    rows: list[int]  # _msg of the staged rows to store
    skip: list[int]  # _msg of staged rows that can never be stored


@dataclass
class Staged:
    """A batch staged on one Warehouse's session (`Warehouse.stage`), waiting for `Warehouse.store`."""

    plan: BatchPlan
    tables: dict[str, _StagedTable] = field(default_factory=dict)
    results: dict[str, TableResult] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


Explain = Callable[[bytes], str | None]  # why a message cannot be decoded, or None if it can


class Warehouse:
    """Writes planned batches into the fact tables of one ClickHouse database (one writer client)."""

    def __init__(self, client: Client, settings: Settings, explain: Explain) -> None:
        self.client = client
        self._ipad, self._opad = hmac_pads(settings.pseudonym_key_bytes)
        self._skew = settings.max_future_skew_seconds
        lim = settings.limits  # the rejects' size, length and date checks (migration 007)
        self._limits = {
            "max_key": lim.max_key_bytes,
            "max_id": lim.max_id_chars,
            "max_text": lim.max_text_chars,
            "earliest": lim.earliest_date,
            "latest": lim.latest_date,
        }
        # Partition count of each source table's topic: the rejects refuse an event not on CRC32(key) % count
        # (shekara.partitioning). The catalogue's until the sink reads the topics' metadata; 0 turns it off.
        self.source_partitions = {"crossings": settings.partitions, "registrations": settings.partitions}
        self.source_partitions["status_changes"] = settings.partitions
        self._explain = explain
        self._bisect_left = BISECT_BUDGET
        self._catalogue, self._catalogue_file = catalogue_for(settings), settings.checkpoints_file
        self._catalogue_ready = False  # loaded or found current by this Warehouse (load_checkpoints)
        # For dead_letters: the record type each topic carries, as two aligned arrays (ClickHouse `transform`).
        carried = {topic: r.record_name for topic, r in routes(settings).items() if r.table != "dead_letters"}
        carried[settings.topics.address_registrations] = "Registration"
        self._topics, self._types = list(carried), list(carried.values())

    # --- set-up -------------------------------------------------------------------------------------------

    def _ensure_pads(self) -> None:
        """Put the HMAC pads in this session's temporary table unless it already holds them (a new session).

        Called before each batch's staging tables are created on the session, so a session that has staging
        tables has the pads too: a restarted server loses both, and the transform then fails on a missing table
        (retried, staging afresh) instead of hashing with empty pads.
        """
        self.client.command(f"CREATE TEMPORARY TABLE IF NOT EXISTS {PADS_TABLE} (ipad String, opad String)")
        if self.client.query(f"SELECT count() FROM {PADS_TABLE}").result_rows[0][0] == 1:
            return
        self.client.command(f"TRUNCATE TABLE {PADS_TABLE}")
        self.client.insert(PADS_TABLE, [[self._ipad, self._opad]], column_names=["ipad", "opad"])

    def load_rules(self, rules: RuleBook, rules_text: bytes) -> bool:
        """Reload the registration deadlines if the rules file changed; True if reloaded."""
        version = f"{rules.version}#{hashlib.sha256(rules_text).hexdigest()[:12]}"
        stored = self.client.query("SELECT any(rules_version) FROM registration_deadlines").result_rows[0][0]
        if stored == version:
            return False
        rows = _deadline_table(rules, version, date.today() + timedelta(days=3 * 366))
        self.client.command("TRUNCATE TABLE registration_deadlines")
        self.client.command("TRUNCATE TABLE nationality_groups")
        self.client.insert(
            "nationality_groups",
            [[nat, group, version] for nat, group in nationality_groups(rules)],
            column_names=["nationality", "nationality_group", "rules_version"],
        )
        self.client.insert(
            "registration_deadlines",
            rows,
            column_names=["nationality_group", "arrival", "deadline", "rule_id", "rules_version"],
        )
        log.info("registration deadlines loaded", rules_version=version, rows=len(rows))
        return True

    def load_checkpoints(self, catalogue: Catalogue, catalogue_text: bytes) -> bool:
        """Reload the `checkpoints` table (migration 012) if the catalogue file changed; True if reloaded."""
        version = f"{catalogue.timezone.key}#{hashlib.sha256(catalogue_text).hexdigest()[:12]}"
        stored = self.client.query("SELECT any(catalogue_version) FROM checkpoints").result_rows[0][0]
        if stored == version:
            self._catalogue_ready = True
            return False
        rows = []
        for cp in catalogue.checkpoints.values():
            begins, ends = catalogue.open_span(cp)
            rows.append([
                cp.id, cp.name, cp.kind.value, cp.border_country, cp.region, cp.lat, cp.lon, cp.daily_capacity,
                cp.opened, cp.closed, begins, ends, version,
            ])  # fmt: skip
        self.client.command("TRUNCATE TABLE checkpoints")
        self.client.insert("checkpoints", rows, column_names=CHECKPOINT_COLUMNS)
        log.info("checkpoint catalogue loaded", version=version, rows=len(rows))
        self._catalogue_ready = True
        return True

    # --- batch intents ------------------------------------------------------------------------------------

    def record_intent(self, group_id: str, intent: Intent) -> None:
        ranges = [(r.topic, r.partition, r.first, r.last) for r in intent.ranges]
        self.client.insert(
            "sink_batches", [[group_id, intent.token, ranges]], column_names=["group_id", "token", "ranges"]
        )

    def recent_intents(self, group_id: str, limit: int = 50) -> list[Intent]:
        """Recorded batches of the group, newest first."""
        rows = self.client.query(
            "SELECT token, ranges FROM sink_batches WHERE group_id = {g:String}"
            " ORDER BY created_time DESC LIMIT {n:UInt32}",
            parameters={"g": group_id, "n": limit},
        ).result_rows
        return [Intent(tok, tuple(_range(r) for r in ranges)) for tok, ranges in rows]

    # --- the sink's own dead letters ----------------------------------------------------------------------

    def dead_lettered(self, group_id: str, messages: Sequence[Message]) -> set[tuple[str, int, int]]:
        """Source coordinates among `messages` that the sink has already dead-lettered (`record_dead_lettered`)."""
        if not messages:
            return set()
        rows = self.client.query(
            "SELECT source_topic, source_partition, source_offset FROM sink_dead_lettered"
            " WHERE group_id = {g:String} AND source_topic IN {t:Array(String)}"
            " AND source_offset IN {o:Array(UInt64)}",
            parameters={"g": group_id, "t": sorted({m.topic for m in messages}), "o": [m.offset for m in messages]},
        ).result_rows
        wanted = {(m.topic, m.partition, m.offset) for m in messages}
        return {(str(t), int(p), int(o)) for t, p, o in rows} & wanted

    def record_dead_lettered(self, group_id: str, coordinates: Sequence[tuple[str, int, int]]) -> None:
        """Remember dead letters the broker acknowledged, so a retry or replay of their batch skips them."""
        if coordinates:
            self.client.insert(
                "sink_dead_lettered",
                [[group_id, t, p, o] for t, p, o in coordinates],
                column_names=["group_id", "source_topic", "source_partition", "source_offset"],
            )

    # --- writing ------------------------------------------------------------------------------------------

    def write(self, plan: BatchPlan) -> WriteResult:
        """Store every table of the batch; raises TransientWriteError if it must be retried."""
        return self.store(self.stage(plan))

    def stage(self, plan: BatchPlan) -> Staged:
        """First half of `write`: stage every table of the batch and list what can never be stored.

        What it leaves is this client's session state (temporary tables), so `store` must follow on the same
        Warehouse, before its next `stage`. The halves exist so that a second Warehouse can stage the next
        batch while this one stores (`sinks.sink`): staging is mostly ClickHouse's single-threaded Avro reader.
        """
        staged = Staged(plan)
        with _retried_on_failure(PADS_TABLE):
            self._ensure_pads()
        if not self._catalogue_ready:  # the crossings' rejects read it: an empty table would refuse every crossing
            with _retried_on_failure("checkpoints"):
                self.load_checkpoints(self._catalogue, self._catalogue_file.read_bytes())
        for table, tplan in sorted(plan.tables.items()):
            with _retried_on_failure(table):
                staged.tables[table] = self._stage_table(staged, tplan)
        return staged

    def store(self, staged: Staged) -> WriteResult:
        """Second half of `write`: insert the staged rows into the fact tables (idempotent)."""
        for table, tplan in sorted(staged.plan.tables.items()):
            with _retried_on_failure(table):
                self._store_table(staged, tplan)
        return WriteResult(staged.results, staged.rejected)

    def _stage_table(self, staged: Staged, tplan: TablePlan) -> _StagedTable:
        plan, rejected = staged.plan, staged.rejected
        stage = f"stage_{tplan.table}"
        out = staged.results[tplan.table] = TableResult()
        self._bisect_left = BISECT_BUDGET
        self.client.command(stage_ddl(stage, tplan.record_name))
        self.client.command(f"TRUNCATE TABLE `{stage}`")
        unstaged: set[int] = set()
        verified: list[tuple[str, Group]] = []  # what the staging table holds, verified
        for schema_json, group in tplan.groups.items():
            bad = self._stage_verified(stage, schema_json, group, plan, tplan, verified)
            for index, reason, stage_name in bad:
                unstaged.add(index)
                rejected.append(Rejected(plan.messages[index], stage_name, reason))
            out.staged += len(group) - len(bad)
            out.rejected += len(bad)
        skip: list[int] = []
        for msg, fld, reason in self._rejects(tplan.table):
            skip.append(int(msg))
            message = plan.messages[int(msg)]
            rejected.append(Rejected(message, "sink", f"{tplan.table}: {reason}", fld, mirrors_intake=True))
        out.rejected += len(skip)
        groups = [g.indexes for g in tplan.groups.values()]
        if len(groups) == 1 and not unstaged and not skip:
            # The usual batch: one writer schema, nothing left out. Its indexes are already in batch order, each
            # once; the set and sort below cost ~6 ms per 100,000 rows on the writer thread.
            return _StagedTable(groups[0], skip)
        rows = sorted(set(chain.from_iterable(groups)) - unstaged - set(skip))
        return _StagedTable(rows, skip)

    def _store_table(self, staged: Staged, tplan: TablePlan) -> None:
        plan, out, table = staged.plan, staged.results[tplan.table], staged.tables[tplan.table]
        self._bisect_left = BISECT_BUDGET
        token = f"{plan.intent.token}:{tplan.table}"
        params: dict[str, Any] = {
            "skip": table.skip,
            "bases": [tplan.first_offsets.get(p, 0) for p in range(max(tplan.first_offsets, default=-1) + 1)],
            "topics": self._topics,
            "types": self._types,
        }
        for msg, reason in self._transform(tplan.table, token, params, table.rows, whole=True):
            staged.rejected.append(Rejected(plan.messages[msg], "sink", f"{tplan.table}: {reason}"))
            out.rejected += 1

    def _stage_verified(
        self,
        stage: str,
        schema_json: str,
        group: Group,
        plan: BatchPlan,
        tplan: TablePlan,
        verified: list[tuple[str, Group]],
        *,
        screened: bool = False,
    ) -> list[tuple[int, str, str]]:
        """Stage `group` and check the staging table now holds exactly the rows it should.

        A corrupt body that ClickHouse still parses (a flipped length byte) shifts where its record ends, so
        the trailer read after it, and every record after it in the block, is garbage: wrong `_msg` values
        that would name other messages. The tally of the staged trailers (count and sums of `_msg`,
        `_partition`, `_delta`) must equal the expected one; if not, the group is staged again by halves
        until the corrupt record is alone, and that one is rejected.
        """
        bad = self._stage(stage, schema_json, group, plan.messages, screened=screened)
        kept = _without(group, {i for i, _, _ in bad})
        if self._tally(stage) == _expected_tally([*(g for _, g in verified), kept], plan.messages, tplan):
            verified.append((schema_json, kept))
            return bad
        self._restage(stage, verified)
        if not screened:
            corrupt = self._screen(group, plan.messages)
            rest = _without(group, {i for i, _, _ in corrupt})
            if corrupt and len(rest):
                return corrupt + self._stage_verified(stage, schema_json, rest, plan, tplan, verified, screened=True)
            if corrupt:
                return corrupt
        self._spend_bisect(RuntimeError("staged trailers do not match the batch"))
        if len(group) == 1:
            index = group.indexes[0]
            problem = self._explain(plan.messages[index].value or b"")
            return [(index, problem or "the record's fields do not line up with its writer schema (corrupt)", "decode")]
        mid = len(group) // 2
        first, second = group.subset(0, mid), group.subset(mid, len(group))
        return self._stage_verified(stage, schema_json, first, plan, tplan, verified, screened=True) + (
            self._stage_verified(stage, schema_json, second, plan, tplan, verified, screened=True)
        )

    def _tally(self, stage: str) -> tuple[int, int, int, int]:
        row = self.client.query(
            f"SELECT count(), sum(_msg), sum(toUInt64(_partition)), sum(_delta) FROM `{stage}`"
        ).result_rows[0]
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def _insert_block(self, stage: str, schema_json: str, group: Group) -> None:
        """One Avro block of the group's records into the staging table (ClickHouse decodes it)."""
        self.client.raw_insert(
            stage,
            None,
            container(schema_json, group.parts, len(group)),
            fmt="Avro",
            settings={"input_format_avro_allow_missing_fields": 1},
        )

    def _restage(self, stage: str, staged: list[tuple[str, Group]]) -> None:
        """Empty the staging table and put back the verified groups (rare: only after a corrupt record)."""
        self.client.command(f"TRUNCATE TABLE `{stage}`")
        for schema_json, group in staged:
            if len(group):
                self._insert_block(stage, schema_json, group)

    def _rejects(self, table: str) -> list[tuple[int, str, str]]:
        """(_msg, field, reason) of the staged rows of `table` that can never be stored."""
        sql = transform_sql(f"{table}.rejects")
        # Source events: skew for event times (the message key is checked against the public partition key).
        offered: dict[str, Any] = {"skew": self._skew, "partitions": self.source_partitions.get(table, 0)}
        offered.update(self._limits)
        screen = _screen_sql(table)
        if screen is not None:
            # Only the records the screen cannot clear are judged; a batch of plain records skips the judging query.
            rows = self.client.query(screen, parameters=_named_in(screen, offered)).result_rows
            undecided = [int(msg) for (msg,) in rows]
            if not undecided:
                return []
            offered["undecided"] = undecided
        params = _named_in(sql, offered)
        return self.client.query(sql, parameters=params or None).result_rows  # type: ignore[return-value]

    def _stage(
        self, stage: str, schema_json: str, group: Group, messages: Sequence[Message], *, screened: bool = False
    ) -> list[tuple[int, str, str]]:
        """Insert a group into the staging table; returns (index, reason, stage) of records ClickHouse refuses.

        On a refusal the group's records are first decoded in Python (`_screen`): corrupt ones are rejected
        with the decoder's reason and the rest staged again. Only a refusal that decoding cannot explain is
        narrowed down by bisection (hostile input can hold hundreds of corrupt records in one batch: found
        by bisection, each would cost about 2 log2(n) inserts).
        """
        try:
            self._insert_block(stage, schema_json, group)
            return []
        except Exception as exc:
            if is_transient(exc) and not is_data_error(exc):
                raise
            if not screened and len(group) > 1:
                bad = self._screen(group, messages)
                if bad:
                    rest = _without(group, {i for i, _, _ in bad})
                    return bad + (self._stage(stage, schema_json, rest, messages, screened=True) if len(rest) else [])
            self._spend_bisect(exc)
            if len(group) == 1:
                index = group.indexes[0]
                decode_problem = self._explain(messages[index].value or b"")
                if decode_problem:
                    return [(index, decode_problem, "decode")]
                return [(index, f"ClickHouse cannot read the record: {_first_line(exc)}", "sink")]
        # A failed insert of one Avro block stores nothing, so the halves can be retried on their own.
        mid = len(group) // 2
        return self._stage(stage, schema_json, group.subset(0, mid), messages, screened=True) + self._stage(
            stage, schema_json, group.subset(mid, len(group)), messages, screened=True
        )

    def _screen(self, group: Group, messages: Sequence[Message]) -> list[tuple[int, str, str]]:
        """(index, reason, "decode") of the group's records the contract's decoder refuses (~13 µs a record)."""
        out = []
        for i in group.indexes:
            problem = self._explain(messages[i].value or b"")
            if problem:
                out.append((i, problem, "decode"))
        return out

    def _transform(
        self, table: str, token: str, params: dict[str, Any], msgs: Sequence[int], *, whole: bool
    ) -> list[tuple[int, str]]:
        """Run the table's INSERT ... SELECT over staged rows `msgs`; returns (msg, reason) of rows it cannot store."""
        if not msgs:
            return []
        lo, hi = (0, _MAX_MSG) if whole else (msgs[0], msgs[-1])
        sql = transform_sql(table)
        try:
            self.client.command(
                sql,
                parameters=_named_in(sql, {**params, "batch": token, "lo": lo, "hi": hi}),
                # optimize_on_insert=0: the transform already keeps one row per id and the views aggregate their
                # block, so collapsing each block again on insert (Replacing/Summing) is redundant; it doubled the
                # insert's CPU (0.59 against 0.28 s per 100,000 crossings, measured).
                settings={"insert_deduplication_token": token, "optimize_on_insert": 0},
            )
            return []
        except Exception as exc:
            if not is_data_error(exc):
                raise
            self._spend_bisect(exc)
            if len(msgs) == 1:
                return [(msgs[0], f"ClickHouse rejects the row: {_first_line(exc)}")]
        # Halves get tokens of their own, derived from the batch token: a replay bisects the same way.
        base = token.split("#", 1)[0]
        mid = len(msgs) // 2
        first, second = msgs[:mid], msgs[mid:]
        return self._transform(table, f"{base}#{first[0]}-{first[-1]}", params, first, whole=False) + self._transform(
            table, f"{base}#{second[0]}-{second[-1]}", params, second, whole=False
        )

    def _spend_bisect(self, exc: BaseException) -> None:
        self._bisect_left -= 1
        if self._bisect_left < 0:
            raise TransientWriteError(f"too many rows fail the same way, probably not bad input: {_first_line(exc)}")


@contextmanager
def _retried_on_failure(table: str) -> Iterator[None]:
    try:
        yield
    except TransientWriteError:
        raise
    except Exception as exc:
        # Anything not isolated by bisection (server down, a table missing, or a bug) is retried: stopping the
        # sink or skipping the batch would lose rows.
        raise TransientWriteError(f"{table}: {exc}") from exc


def _named_in(sql: str, offered: dict[str, Any]) -> dict[str, Any]:
    """The query parameters of `offered` that `sql` uses (``{name:Type}``)."""
    return {k: v for k, v in offered.items() if f"{{{k}:" in sql}


def _without(group: Group, indexes: set[int]) -> Group:
    """The group less the records at batch `indexes`."""
    if not indexes:
        return group
    keep = [k for k, i in enumerate(group.indexes) if i not in indexes]
    return Group([group.indexes[k] for k in keep], [p for k in keep for p in group.parts[2 * k : 2 * k + 2]])


def _expected_tally(groups: Sequence[Group], messages: Messages, tplan: TablePlan) -> tuple[int, int, int, int]:
    """(count, sum of _msg, sum of _partition, sum of _delta) the staged trailers of `groups` must add up to."""
    wrap = 2**64  # ClickHouse sums UInt64 modulo 2^64
    count = msg_sum = partition_sum = delta_sum = 0
    firsts = tplan.first_offsets
    for g in groups:  # column lookups in C (`map`): every batch is checked, on the writer thread
        partitions = list(map(messages.partitions.__getitem__, g.indexes))
        count += len(g)
        msg_sum += sum(g.indexes)
        partition_sum += sum(partitions)
        delta_sum += sum(map(messages.offsets.__getitem__, g.indexes)) - sum(map(firsts.__getitem__, partitions))
    return count, msg_sum % wrap, partition_sum % wrap, delta_sum % wrap


def _range(value: Any) -> Range:
    """A stored range: a named Tuple comes back as a dict (clickhouse-connect), a plain one as a tuple."""
    topic, partition, first, last = value.values() if isinstance(value, dict) else value
    return Range(str(topic), int(partition), int(first), int(last))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


_deadline_tables: dict[tuple[str, date], list[list[Any]]] = {}


def _deadline_table(rules: RuleBook, version: str, until: date) -> list[list[Any]]:
    """Rows of registration_deadlines, computed once per rules version and process (tests start many sinks)."""
    key = (version, until)
    if key not in _deadline_tables:
        _deadline_tables[key] = [
            [r.nationality_group, r.arrival, r.deadline, r.rule_id, version]
            for r in deadline_rows(rules, DEADLINES_FROM, until)
        ]
    return _deadline_tables[key]
