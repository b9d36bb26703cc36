"""The warehouse agrees with the alerts (issue 16, item 1), over every day of a simulated run.

Simulated traffic (faults included) goes through the real broker, a real worker and the real sink into chDB.
Then, for every day D of the run, the travellers `open_overstays_at(as_of = D)` counts must be exactly the
travellers with an IN_COUNTRY_OVERSTAY alert open at the start of D (due by then, and not resolved by an exit
or a new entry before then), and the in-country column of `overstay_rates_at` must count the same stays.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from harness import readback
from harness.evaluate import EvaluationConfig, simulation_config
from harness.simulator import publish
from harness.stack import Stack
from schemas.records import Alert, AlertAction, AlertType
from shekara.rules import load_rules
from shekara.settings import Settings
from sinks.clickhouse import connect

DAYS = 45  # longer than the 30-day limit, so stays run out while the people are still in the country


def _open_at(alert: Alert, start: datetime) -> bool:
    """An IN_COUNTRY_OVERSTAY alert open at `start`: due by then, and not closed (exit or new entry) before."""
    if alert.due_time > start:
        return False
    if alert.action == AlertAction.RAISED:
        return True
    closed = alert.details.get("close_t")
    return alert.action == AlertAction.RESOLVED and closed is not None and datetime.fromisoformat(closed) > start


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a 45-day run: about 3 minutes on 2 idle cores
def test_open_overstays_equal_open_in_country_alerts_on_every_day(settings: Settings, tmp_path: Path) -> None:
    config = EvaluationConfig(days=DAYS, seed=11, scale=0.01, faults=True)
    sim = simulation_config(config, settings)
    with Stack(settings, tmp_path / "stack", workers=1, embedded_broker=False) as stack:
        publish(sim, stack.settings, speed=None, progress=False)
        stack.wait_processed()
        stack.wait_landed()
        stack.stop_sink()  # releases the chDB directory
        records = readback.read_alerts(stack.settings)
    latest = {a.alert_id: a for a in records}  # topic order: an alert's records share a partition
    final = readback.final_alerts(records)  # ids raised and not retracted (each with its RAISED record)
    in_country = [latest[i] for i, a in final.items() if a.type == AlertType.IN_COUNTRY_OVERSTAY]
    rules = load_rules(settings.rules_file)
    days = [sim.start + timedelta(days=i) for i in range(1, DAYS + 1)]

    client = connect(settings, readonly=True)
    try:
        differences = []
        alert_days = 0
        for d in days:
            start = rules.day_start(d)
            alerts = Counter(a.traveller_key for a in in_country if _open_at(a, start))
            travellers, stays = client.query(
                "SELECT sum(travellers), sum(open_overstays) FROM open_overstays_at(as_of = {d:Date})",
                parameters={"d": d},
            ).result_rows[0]
            rates = client.query(
                "SELECT sum(in_country_overstays) FROM overstay_rates_at(as_of = {d:Date})", parameters={"d": d}
            ).result_rows[0][0]
            alert_days += len(alerts)
            assert max(alerts.values(), default=0) <= 1, f"{d}: a traveller with two open in-country alerts"
            if (travellers, stays, rates) != (len(alerts),) * 3:
                differences.append(
                    f"{d}: warehouse {travellers} travellers / {stays} stays / rates {rates}, alerts {len(alerts)}"
                )
                if len(differences) == 1:  # what the warehouse holds for the first day's travellers, to see why
                    for k in list(alerts)[:8]:
                        rows = client.query(
                            "SELECT stay_id, revision, outcome, entry_time, exit_time, close_time, allowed_until"
                            " FROM stays WHERE traveller_key = {k:String} ORDER BY entry_time, revision",
                            parameters={"k": k},
                        ).result_rows
                        alert = next(a for a in in_country if a.traveller_key == k)
                        differences.append(f"  alert {alert.action} due {alert.due_time} {alert.details}: {rows}")
        outcomes = dict(
            client.query("SELECT outcome, count() FROM stays FINAL GROUP BY outcome").result_rows  # type: ignore[arg-type]
        )
        revised = client.query("SELECT count() FROM stays FINAL WHERE revision > 0").result_rows[0][0]
    finally:
        client.close()
    print(
        f"in-country alerts: {len(in_country)}; traveller-days open: {alert_days}; stays: {outcomes}; "
        f"revised stays: {revised}"
    )
    assert differences == [], "\n".join(differences)
    # the run must have exercised what it claims: overstayers still in, overstayers who left, closes of open stays
    assert len(in_country) >= 5 and alert_days >= 20
    assert outcomes.get("OPEN", 0) > 0 and outcomes.get("LATE", 0) > 0
    assert revised > 0
