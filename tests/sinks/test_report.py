"""The analysts' side: saved queries, `shekara sql`, the dashboard in text and HTML (real chDB engine)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from harness import samples
from schemas.records import AlertType, Checkpoint, CheckpointKind, Direction
from sinks import cli
from sinks.analyst import ALMATY, QueryError, parse_saved_query, query_table, run_query, saved_queries, split_format
from sinks.report import build_dashboard, render_html, render_text
from tests.sinks.test_sink_transforms import Env, env  # noqa: F401 - the fixture

KORDAI = Checkpoint("KZ-KG-KORDAI", CheckpointKind.ROAD, "KGZ")


def test_saved_query_headers_are_parsed():
    q = parse_saved_query(
        "x",
        "-- title: T\n-- description: a\n-- description: b\n-- param: days UInt16 = 30\n-- param: k String =\nSELECT 1",
    )
    assert (q.title, q.description) == ("T", "a b")
    assert q.arguments({"days": "7"}) == {"days": "7", "k": ""}
    with pytest.raises(ValueError, match="no parameter"):
        q.arguments({"nope": "1"})


def test_every_saved_query_is_documented():
    catalogue = saved_queries()
    assert len(catalogue) >= 10
    text = (Path(__file__).resolve().parents[2] / "docs" / "warehouse.md").read_text(encoding="utf-8")
    for name, q in catalogue.items():
        assert q.title != name, f"{name} has no title"
        assert f"`{name}`" in text, f"{name} missing from docs/warehouse.md"


def test_split_format():
    assert split_format("SELECT 1 FORMAT JSONEachRow;", "pretty") == ("SELECT 1", "JSONEachRow")
    assert split_format("SELECT 1", "csv") == ("SELECT 1", "CSVWithNames")


@pytest.fixture
def loaded(env: Env) -> Env:  # noqa: F811
    """A small warehouse with recent data: 6 entries and 2 exits, one overstay, alerts."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    crossings = [samples.crossing(f"in{i}", event_time=now - timedelta(days=i), nationality="UZB") for i in range(4)]
    crossings += [samples.crossing(f"kg{i}", event_time=now, checkpoint=KORDAI, nationality="KGZ") for i in range(2)]
    crossings += [
        samples.crossing(f"out{i}", event_time=now, nationality="UZB", direction=Direction.EXIT) for i in range(2)
    ]
    stays = [
        samples.stay("late", entry_time=now - timedelta(days=45)),  # open, 30 allowed: overstaying
        replace(samples.stay("ok", entry_time=now - timedelta(days=45)), exit_time=now - timedelta(days=20)),
    ]
    alerts = [samples.alert("a1", due_time=now), samples.alert("a2", type=AlertType.WINDOW_BREACH, due_time=now)]
    alerts.append(samples.alert("a3", due_time=now - timedelta(days=1)))
    env.write(env.messages(crossings + stays + alerts))
    return env


@pytest.mark.integration
def test_dashboard_text_and_html(loaded: Env):
    dashboard = build_dashboard(loaded.settings)
    sections = {s.name: s for s in dashboard.sections}
    flows = sections["flows_by_day"].table
    assert sum(r["entries"] for r in flows.records()) == 6
    assert sum(r["exits"] for r in flows.records()) == 2
    balance = {r["nationality"]: r["balance"] for r in sections["balance_by_nationality"].table.records()}
    assert balance == {"UZB": 2, "KGZ": 2}
    rates = sections["overstay_rates_by_nationality"].table.records()
    assert [(r["nationality"], r["expected"], r["in_country"], r["overstay_rate_pct"]) for r in rates] == [
        ("UZB", 2, 1, 50.0)
    ]
    alerts = {r["type"]: r["raised"] for r in sections["top_alert_types"].table.records()}
    assert alerts == {"IN_COUNTRY_OVERSTAY": 2, "WINDOW_BREACH": 1}

    text = render_text(dashboard)
    assert "Overstay rate by nationality" in text and "50.00" in text and "WINDOW_BREACH" in text
    page = render_html(dashboard)
    assert page.count("<svg") == sum(1 for s in dashboard.sections if s.chart and s.table.rows)
    assert "<script" not in page  # self-contained, opens offline
    assert "IN_COUNTRY_OVERSTAY raised: 2" in page  # bar tooltips carry the values
    assert "N1234567" not in page and "N1234567" not in text  # no document numbers, ever


@pytest.mark.integration
def test_dashboard_as_of_a_past_day(loaded: Env):
    # The loaded data is recent: judged at 40 days ago, the flows of the last 30 days hold only the entries
    # before that day, and the overstay that began 45 days ago was not yet due (30 days allowed, day 1 = entry).
    now = datetime.now(UTC) - timedelta(hours=1)
    # Days are Almaty days (the dashboard's, and the domain's): late in the UTC evening it is already tomorrow there.
    past = build_dashboard(loaded.settings, as_of=(now - timedelta(days=40)).astimezone(ALMATY).date())
    sections = {s.name: s for s in past.sections}
    assert sum(r["entries"] for r in sections["flows_by_day"].table.records()) == 0
    assert sections["open_overstays"].table.rows == []
    assert sections["top_alert_types"].table.rows == []
    later = build_dashboard(loaded.settings, as_of=(now - timedelta(days=2)).astimezone(ALMATY).date())
    flows = {s.name: s for s in later.sections}["flows_by_day"].table.records()
    assert sum(r["entries"] for r in flows) == 2  # entries 2 and 3 days ago; not the ones since
    assert f"as of {later.as_of}" in " ".join(render_text(later).split())


@pytest.mark.integration
def test_sql_formats_and_read_only(loaded: Env):
    csv = run_query(loaded.settings, "SELECT nationality, count() AS n FROM crossings GROUP BY 1 ORDER BY 1", "CSV")
    assert csv.decode().splitlines() == ['"nationality","n"', '"KGZ",2', '"UZB",6']
    doc = json.loads(run_query(loaded.settings, "SELECT count() AS n FROM crossings", "JSON"))
    assert doc["data"] == [{"n": 8}]
    assert "│" in run_query(loaded.settings, "SELECT 1 AS one").decode()  # pretty table
    with pytest.raises(QueryError, match=r"(?i)readonly"):
        run_query(loaded.settings, "DROP TABLE crossings")
    assert query_table(loaded.settings, "SELECT count() AS n FROM crossings").rows == [[8]]


@pytest.mark.integration
def test_cli_sql_and_report(loaded: Env, tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cli, "get_settings", lambda: loaded.settings)
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    listed = runner.invoke(app, ["sql", "--list"])
    assert listed.exit_code == 0 and "overstay_rates" in listed.output
    out = runner.invoke(app, ["sql", "--saved", "top_alert_types", "--param", "days=7", "--format", "CSV"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[1:] == ['"IN_COUNTRY_OVERSTAY",2,0,0', '"WINDOW_BREACH",1,0,0']
    bad = runner.invoke(app, ["sql", "SELEC nonsense"])
    assert bad.exit_code == 1
    page = tmp_path / "dash.html"
    rep = runner.invoke(app, ["report", "--html", str(page)])
    assert rep.exit_code == 0, rep.output
    assert "Entries and exits per day" in rep.output
    assert page.read_text().startswith("<!doctype html>")
