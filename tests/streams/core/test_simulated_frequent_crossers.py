"""The simulator generates the cases of issue 16 item 3 (daily traders past 90/180 and 42/180, expulsions without
an end date), and the core and the simulator's ground truth agree on them, alert for alert and due time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from harness.simulator import SimulationConfig
from harness.simulator.anomalies import DAILY_TRADERS, banned_entry, window_breach
from harness.simulator.materialise import Materialiser
from harness.simulator.plan import PlannedCrossing, PlannedStatus
from harness.simulator.truth import traveller_truth
from harness.simulator.world import World
from schemas.records import AlertAction, AlertType, StatusChangeKind
from streams.core import TravellerState, step
from tests.streams.core.factory import CHECKPOINTS, RULES

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _core_alerts(world: World, events: list) -> dict[str, tuple[str, datetime]]:
    """Alert id -> (type, due time) the core raises for one simulated traveller, everything seen."""
    mat = Materialiser(world.catalogue)
    records = [mat.record(e, e.time) for e in events]
    key = events[0].person.key
    result = step(
        TravellerState.empty(key), records, watermark=world.end, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS
    )
    final: dict[str, tuple[str, datetime]] = {}
    for a in result.alerts:
        if a.action == AlertAction.RETRACTED:
            final.pop(a.alert_id, None)
        elif a.due_time <= world.end:
            final[a.alert_id] = (a.type.value, a.due_time)
    return final


def _truth(world: World, events: list) -> dict[str, tuple[str, datetime]]:
    expected = traveller_truth(events, traveller_key=events[0].person.key, rules=world.rules, end=world.end)
    return {x.alert_id: (str(x.type), x.due_time) for x in expected if x.alert_id and x.due_time}


@pytest.mark.parametrize("days", [60, 120])
def test_daily_traders_breach_once_and_the_core_agrees_with_the_truth(days: int) -> None:
    world = World(SimulationConfig(days=days, seed=5, scale=0.01))
    traders = 0
    for i in range(40):
        for j in window_breach(world, random.Random(f"trader:{i}"), world.start).journeys:
            crossings = [e for e in j.events if isinstance(e, PlannedCrossing)]
            if crossings[0].checkpoint.id not in DAILY_TRADERS.values() or len({c.time.date() for c in crossings}) < 40:
                continue  # a visa runner
            traders += 1
            want = _truth(world, j.events)
            assert _core_alerts(world, j.events) == want
            breach = [(t, due) for t, due in want.values() if t == AlertType.WINDOW_BREACH.value]
            assert len(breach) == 1  # one per episode, however many day trips follow the breach
            # due at the entry on the breach day: an entry's event time, not a midnight
            assert breach[0][1] in {c.time for c in crossings}
    assert traders >= 5  # half the time when the period leaves room


def test_expulsions_without_an_end_date_are_generated_and_judged_alike() -> None:
    world = World(SimulationConfig(days=60, seed=5, scale=0.01))
    open_ended = 0
    for i in range(30):
        for j in banned_entry(world, random.Random(f"ban:{i}"), date(2026, 6, 3)).journeys:
            [order] = [e for e in j.events if isinstance(e, PlannedStatus) and e.kind == StatusChangeKind.EXPELLED]
            want = _truth(world, j.events)
            assert _core_alerts(world, j.events) == want
            if order.valid_until is None:
                open_ended += 1
                assert AlertType.BANNED_ENTRY.value in {t for t, _ in want.values()}
    assert open_ended >= 8
