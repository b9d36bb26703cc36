"""The analysts' Grafana dashboard runs: every SQL panel, its macros expanded as the ClickHouse plugin expands them,
sent through the sink's ClickHouse HTTP endpoint over simulated traffic, succeeds and returns rows.

The time range is the simulated period, as an analyst looking at replayed data would pick it. The provisioned
datasource is the one the panels name.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sinks.test_bi_http import FIRST_DAY, LAST_DAY, Warehouse, warehouse  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "analysts.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
# The views the issue names: every one is read by some panel.
VIEWS = (
    "daily_flows", "monthly_balance", "open_overstays_at", "overstay_rates_at", "registration_compliance",
    "alert_counts", "alert_states",
)  # fmt: skip


def sql_panels(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, rawSql) of every query of every panel, rows' nested panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["rawSql"]))
    return found


def expand(sql: str, start: datetime, end: datetime) -> str:
    """The macros as grafana-clickhouse-datasource expands them (pkg/macros/macros.go), for the range start..end."""

    def datetime_of(t: datetime) -> str:
        return f"toDateTime({int(t.timestamp())})"

    def date_of(t: datetime) -> str:
        return f"toDate('{t.astimezone(UTC).strftime('%Y-%m-%d')}')"

    macros = {
        "timeFilter": lambda c: f"{c} >= {datetime_of(start)} AND {c} <= {datetime_of(end)}",
        "dateFilter": lambda c: f"{c} >= {date_of(start)} AND {c} <= {date_of(end)}",
        "timeFrom": lambda c: f"{c} >= {datetime_of(start)}",
        "timeTo": lambda c: f"{c} <= {datetime_of(end)}",
    }
    sql = re.sub(r"\$__(\w+)\(([^()]*)\)", lambda m: macros[m.group(1)](m.group(2).strip()), sql)
    sql = sql.replace("$__fromTime", datetime_of(start)).replace("$__toTime", datetime_of(end))
    assert "$" not in sql, sql
    return sql


def test_the_expansion_follows_the_plugin() -> None:
    start, end = datetime(2026, 9, 7, tzinfo=UTC), datetime(2026, 9, 8, 12, tzinfo=UTC)
    got = expand("WHERE $__dateFilter(day) AND $__timeFilter(t) AND x < $__toTime", start, end)
    assert got == (
        "WHERE day >= toDate('2026-09-07') AND day <= toDate('2026-09-08') AND t >= toDateTime(1788739200) "
        "AND t <= toDateTime(1788868800) AND x < toDateTime(1788868800)"
    )


def test_the_panels_use_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    (source,) = [d for d in provisioned if d["type"] == "grafana-clickhouse-datasource"]
    assert source["jsonData"]["protocol"] == "http" and source["jsonData"]["username"] == "analyst"
    assert source["secureJsonData"]["password"] == "$CLICKHOUSE_ANALYST_PASSWORD"  # from the environment, never here
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) == len(sql_panels(dashboard)) >= 12
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]), panel["title"]
    text = " ".join(sql for _, sql in sql_panels(dashboard))
    for view in VIEWS:
        assert re.search(rf"\bFROM {view}\b", text), view


def test_every_panel_query_returns_rows(warehouse: Warehouse) -> None:  # noqa: F811
    """As Grafana would send it: clickhouse-connect over HTTP as the analyst, the range being the simulated period."""
    start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
    end = datetime.combine(LAST_DAY, datetime.min.time(), UTC) + timedelta(days=1) - timedelta(seconds=1)
    client = warehouse.client()
    empty, failed = [], []
    for title, sql in sql_panels(json.loads(DASHBOARD.read_text())):
        try:
            result = client.query(expand(sql, start, end))
        except Exception as exc:  # every failing panel is reported, not just the first
            failed.append(f"{title}: {exc}")
            continue
        # Rows with something in them: a total over no data is still one row, of zeros.
        if not any(value not in (0, None, "") for row in result.result_rows for value in row):
            empty.append(title)
    client.close()
    assert not failed, "\n".join(failed)
    assert not empty, empty
