"""The benchmark warehouse (`harness.scale`): simulator rows copied up keep the simulator's shares, and the
views hold what the fact tables say. Small: two weeks at scale 0.01 (~21k crossings), 3 copies over 2 years."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from harness.scale import TABLES, YEAR_SHIFT_DAYS, BuildReport, WarehouseSpec, cached_warehouse, views_consistent
from shekara.settings import Settings
from sinks.clickhouse import connect

pytestmark = pytest.mark.integration

SPEC = WarehouseSpec("test", days=14, scale=0.01, target_crossings=50_000, years=2, start=date(2026, 11, 2))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, BuildReport, Path]]:
    tmp = tmp_path_factory.mktemp("scale")
    settings = Settings(data_dir=tmp / "var", clickhouse_dsn=f"chdb://{tmp / 'unused'}")
    probe, report = cached_warehouse(settings, SPEC, tmp / "cache", today=date(2026, 11, 23), workers=1)
    assert not report.reused
    client = connect(probe)
    try:
        yield client, report, tmp / "cache"
    finally:
        client.close()


def _rows(client: Client, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def test_copies_and_counts(built: tuple[Client, BuildReport, Path]) -> None:
    client, report, _ = built
    base = report.base["crossings"]
    assert base > 10_000
    assert report.copies == -(-SPEC.target_crossings // base) >= 3
    for table in ("crossings", "registrations", "stays", "alerts"):
        assert report.totals[table] == report.base[table] * report.copies, table
    assert report.totals["status_changes"] == report.base["status_changes"]  # not read by the dashboard
    assert report.views_consistent and views_consistent(client)


def test_every_simulator_message_lands(built: tuple[Client, BuildReport, Path]) -> None:
    """Keyed with the traveller key and stamped with its publish time, no message is rejected (the build fails on
    any): every simulated event (faults off: none malformed, none duplicated) is a row of the base."""
    _, report, _ = built
    assert all(report.messages[t] > 0 for t in TABLES), report.messages
    sources = ("crossings", "registrations", "status_changes")
    assert sum(report.messages[t] for t in sources) == report.simulated_events
    assert all(report.base[t] == report.messages[t] for t in sources), (report.base, report.messages)
    # The processors' outputs: the sink keeps only the newest revision of a stay and one row per (alert_id, action).
    assert all(0 < report.base[t] <= report.messages[t] for t in ("stays", "alerts")), (report.base, report.messages)


def test_each_copy_has_the_simulators_entries_exits_and_nationality_shares(
    built: tuple[Client, BuildReport, Path],
) -> None:
    client, report, _ = built
    per_copy = _rows(
        client,
        "SELECT if(_batch LIKE 'bench-copy-%', toUInt32(substring(_batch, 12)), 0) AS copy,"
        " countIf(direction = 'ENTRY'), countIf(direction = 'EXIT') FROM crossings GROUP BY copy ORDER BY copy",
    )
    assert [r[0] for r in per_copy] == list(range(report.copies))
    assert len({(r[1], r[2]) for r in per_copy}) == 1  # every copy: the simulator's entries and exits
    nat = _rows(
        client,
        "SELECT if(_batch LIKE 'bench-copy-%', toUInt32(substring(_batch, 12)), 0) AS copy, nationality, count()"
        " FROM crossings GROUP BY copy, nationality ORDER BY nationality, copy",
    )
    by_nat: dict[object, set[object]] = {}
    for _copy, n, c in nat:
        by_nat.setdefault(n, set()).add(c)
    assert all(len(counts) == 1 for counts in by_nat.values())  # same count per nationality in every copy
    assert len(by_nat) > 10
    # Fresh ids and pseudonyms per copy: no event id or traveller key is shared between copies.
    assert _rows(client, "SELECT uniqExact(event_id) = count() FROM crossings") == [(True,)]
    shared = _rows(
        client,
        "SELECT count() FROM (SELECT traveller_key FROM crossings GROUP BY traveller_key"
        " HAVING uniqExact(_batch LIKE 'bench-copy-%' ? _batch : '') > 1)",
    )
    assert shared == [(0,)]


def test_copies_move_by_whole_52_week_years(built: tuple[Client, BuildReport, Path]) -> None:
    client, report, _ = built
    spans = _rows(
        client,
        "SELECT if(_batch LIKE 'bench-copy-%', toUInt32(substring(_batch, 12)), 0) AS copy,"
        " min(event_date), max(event_date), groupUniqArray(toDayOfWeek(event_date)) FROM crossings"
        " GROUP BY copy ORDER BY copy",
    )
    first = spans[0]
    for copy, lo, hi, _weekdays in spans:
        shift = YEAR_SHIFT_DAYS * (int(str(copy)) % report.years)
        assert (first[1] - lo).days == shift and (first[2] - hi).days == shift  # type: ignore[operator]
    # Hourly profile unchanged: the same count per Almaty hour in copy 0 and copy 1.
    hours = _rows(
        client,
        "SELECT toHour(event_time, 'Asia/Almaty') AS h, countIf(_batch NOT LIKE 'bench-copy-%'),"
        " countIf(_batch = 'bench-copy-1') FROM crossings GROUP BY h",
    )
    assert all(a == b for _h, a, b in hours)


def test_views_match_the_facts(built: tuple[Client, BuildReport, Path]) -> None:
    client, _, _ = built
    flows = _rows(client, "SELECT (SELECT sum(crossings) FROM daily_flows), (SELECT count() FROM crossings)")
    assert flows[0][0] == flows[0][1]
    stays = _rows(
        client,
        "SELECT outcome, sum(stays) FROM stay_outcomes GROUP BY outcome HAVING sum(stays) != 0 ORDER BY outcome",
    )
    facts = _rows(
        client,
        "SELECT outcome, count() FROM stays FINAL WHERE outcome IN ('OPEN', 'ON_TIME', 'LATE')"
        " AND allowed_until IS NOT NULL GROUP BY outcome ORDER BY outcome",
    )
    assert stays == facts and stays


def test_a_second_run_reuses_the_cache(built: tuple[Client, BuildReport, Path], tmp_path: Path) -> None:
    _, report, cache = built
    settings = Settings(data_dir=tmp_path / "var", clickhouse_dsn=f"chdb://{tmp_path / 'unused'}")
    again_settings, again = cached_warehouse(settings, SPEC, cache, today=date(2026, 11, 23), workers=1)
    assert again.reused and again.totals == report.totals
    assert str(again_settings.clickhouse_dsn).endswith(Path(report.path).name)
