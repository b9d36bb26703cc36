"""The standard dashboard: flows, migration balance, overstay rates, registration compliance, top alerts.

`build_dashboard` runs the saved queries (read-only, through `sinks.analyst`); `render_text` and
`render_html` are pure renderings of the result, the HTML one with inline SVG charts (no scripts, no
network: the file opens anywhere).
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from shekara.settings import Settings
from sinks.analyst import DEFAULT_DATA, Reader, SavedQuery, Table, saved_queries


@dataclass(frozen=True)
class Chart:
    label: str | tuple[str, ...]  # column(s) with the bar labels
    series: tuple[str, ...]  # numeric columns, one bar colour each
    horizontal: bool = True


@dataclass(frozen=True)
class Panel:
    query: str  # saved query name (sinks/queries)
    params: dict[str, Any] = field(default_factory=dict)
    chart: Chart | None = None
    limit_rows: int = 25  # rows shown in the text report


DASHBOARD: tuple[Panel, ...] = (
    Panel("flows_by_day", {"days": 30}, Chart("day", ("entries", "exits"), horizontal=False), limit_rows=31),
    Panel("flows_by_checkpoint", {"days": 30, "top": 15}, Chart("checkpoint_id", ("entries", "exits"))),
    Panel("balance_by_nationality", {"months": 12, "top": 15}, Chart("nationality", ("balance",))),
    Panel("overstay_rates_by_nationality", {"months": 12, "top": 15}, Chart("nationality", ("overstay_rate_pct",))),
    Panel("open_overstays", {"top": 15}, Chart(("nationality", "entry_checkpoint"), ("open_overstays",))),
    Panel("registration_compliance", {"months": 12}, None),
    Panel("top_alert_types", {"days": 30}, Chart("type", ("raised", "resolved", "retracted"))),
)


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    description: str
    table: Table
    chart: Chart | None
    limit_rows: int


@dataclass(frozen=True)
class Dashboard:
    generated: datetime
    warehouse: str
    sections: tuple[Section, ...]
    as_of: date | None = None  # None: today (no data anywhere)
    as_of_from_data: bool = False  # as_of was not given: the last day with data


def build_dashboard(
    settings: Settings, panels: tuple[Panel, ...] = DASHBOARD, *, as_of: date | None = None
) -> Dashboard:
    """Run the dashboard's saved queries; `as_of`: the day they are judged at (default: the last day with data)."""
    catalogue = saved_queries()
    sections = []
    from_data = False
    with Reader(settings) as reader:
        if as_of is None:  # one day for every panel: the latest across the facts they read
            sources = {catalogue[p.query].data or DEFAULT_DATA for p in panels}
            lasts = [d for d in (reader.data_range(s).last for s in sorted(sources)) if d is not None]
            as_of, from_data = (max(lasts), True) if lasts else (None, False)
        for panel in panels:
            q: SavedQuery = catalogue[panel.query]
            given = {k: str(v) for k, v in panel.params.items()}
            if as_of is not None and any(p.name == "as_of" for p in q.params):
                given["as_of"] = as_of.isoformat()
            args = q.arguments(given)
            table = reader.table(q.sql, args)
            description = q.description
            for name, value in args.items():  # "over the last `days` days" -> "over the last 30 days"
                description = description.replace(f"`{name}`", str(value))
            sections.append(Section(q.name, q.title, description, table, panel.chart, panel.limit_rows))
    return Dashboard(datetime.now(UTC), _where(settings), tuple(sections), as_of, from_data)


