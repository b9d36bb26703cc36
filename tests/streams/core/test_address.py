"""Step 7 of docs/alerts.md: too many foreigners registered at one address (FICTITIOUS_ADDRESS)."""

from __future__ import annotations

import random
from datetime import date, timedelta

from schemas.ids import alert_id
from schemas.records import AlertAction, AlertType, HostKind, Registration, RegistrationAction, Severity
from shekara.pseudonym import pseudonymise
from streams.core import AddressState, address_key, address_step, normalise_address
from tests.streams.core.factory import KEY, NOW, RULES, at, final_alerts, key_of, person, registration

ADDRESS = "ul. Tole Bi 25, kv. 7"
AK = address_key("KZ-75", ADDRESS, KEY)


def _reg(
    i: int,
    when: str,
    *,
    host: HostKind = HostKind.PRIVATE_HOST,
    action=RegistrationAction.REGISTERED,
    reg_id=None,
    **kw,
) -> Registration:
    return registration(
        when, action, reg_id=reg_id or f"A-{i}", who=person("UZB", f"N{5000000 + i}"), host=host, address=ADDRESS, **kw
    )


def _feed(regs: list[Registration], state: AddressState | None = None, batch: int = 1) -> tuple[AddressState, list]:
    state = state or AddressState.empty(AK)
    out: list = []
    for i in range(0, len(regs), batch):
        state, alerts = address_step(
            state, regs[i : i + batch], traveller_key_of=lambda r: key_of(r.traveller), emitted_time=NOW, rules=RULES
        )
        out += alerts
    return state, out


def test_address_key_normalises_case_whitespace_and_punctuation():
    assert normalise_address("  ul. Tole  Bi 25,kv.7 ") == "UL TOLE BI 25 KV 7"
    assert address_key("KZ-75", "UL TOLE BI 25 KV 7", KEY) == AK
    assert pseudonymise("KZ-75|UL TOLE BI 25 KV 7", KEY, "address") == AK
    assert address_key("KZ-71", ADDRESS, KEY) != AK
    assert address_key("KZ-75", ADDRESS, b"other key") != AK


def test_eleventh_foreigner_at_a_private_address_raises_one_alert():
    regs = [_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(12)]
    _, alerts = _feed(regs)
    [a] = alerts
    eleventh = regs[10]
    assert a.type == AlertType.FICTITIOUS_ADDRESS and a.action == AlertAction.RAISED
    assert a.alert_id == alert_id("FICTITIOUS_ADDRESS", AK, eleventh.event_id)
    assert a.traveller_key == key_of(eleventh.traveller) and a.due_time == eleventh.event_time
    assert a.evidence_event_ids == [r.event_id for r in regs[:11]]
    assert a.details["address_key"] == AK and a.details["count"] == "11" and a.details["threshold"] == "10"
    assert a.severity == Severity.MEDIUM and a.rule_id == "address-crowding" and a.checkpoint_id is None
    assert "11 distinct foreigners" in a.reason and "above the threshold of 10" in a.reason


def test_ten_is_within_the_threshold_and_one_person_counts_once():
    assert _feed([_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(10)])[1] == []
    same = [_reg(0, f"2026-03-01 {8 + i:02d}:00", reg_id=f"A-again-{i}") for i in range(5)]
    assert _feed([_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(10)] + same)[1] == []


def test_hotels_and_station_desks_are_exempt_employers_have_their_own_threshold():
    assert _feed([_reg(i, "2026-03-01 10:00", host=HostKind.HOTEL) for i in range(30)])[1] == []
    assert _feed([_reg(i, "2026-03-01 10:00", host=HostKind.STATION) for i in range(30)])[1] == []
    workers = [_reg(i, f"2026-03-01 10:{i:02d}", host=HostKind.EMPLOYER) for i in range(59)] + [
        _reg(59 + i, f"2026-03-01 11:{i:02d}", host=HostKind.EMPLOYER) for i in range(3)
    ]
    _, alerts = _feed(workers)
    assert [a.details["count"] for a in alerts] == ["61"] and alerts[0].details["anchor_event_id"] == workers[
        60
    ].event_id


def test_only_registrations_valid_on_the_day_count():
    old = [_reg(i, "2026-01-01 10:00", valid_from=date(2026, 1, 1), valid_until=date(2026, 1, 31)) for i in range(8)]
    new = [
        _reg(100 + i, "2026-03-01 10:00", valid_from=date(2026, 3, 1), valid_until=date(2026, 3, 31)) for i in range(8)
    ]
    assert _feed(old + new)[1] == []


def test_cancellations_lower_the_count_and_rearm_the_check():
    regs = [_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(11)]
    cancels = [_reg(i, "2026-03-02 09:00", action=RegistrationAction.CANCELLED) for i in range(5)]
    again = [_reg(200 + i, f"2026-03-02 {10 + i:02d}:00") for i in range(6)]
    _, alerts = _feed(regs + cancels + again)
    # 11 -> alert; 5 cancelled -> 6; +1 = 7 re-arms; +4 = 11 again -> a second alert on the 5th newcomer
    assert [a.details["anchor_event_id"] for a in alerts] == [regs[10].event_id, again[4].event_id]


def test_out_of_order_arrival_gives_the_same_final_alerts():
    regs = [_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(11)]
    regs += [_reg(i, "2026-03-02 09:00", action=RegistrationAction.CANCELLED) for i in range(5)]
    regs += [_reg(200 + i, f"2026-03-02 {10 + i:02d}:00") for i in range(6)]
    reference = set(final_alerts(_feed(regs)[1]))
    rng = random.Random(11)
    for _ in range(20):
        shuffled = list(regs)
        rng.shuffle(shuffled)
        shuffled += shuffled[:3]  # duplicates
        assert set(final_alerts(_feed(shuffled, batch=rng.choice([1, 2, 5]))[1])) == reference


def test_a_late_cancellation_retracts():
    regs = [_reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(11)]
    state, alerts = _feed(regs)
    assert len(alerts) == 1
    late_cancel = _reg(3, "2026-03-01 12:30", action=RegistrationAction.CANCELLED)  # before the 11th came in
    state, more = _feed([late_cancel], state)
    assert [a.action for a in more] == [AlertAction.RETRACTED] and more[0].alert_id == alerts[0].alert_id


def test_state_round_trip_and_bounded_history():
    day = at("2026-03-01 08:00")
    regs = [
        registration(
            day + timedelta(days=i),
            who=person("UZB", f"N{6000000 + i}"),
            reg_id=f"B-{i}",
            host=HostKind.PRIVATE_HOST,
            address=ADDRESS,
            valid_until=(day + timedelta(days=i + 2)).date(),
        )
        for i in range(100)
    ]
    state, alerts = _feed(regs)
    assert alerts == []
    again = AddressState.from_bytes(state.to_bytes())
    assert again.to_bytes() == state.to_bytes() and again.address_key == AK
    assert len(state.history) <= 64 and len(state.cursor.active) < 70
