"""Alert revisions (Alert schema v2): each record of an alert id carries the next revision, derived from the
state alone, so the warehouse can keep an alert's whole life (RAISED -> RETRACTED -> RAISED again, corrected
figures) and read its current state from the highest revision, and a replay numbers its records the same.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date

from harness.scoring import final_alerts
from schemas.records import Alert, AlertAction, EntryBasisKind, HostKind, Registration, StatusChangeKind
from streams.core import AddressState, Event, TravellerState, address_key, address_step, step
from streams.core.identity import hand_over
from tests.streams.core.factory import (
    CHECKPOINTS,
    KEY,
    NOW,
    RULES,
    Run,
    at,
    entry,
    exit_,
    key_of,
    person,
    registration,
    status,
)

PAK = person("PAK", "P7700001")
VISA = EntryBasisKind.VISA


def _by_id(alerts: list[Alert]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for a in alerts:
        out[a.alert_id].append((a.action.value, a.revision))
    return dict(out)


def _moved_overstay() -> tuple[Run, list[Event]]:
    """A visa overstay raised, retracted when a late extension moves its due time past the watermark, raised
    again when the new due time comes, and resolved by the exit."""
    r = Run(key=key_of(PAK))
    events: list[Event] = [
        entry("2026-03-01 10:00", who=PAK, basis=VISA, visa_expiry=date(2026, 3, 20)),
        registration("2026-03-01 12:00", who=PAK, reg_id="R-P1", valid_until=date(2026, 6, 1)),
    ]
    r.feed(events, "2026-03-22 10:00")  # past 20 March: overstaying
    extension = status("2026-03-15 10:00", StatusChangeKind.VISA_EXTENDED, who=PAK, valid_until=date(2026, 4, 10))
    r.feed([extension], "2026-03-22 11:00")  # late: it was extended in time, due 11 April now
    r.feed([], "2026-04-12 10:00")  # the new due time has come
    departure = exit_("2026-04-15 10:00", who=PAK, basis=VISA)
    r.feed([departure], "2026-04-15 10:00")
    return r, [*events, extension, departure]


def test_each_record_of_an_alert_id_takes_the_next_revision() -> None:
    r, _ = _moved_overstay()
    lives = _by_id(r.alerts)
    moved = [life for life in lives.values() if [a for a, _ in life][:3] == ["RAISED", "RETRACTED", "RAISED"]]
    assert moved == [[("RAISED", 0), ("RETRACTED", 1), ("RAISED", 2), ("RESOLVED", 3)]]
    for life in lives.values():
        assert [rev for _, rev in life] == list(range(len(life)))  # 0, 1, 2... per id, no gap, no repeat
    [(aid, _)] = [(i, life) for i, life in lives.items() if life == moved[0]]
    current = final_alerts(r.alerts)[aid]
    assert (current.action, current.revision, current.due_time) == (AlertAction.RESOLVED, 3, at("2026-04-11 00:00"))


def test_a_replay_numbers_its_records_the_same() -> None:
    # The processors restart from the last committed state and see the same events again (a crash): the records
    # they emit again carry the revisions the first run gave them, whatever the wall clock says now.
    first, _ = _moved_overstay()
    again = Run(key=key_of(PAK))
    events: list[Event] = [
        entry("2026-03-01 10:00", who=PAK, basis=VISA, visa_expiry=date(2026, 3, 20), eid="p-1"),
        registration("2026-03-01 12:00", who=PAK, reg_id="R-P1", valid_until=date(2026, 6, 1), eid="p-2"),
    ]
    again.feed(events, "2026-03-22 10:00")
    committed = again.state
    assert committed is not None
    ext = status("2026-03-15 10:00", StatusChangeKind.VISA_EXTENDED, who=PAK, valid_until=date(2026, 4, 10), eid="p-3")
    tail = [([ext], at("2026-03-22 11:00")), ([], at("2026-04-12 10:00"))]

    def run_from(state: TravellerState, wall: int) -> list[Alert]:
        out: list[Alert] = []
        for evs, wm in tail:
            res = step(
                state, evs, watermark=wm, emitted_time=NOW.replace(hour=wall), rules=RULES, checkpoints=CHECKPOINTS
            )
            state, out = res.state, out + res.alerts
        return out

    before_crash, after_restart = run_from(committed, 1), run_from(committed, 9)
    assert [(a.alert_id, a.action, a.revision) for a in before_crash] == [
        (a.alert_id, a.action, a.revision) for a in after_restart
    ]
    assert before_crash and before_crash != after_restart  # only the wall clock differs
    assert [(a.action.value, a.revision) for a in before_crash] == [("RETRACTED", 1), ("RAISED", 2)]
    # and it numbers the records as the first run did
    firsts = {(a.action.value, a.revision) for a in first.alerts}
    assert {(a.action.value, a.revision) for a in before_crash} <= firsts


def test_an_address_alert_is_raised_again_with_the_next_revision_when_its_figures_change() -> None:
    address = "ul. Abaya 1, kv. 2"
    ak = address_key("KZ-75", address, KEY)

    def reg(i: int, when: str) -> Registration:
        return registration(
            when, reg_id=f"A-{i}", who=person("UZB", f"N{5100000 + i}"), host=HostKind.PRIVATE_HOST, address=address
        )

    regs = [reg(i, f"2026-03-01 {8 + i:02d}:00") for i in range(11)]
    state, raised = address_step(
        AddressState.empty(ak), regs, traveller_key_of=lambda r: key_of(r.traveller), emitted_time=NOW, rules=RULES
    )
    assert [(a.action.value, a.revision) for a in raised] == [("RAISED", 0)]
    # a late registration before the eleventh: the same alert's evidence grows, or another alert is anchored
    late = reg(11, "2026-03-01 07:30")
    state, again = address_step(
        state, [late], traveller_key_of=lambda r: key_of(r.traveller), emitted_time=NOW, rules=RULES
    )
    lives = _by_id(raised + again)
    assert all([rev for _, rev in life] == list(range(len(life))) for life in lives.values())
    assert any(len(life) > 1 for life in lives.values()), lives


def test_a_handoff_retracts_what_the_new_document_raised_with_its_next_revision() -> None:
    old_doc, new_doc = person("UZB", "U7100001"), person("UZB", "U7100002")
    old = Run(key=key_of(old_doc))
    old.feed([entry("2026-06-18 09:00", who=old_doc)], "2026-06-18 09:00")
    renewal = status("2026-06-24 10:00", StatusChangeKind.DOCUMENT_REPLACED, who=old_doc)
    renewal = replace(renewal, new_document_number="U7100002", new_document_issuing_country="UZB")
    old.feed([renewal], "2026-06-24 10:00")
    new = Run(key=key_of(new_doc))
    new.feed([exit_("2026-07-10 18:00", who=new_doc)], "2026-07-10 18:00")
    [alone] = new.alerts
    assert (alone.action, alone.revision) == (AlertAction.RAISED, 0)
    assert old.state is not None
    result = hand_over(
        old.state, new.state, watermark=at("2026-07-10 18:00"), emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS
    )
    assert [(a.action, a.revision) for a in result.alerts if a.alert_id == alone.alert_id] == [
        (AlertAction.RETRACTED, 1)
    ]


def test_the_final_set_reads_the_highest_revision_whatever_the_order() -> None:
    r, _ = _moved_overstay()
    records = r.alerts
    assert final_alerts(reversed(records)) == final_alerts(records)  # the warehouse has no order but revisions
    replayed = records + [replace(a, emitted_time=NOW.replace(year=2031)) for a in records[:2]]
    assert final_alerts(replayed).keys() == final_alerts(records).keys()