def _where(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    return dsn.split("@", 1)[-1] if "@" in dsn else dsn  # no credentials in reports


# --- text ---------------------------------------------------------------------------------------------------


def render_text(dashboard: Dashboard, width: int = 120) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    console.print(
        f"Shekara dashboard - {dashboard.generated:%Y-%m-%d %H:%M} UTC - {dashboard.warehouse}"
        + (f" - as of {dashboard.as_of}" if dashboard.as_of else "")
        + (" (the last day with data)" if dashboard.as_of_from_data else "")
    )
    for s in dashboard.sections:
        console.print()
        console.print(Text(s.title, style="bold"))
        if s.description:
            console.print(Text(s.description))
        table = RichTable()
        for col, ctype in zip(s.table.columns, s.table.types, strict=True):
            table.add_column(col, justify="right" if _numeric(ctype) else "left")
        for row in s.table.rows[: s.limit_rows]:
            table.add_row(*(_cell(v) for v in row))
        if not s.table.rows:
            table.add_row(*(["-"] * len(s.table.columns)))
        console.print(table)
        if len(s.table.rows) > s.limit_rows:
            console.print(f"... {len(s.table.rows) - s.limit_rows} more rows (shekara sql, saved query {s.name})")
    return out.getvalue()


def _numeric(ctype: str) -> bool:
    base = ctype.removeprefix("Nullable(").removeprefix("LowCardinality(")
    return base.startswith(("Int", "UInt", "Float", "Decimal"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- HTML ---------------------------------------------------------------------------------------------------

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def render_html(dashboard: Dashboard) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Shekara dashboard</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}",
        "table{border-collapse:collapse;margin:.5em 0 2em;font-size:13px}",
        "th,td{border-bottom:1px solid #ddd;padding:3px 8px}td.n{text-align:right}th{text-align:left}",
        "h2{margin-top:1.8em}.desc{color:#555;font-size:14px}svg text{font-size:11px;fill:#333}",
        "</style></head><body>",
        "<h1>Shekara dashboard</h1>",
        f"<p class='desc'>Generated {dashboard.generated:%Y-%m-%d %H:%M} UTC from {html.escape(dashboard.warehouse)}"
        + (f", as of {dashboard.as_of}" if dashboard.as_of else "")
        + (" (the last day with data)." if dashboard.as_of_from_data else "."),
        " Aggregates only: travellers appear as pseudonymous keys, never by document.</p>",
    ]
    for s in dashboard.sections:
        parts.append(f"<h2 id='{s.name}'>{html.escape(s.title)}</h2>")
        if s.description:
            parts.append(f"<p class='desc'>{html.escape(s.description)}</p>")
        if s.chart is not None and s.table.rows:
            parts.append(svg_chart(s.table, s.chart))
        parts.append(_html_table(s.table, s.limit_rows))
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(table: Table, limit: int) -> str:
    numeric = [_numeric(t) for t in table.types]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows[:limit]:
        cells = "".join(
            f"<td class='n'>{html.escape(_cell(v))}</td>" if n else f"<td>{html.escape(_cell(v))}</td>"
            for v, n in zip(row, numeric, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    if not table.rows:
        body.append(f"<tr><td colspan='{len(table.columns)}'>no data</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def svg_chart(table: Table, chart: Chart) -> str:
    """A bar chart of `chart.series` by `chart.label`: horizontal bars, or vertical ones for a time axis."""
    records = table.records()
    label_columns = (chart.label,) if isinstance(chart.label, str) else chart.label
    labels = [" · ".join(str(r[c]) for c in label_columns) for r in records]
    values = [[float(r[s] or 0) for s in chart.series] for r in records]
    return (
        _bars_horizontal(labels, values, chart.series)
        if chart.horizontal
        else _bars_vertical(labels, values, chart.series)
    )


def _scale(values: list[list[float]]) -> tuple[float, float]:
    flat = [v for row in values for v in row] or [0.0]
    return min(0.0, min(flat)), max(0.0, max(flat)) or 1.0


def _legend(series: tuple[str, ...], x: int, y: int) -> str:
    items = []
    for i, name in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        items.append(
            f"<rect x='{x + i * 140}' y='{y}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{x + i * 140 + 14}' y='{y + 9}'>{html.escape(name)}</text>"
        )
    return "".join(items)


def _bars_horizontal(labels: list[str], values: list[list[float]], series: tuple[str, ...]) -> str:
    bar, gap, left, plot = 12, 6, 220, 600
    group = bar * len(series) + gap
    height = 30 + group * len(labels)
    low, high = _scale(values)
    span = (high - low) or 1.0
    zero = left + plot * (0 - low) / span
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + plot + 120}' height='{height}' role='img'>"]
    out.append(_legend(series, left, 4))
    for i, (label, row) in enumerate(zip(labels, values, strict=True)):
        y0 = 24 + i * group
        out.append(f"<text x='{left - 6}' y='{y0 + group / 2}' text-anchor='end'>{html.escape(label[:36])}</text>")
        for j, v in enumerate(row):
            x1 = left + plot * (v - low) / span
            x, w = min(zero, x1), abs(x1 - zero)
            colour = COLOURS[j % len(COLOURS)]
            out.append(
                f"<rect x='{x:.1f}' y='{y0 + j * bar}' width='{max(w, 0.5):.1f}' height='{bar - 1}' fill='{colour}'>"
                f"<title>{html.escape(label)} {html.escape(series[j])}: {_cell(_int_if_whole(v))}</title></rect>"
            )
            text_x, text_y = max(x1, zero) + 4, y0 + j * bar + bar - 2
            out.append(f"<text x='{text_x:.1f}' y='{text_y}'>{_cell(_int_if_whole(v))}</text>")
    out.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='20' y2='{height}' stroke='#888'/></svg>")
    return "".join(out)


def _bars_vertical(labels: list[str], values: list[list[float]], series: tuple[str, ...]) -> str:
    plot_h, top, bottom, left = 220, 24, 60, 50
    n = max(len(labels), 1)
    group = max(6, min(40, 900 // n))
    bar = max(2, (group - 2) // len(series))
    width = left + group * n + 20
    low, high = _scale(values)
    span = (high - low) or 1.0
    zero = top + plot_h * (high - 0) / span
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{top + plot_h + bottom}' role='img'>"]
    out.append(_legend(series, left, 4))
    out.append(f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{_cell(_int_if_whole(high))}</text>")
    for i, (label, row) in enumerate(zip(labels, values, strict=True)):
        x0 = left + i * group
        for j, v in enumerate(row):
            y1 = top + plot_h * (high - v) / span
            y, h = min(zero, y1), abs(zero - y1)
            colour = COLOURS[j % len(COLOURS)]
            out.append(
                f"<rect x='{x0 + j * bar}' y='{y:.1f}' width='{bar - 1}' height='{max(h, 0.5):.1f}' fill='{colour}'>"
                f"<title>{html.escape(label)} {html.escape(series[j])}: {_cell(_int_if_whole(v))}</title></rect>"
            )
        if i % max(1, n // 10) == 0:
            out.append(
                f"<text x='{x0}' y='{top + plot_h + 14}' transform='rotate(45 {x0} {top + plot_h + 14})'>"
                f"{html.escape(label)}</text>"
            )
    out.append(f"<line x1='{left}' x2='{width}' y1='{zero:.1f}' y2='{zero:.1f}' stroke='#888'/></svg>")
    return "".join(out)


def _int_if_whole(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v
