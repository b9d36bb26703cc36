"""`shekara sql` and `shekara report` as an analyst runs them, on historical data (real chDB engine).

Issue 17, item 4: a default as_of finds the data and says so, an empty result says "0 rows" and the data's
range, binary formats come out byte for byte, and travel_history takes the key prefix alerts show.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner, Result

from harness import samples
from schemas.records import AlertType, Direction
from sinks import cli
from sinks.analyst import MIN_KEY_PREFIX, Reader, is_empty, key_prefix, parse_saved_query
from tests.sinks.test_sink_transforms import Env, env  # noqa: F401 - the fixture

# Noon UTC is the same calendar day in Almaty (UTC+5): the days below are the data's days there too.
FIRST = datetime(2025, 3, 1, 12, tzinfo=UTC)
LAST_DAY = date(2025, 3, 5)
HINT = f"as_of {LAST_DAY}: the last day with data; pass -p as_of=YYYY-MM-DD to change"


@pytest.fixture
def history(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:  # noqa: F811
    """Five days of March 2025: 5 UZB entries by one traveller, 2 KGZ entries, 1 exit; three alerts."""
    crossings = [samples.crossing(f"in{i}", event_time=FIRST + timedelta(days=i), nationality="UZB") for i in range(5)]
    crossings += [
        samples.crossing(f"kg{i}", event_time=FIRST, nationality="KGZ", number=f"K000000{i}") for i in range(2)
    ]
    crossings.append(
        samples.crossing("out", event_time=FIRST + timedelta(days=4), number="X7654321", direction=Direction.EXIT)
    )
    alerts = [samples.alert(f"a{i}", due_time=FIRST + timedelta(days=i)) for i in range(2)]
    alerts.append(samples.alert("w", type=AlertType.WINDOW_BREACH, due_time=FIRST + timedelta(days=3)))
    env.write(env.messages(crossings + alerts))
    monkeypatch.setattr(cli, "get_settings", lambda: env.settings)
    return env


def shekara(*args: str) -> Result:
    app = typer.Typer()
    cli.register(app)
    return CliRunner().invoke(app, list(args))


@pytest.mark.integration
def test_default_as_of_is_the_last_day_with_data(history: Env) -> None:
    # Each query's own facts: the crossings run to 5 March, the alerts (by day due) to 4 March.
    lasts = {"flows_by_day": LAST_DAY, "daily_flows": LAST_DAY, "flows_by_checkpoint": LAST_DAY}
    lasts["top_alert_types"] = date(2025, 3, 4)
    for name, last in lasts.items():
        out = shekara("sql", "--saved", name, "--format", "CSV")
        assert out.exit_code == 0, out.output
        assert out.stderr.splitlines() == [HINT.replace(str(LAST_DAY), str(last))], name
        assert len(out.stdout.splitlines()) > 1, name  # a header and rows, where "today" (2026 on) finds none


@pytest.mark.integration
def test_default_as_of_gives_the_whole_window(history: Env) -> None:
    out = shekara("sql", "--saved", "flows_by_day", "--format", "CSV")
    rows = [line.split(",") for line in out.stdout.splitlines()[1:]]
    assert sum(int(r[1]) for r in rows) == 7 and sum(int(r[2]) for r in rows) == 1
    alerts = shekara("sql", "-s", "top_alert_types", "-f", "CSV").stdout.splitlines()[1:]
    assert alerts == ['"IN_COUNTRY_OVERSTAY",2,0,0', '"WINDOW_BREACH",1,0,0']


@pytest.mark.integration
def test_explicit_as_of_is_used_as_given_and_an_empty_result_says_so(history: Env) -> None:
    out = shekara("sql", "--saved", "flows_by_day", "-p", "as_of=2025-03-02", "--format", "CSV")
    assert out.exit_code == 0 and "as_of" not in out.stderr
    assert [r.split(",")[1] for r in out.stdout.splitlines()[1:]] == ["3", "1"]  # 1 March: 1 UZB + 2 KGZ
    empty = shekara("sql", "--saved", "flows_by_day", "-p", "as_of=2024-06-01")
    assert empty.exit_code == 0, empty.output
    assert empty.stdout == ""
    assert empty.stderr.splitlines() == [f"0 rows (data in daily_flows: 2025-03-01..{LAST_DAY})"]


@pytest.mark.integration
def test_an_empty_ad_hoc_query_says_0_rows_and_the_range(history: Env) -> None:
    for fmt in ("pretty", "CSV", "JSON", "JSONEachRow", "TSVWithNamesAndTypes"):
        out = shekara("sql", "SELECT nationality FROM crossings WHERE nationality = 'ZZZ'", "-f", fmt)
        assert out.exit_code == 0, out.output
        assert out.stderr.splitlines() == [f"0 rows (data in crossings: 2025-03-01..{LAST_DAY})"], fmt
        full = shekara("sql", "SELECT nationality FROM crossings", "-f", fmt)
        assert full.exit_code == 0 and full.stderr == "", fmt


def test_is_empty_by_format() -> None:
    assert is_empty(b"", "PrettyCompactMonoBlock")
    assert is_empty(b'"a","b"\n', "CSVWithNames") and not is_empty(b'"a"\n1\n', "CSVWithNames")
    assert is_empty(b'{"meta": [], "data": [], "rows": 0}', "JSON")
    assert is_empty(b"", "RowBinary") and is_empty(b"\x01", "RowBinary") is None  # no header to judge by
    assert is_empty(b"PAR1 not parquet", "Parquet") is False  # unreadable: not claimed empty


@pytest.mark.integration
def test_report_defaults_to_the_last_day_with_data(history: Env) -> None:
    out = shekara("report")
    assert out.exit_code == 0, out.output
    assert out.stderr.splitlines() == [f"as_of {LAST_DAY}: the last day with data; pass --as-of YYYY-MM-DD to change"]
    assert f"as of {LAST_DAY} (the last day with data)" in " ".join(out.stdout.split())
    assert "IN_COUNTRY_OVERSTAY" in out.stdout  # top alert types found the March alerts


@pytest.mark.integration
def test_parquet_is_written_byte_for_byte(history: Env, tmp_path: Path) -> None:
    query = "SELECT nationality, count() AS n, min(event_date) AS first FROM crossings GROUP BY 1 ORDER BY 1"
    path = tmp_path / "flows.parquet"
    to_file = shekara("sql", query, "-f", "Parquet", "--output", str(path))
    assert to_file.exit_code == 0, to_file.output
    table = pq.read_table(path)
    assert table.column("nationality").to_pylist() == ["KGZ", "UZB"]
    assert table.column("n").to_pylist() == [2, 6]
    assert table.column("first").to_pylist() == [date(2025, 3, 1)] * 2
    to_stdout = shekara("sql", query + " FORMAT Parquet")  # a trailing FORMAT clause works the same
    assert to_stdout.exit_code == 0
    assert pq.read_table(io.BytesIO(to_stdout.stdout_bytes)).equals(table)
    empty = shekara("sql", query.replace("GROUP BY", "WHERE nationality = 'ZZZ' GROUP BY"), "-f", "Parquet")
    assert empty.exit_code == 0 and pq.read_table(io.BytesIO(empty.stdout_bytes)).num_rows == 0
    assert empty.stderr.startswith("0 rows (data in crossings: 2025-03-01..")
    native = shekara("sql", "SELECT toUInt8(200) AS x", "-f", "RowBinary")
    assert native.stdout_bytes == b"\xc8"  # not a replacement character: bytes pass through untouched


@pytest.mark.integration
def test_travel_history_takes_the_displayed_key_prefix(history: Env) -> None:
    key = str(history.scalar("SELECT traveller_key FROM crossings WHERE nationality = 'UZB' LIMIT 1"))
    shown = key[:MIN_KEY_PREFIX]
    out = shekara("sql", "-s", "travel_history", "-p", f"traveller_key={shown.upper()}", "-f", "CSV")
    assert out.exit_code == 0, out.output
    assert len(out.stdout.splitlines()) == 1 + 5  # header and the five UZB entries
    whole = shekara("sql", "-s", "travel_history", "-p", f"traveller_key={key}", "-f", "CSV")
    assert whole.stdout == out.stdout
    short = shekara("sql", "-s", "travel_history", "-p", f"traveller_key={key[:8]}")
    assert short.exit_code == 2 and len(short.stderr.strip().splitlines()) == 1
    assert "at least 12 hex characters" in short.stderr
    unknown = shekara("sql", "-s", "travel_history", "-p", "traveller_key=0123456789ab")
    assert unknown.exit_code == 0 and unknown.stderr.startswith("0 rows (data in crossings")


@pytest.mark.integration
def test_a_prefix_of_several_travellers_is_refused(history: Env) -> None:
    # Two stays whose keys share their first 12 characters (keyed hashes never do in practice; stays take any key).
    shared = "abcdef012345"
    stays = [samples.stay(f"s{i}", traveller_key=shared + str(i) * 20, entry_time=FIRST) for i in range(2)]
    history.write(history.messages(stays))
    query = parse_saved_query(
        "stay_history",
        "-- param: traveller_key String =\n-- key: traveller_key stays.traveller_key\n"
        "SELECT stay_id FROM stays WHERE startsWith(traveller_key, {traveller_key:String})",
    )
    with Reader(history.settings) as reader:
        with pytest.raises(ValueError, match="matches more than one traveller"):
            reader.prepare(query, {"traveller_key": shared})
        one = reader.prepare(query, {"traveller_key": shared + "1"})
        assert reader.table(query.sql, one.args).rows == [["s1"]]


def test_key_prefix_rules() -> None:
    assert key_prefix(" ABCDEF012345 ") == "abcdef012345"
    for bad in ("abcdef01234", "xyzxyzxyzxyz", ""):
        with pytest.raises(ValueError, match="at least 12 hex"):
            key_prefix(bad)
