"""The core against the simulator's independent reading of docs/alerts.md, without Kafka.

The simulator's traffic (with its anomalies, duplicates, out-of-order and late uploads) is fed to `step` and
`address_step` in publish order, the watermark following the latest event time less the allowed lateness, as
the shell does. The final alert ids must be exactly the ground truth's, for alerts due before the cutoff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.scoring import expected_from_truth, final_alerts, score
from harness.simulator import FaultRates, SimulationConfig, simulate_with_truth
from schemas.records import Registration
from shekara.pseudonym import partition_key, traveller_key_of
from streams.core import AddressState, TravellerState, address_key, address_step, step
from streams.core.identity import person_keys
from tests.streams.core.factory import CHECKPOINTS, RULES

LATENESS = timedelta(hours=6)


@pytest.mark.slow
def test_final_alert_ids_equal_the_simulators_ground_truth():
    config = SimulationConfig(
        days=45, seed=11, scale=0.005, faults=FaultRates(duplicate=0.03, out_of_order=0.05, late_upload=0.2)
    )
    events, truth = simulate_with_truth(config)
    key = config.pseudonym_key
    now = datetime(2030, 1, 1, tzinfo=UTC)
    travellers: dict[str, TravellerState] = {}
    addresses: dict[str, AddressState] = {}
    records = []
    high: datetime | None = None
    # A renewed document goes on with its first document's key, as the processors' handoff merges it there.
    simulated = list(events)
    person = person_keys([sim.record for sim in simulated if sim.record is not None])
    for sim in simulated:
        r = sim.record
        if r is None:
            continue  # malformed payloads: the shell's validation rejects them
        doc = r.traveller.document
        who = traveller_key_of(person(partition_key(doc.issuing_country, doc.number)), key)
        high = r.event_time if high is None else max(high, r.event_time)
        state = travellers.get(who) or TravellerState.empty(who)
        result = step(state, [r], watermark=high - LATENESS, emitted_time=now, rules=RULES, checkpoints=CHECKPOINTS)
        assert result.rejected == []
        travellers[who] = result.state
        records += result.alerts
        if isinstance(r, Registration):
            ak = address_key(r.region, r.address, key)
            a, alerts = address_step(
                addresses.get(ak) or AddressState.empty(ak),
                [r],
                traveller_key_of=lambda _r, who=who: who,
                emitted_time=now,
                rules=RULES,
            )
            addresses[ak] = a
            records += alerts
    assert high is not None
    cutoff = high - LATENESS
    for state in travellers.values():
        records += step(state, [], watermark=cutoff, emitted_time=now, rules=RULES, checkpoints=CHECKPOINTS).alerts
    s = score(expected_from_truth(truth)[0], final_alerts(records), cutoff)
    expected_types = {t.type for t in s.per_type if t.expected}
    assert len(expected_types) >= 11, expected_types  # all but WINDOW_BREACH (needs months)
    assert (s.missed_ids, s.spurious_ids) == ([], [])
