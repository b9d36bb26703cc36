"""Identity continuity: the pure link logic of a renewed document (streams.core.identity, docs/alerts.md).

A renewed passport is the same person: joined through the DOCUMENT_REPLACED link, the two documents' histories
count the 90/180 days together and close a stay opened on the old passport with an exit on the new one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from schemas.records import Alert, AlertType, Direction, StatusChange, StatusChangeKind, Stay, Traveller
from shekara.pseudonym import partition_key
from streams.core.identity import LinkBook, continued_history, hand_over, link_of, retired
from tests.streams.core.factory import (
    CHECKPOINTS,
    NOW,
    RULES,
    Run,
    at,
    entry,
    exit_,
    final_alerts,
    final_stays,
    key_of,
    person,
    registration,
    run,
    status,
)

OLD = person(number="OLD123456")
NEW = person(number="NEW654321")


def _renewal(when: str, old: Traveller = OLD, new: Traveller = NEW) -> StatusChange:
    s = status(when, StatusChangeKind.DOCUMENT_REPLACED, who=old, eid=f"renew-{old.document.number}")
    return replace(s, new_document_number=new.document.number, new_document_issuing_country="UZB")


def _trip(first: str, last: str, who: Traveller) -> list:
    return [
        entry(f"{first} 09:00", who=who),
        registration(f"{first} 12:00", reg_id=f"R-{who.document.number}-{first}", who=who),
        exit_(f"{last} 18:00", who=who),
    ]


def _pkey(t: Traveller) -> str:
    return partition_key(t.document.issuing_country, t.document.number)


def _as_new(events: list) -> Run:
    """The new document's traveller fed `events` (the processors' state for the new document's key)."""
    r = Run(key=key_of(NEW))
    r.feed(events, max(e.event_time for e in events))
    return r


# --- links ------------------------------------------------------------------------------------------------------


def test_only_a_replacement_with_its_new_document_makes_a_link() -> None:
    link = link_of(_renewal("2026-03-01 10:00"))
    assert link is not None
    assert (link.old_key, link.new_key) == (_pkey(OLD), _pkey(NEW))
    assert link.new_document == NEW.document and link.event_id == "renew-OLD123456"
    assert link_of(status("2026-03-01 10:00", StatusChangeKind.DOCUMENT_LOST, who=OLD)) is None
    assert link_of(replace(_renewal("2026-03-01 10:00"), new_document_number=None)) is None


def test_renewals_chain_back_to_the_first_document() -> None:
    third = person(number="THIRD7777")
    a_b = link_of(_renewal("2026-03-01 10:00"))
    b_c = link_of(_renewal("2027-03-01 10:00", NEW, third))
    assert a_b is not None and b_c is not None
    book = LinkBook.of([b_c, a_b])  # in either order
    assert book.canonical(_pkey(third)) == book.canonical(_pkey(NEW)) == book.canonical(_pkey(OLD)) == _pkey(OLD)
    assert book.add(a_b) == book  # the same link again (a redelivery) changes nothing
    assert LinkBook().canonical("unlinked") == "unlinked"


def test_a_loop_or_a_second_past_is_refused_in_one_line() -> None:
    a_b = link_of(_renewal("2026-03-01 10:00"))
    b_a = link_of(_renewal("2026-04-01 10:00", NEW, OLD))
    other = link_of(_renewal("2026-05-01 10:00", person(number="OTHER1234"), NEW))
    assert a_b is not None and b_a is not None and other is not None
    book = LinkBook.of([a_b])
    with pytest.raises(ValueError, match=r"^link renew-NEW654321: .*close a loop\)$"):
        book.add(b_a)
    assert book.problem(other) is not None and "already replaces another document" in (book.problem(other) or "")


# --- one history across the renewal ------------------------------------------------------------------------------


def test_a_renewed_passport_does_not_reset_the_90_180_count() -> None:
    # 61 days on the old passport (30 + 30 + 1, January to March), renewed abroad on 20 March, then 30 days on the
    # new one (4 April - 3 May): 91 days present in 180 on 3 May. Each document alone is within the limit.
    old = _trip("2026-01-01", "2026-01-30", OLD) + _trip("2026-02-01", "2026-03-02", OLD)
    old += _trip("2026-03-04", "2026-03-04", OLD)
    new = _trip("2026-04-04", "2026-05-03", NEW)
    renewal = _renewal("2026-03-20 10:00")
    link = link_of(renewal)
    assert link is not None
    assert _as_new(new).types() == []  # the new document alone: its first 30 days, no breach
    joined = _as_new(continued_history([*old, renewal], new, link))
    assert joined.types() == [AlertType.WINDOW_BREACH.value]
    [breach] = joined.final_alerts().values()
    assert breach.details["count"] == "91" and breach.details["day"] == "2026-05-03"
    assert breach.traveller_key == key_of(NEW)


def test_a_stay_opened_on_the_old_passport_is_closed_by_an_exit_on_the_new_one() -> None:
    # In the country since 1 March on the old passport (30 days allowed), renewed at a consulate on 10 March,
    # left on 20 April on the new one: an out-of-country overstay, not an exit without entry.
    arrival = entry("2026-03-01 09:00", who=OLD)
    renewal = _renewal("2026-03-10 10:00")
    departure = exit_("2026-04-20 18:00", who=NEW)
    link = link_of(renewal)
    assert link is not None
    assert _as_new([departure]).types() == [AlertType.EXIT_WITHOUT_ENTRY.value]  # each document alone
    joined = _as_new(continued_history([arrival, renewal], [departure], link))
    assert AlertType.EXIT_WITHOUT_ENTRY.value not in joined.types()
    assert AlertType.OUT_OF_COUNTRY_OVERSTAY.value in joined.types()
    [stay] = joined.final_stays().values()
    assert (stay.entry_event_id, stay.exit_event_id) == (arrival.event_id, departure.event_id)


def test_the_old_booklets_watch_list_does_not_follow_the_person() -> None:
    lost = status("2026-02-01 10:00", StatusChangeKind.DOCUMENT_LOST, who=OLD)
    renewal = _renewal("2026-02-05 10:00")
    trip = _trip("2026-03-01", "2026-03-05", NEW)
    link = link_of(renewal)
    assert link is not None
    joined = continued_history([lost, renewal], trip, link)
    assert lost.event_id not in {e.event_id for e in joined}
    assert AlertType.LOST_STOLEN_DOCUMENT.value not in _as_new(joined).types()
    assert run([lost, entry("2026-03-01 09:00", who=OLD)]).types() == [AlertType.LOST_STOLEN_DOCUMENT.value]
    assert all(e.traveller.document == NEW.document for e in joined)
    assert [e.direction for e in joined if hasattr(e, "direction")] == [Direction.ENTRY, Direction.EXIT]


def test_an_event_of_a_third_document_is_refused() -> None:
    link = link_of(_renewal("2026-03-01 10:00"))
    assert link is not None
    stranger = entry("2026-01-01 09:00", who=person(number="OTHER1234"))
    with pytest.raises(ValueError, match="is not on the replaced document of link renew-OLD123456"):
        continued_history([stranger], [], link)
    assert at("2026-03-01 10:00") == link.at


# --- the processors' handoff: two states merged into one (streams.core.identity.merge_states) -----------------


def _feed_apart(events: list, who: Traveller) -> Run:
    """`who`'s traveller fed its events one at a time, the watermark following (history folds as it goes)."""
    r = Run(key=key_of(who))
    for ev in sorted(events, key=lambda e: e.event_time):
        r.feed([ev], ev.event_time)
    return r


def _hand_over(old: Run, new: Run, watermark: str | datetime) -> list[Alert]:
    """What the shell does (streams.handoff): the new partition merges and replays, the old one retires."""
    assert old.state is not None
    result = hand_over(
        old.state,
        new.state,
        watermark=at(watermark) if isinstance(watermark, str) else watermark,
        emitted_time=NOW,
        rules=RULES,
        checkpoints=CHECKPOINTS,
    )
    new.state = result.state
    new.alerts.extend(result.alerts)
    new.stays.extend(result.stays)
    old.state = retired(old.state)
    return result.alerts


def _judged(alerts: list[Alert], stays: list[Stay]) -> tuple[set[tuple], set[tuple]]:
    """Final alerts and stays without their subject (the merged person keeps the old key, the reference not)."""
    return (
        {(a.type.value, a.due_time, a.action.value, a.days_overstayed) for a in final_alerts(alerts).values()},
        {(s.entry_event_id, s.exit_event_id, s.days, s.days_over) for s in final_stays(stays).values()},
    )


OLD_TRIPS = _trip("2026-01-01", "2026-01-30", OLD) + _trip("2026-02-01", "2026-03-02", OLD)
OLD_TRIPS += _trip("2026-03-04", "2026-03-04", OLD)
NEW_TRIP = _trip("2026-04-04", "2026-05-03", NEW)


@pytest.mark.parametrize("handoff_after", [0, 1, 3], ids=["before", "after-entry", "after-trip"])
def test_merged_states_judge_as_one_history_whichever_comes_first(handoff_after: int) -> None:
    renewal = _renewal("2026-03-20 10:00")
    link = link_of(renewal)
    assert link is not None
    reference = _feed_apart(continued_history([*OLD_TRIPS, renewal], NEW_TRIP, link), NEW)
    old = _feed_apart([*OLD_TRIPS, renewal], OLD)
    assert old.state is not None and old.state.base is not None  # the old history was folded: no replay of it
    new = _feed_apart(NEW_TRIP[:handoff_after], NEW)
    seen = [e.event_time for e in NEW_TRIP[:handoff_after]]
    _hand_over(old, new, max([renewal.event_time, *seen]))  # at the new partition's watermark
    for ev in NEW_TRIP[handoff_after:]:
        new.feed([ev], ev.event_time)
    both = _judged(old.alerts + new.alerts, old.stays + new.stays)
    assert both == _judged(reference.alerts, reference.stays)
    assert [t for t, *_ in both[0]] == [AlertType.WINDOW_BREACH.value]  # 91 days in 180: counted over both
    assert all(a.traveller_key == key_of(OLD) for a in new.alerts)  # the person keeps the first document's key


def test_an_open_overstay_on_the_old_passport_stays_open_and_the_new_passports_exit_resolves_it() -> None:
    arrival = entry("2026-03-01 09:00", who=OLD)
    old = _feed_apart([arrival], OLD)
    old.tick("2026-04-10 00:00")  # 30 days allowed, last day 30 March: overstaying in the country
    [raised] = [a for a in old.final_alerts().values() if a.type == AlertType.IN_COUNTRY_OVERSTAY]
    old.feed([_renewal("2026-04-12 10:00")], "2026-04-12 10:00")
    new = Run(key=key_of(NEW))
    assert _hand_over(old, new, "2026-04-12 10:00") == []  # nothing changes: still open, same id
    assert old.tick("2026-06-01 00:00").alerts == [] and old.last is not None and old.last.next_due is None
    new.feed([exit_("2026-04-20 18:00", who=NEW)], "2026-04-20 18:00")
    latest = final_alerts(old.alerts + new.alerts)
    assert AlertType.EXIT_WITHOUT_ENTRY.value not in {a.type.value for a in latest.values()}
    assert latest[raised.alert_id].action.value == "RESOLVED"
    [stay] = new.final_stays().values()
    assert (stay.entry_event_id, stay.days_over) == (arrival.event_id, 21)


def test_what_the_new_passport_raised_alone_before_the_handoff_is_retracted_under_its_own_key() -> None:
    # The demo's case (seed 7): the exit on the new passport was judged, and its EXIT_WITHOUT_ENTRY raised, before
    # the renewal's handoff reached the new partition. The merge's retraction named the person's key, an id never
    # raised, and the alert raised alone stood.
    arrival, renewal = entry("2026-06-18 09:00", who=OLD), _renewal("2026-06-24 10:00")
    departure = exit_("2026-07-10 18:00", who=NEW)
    link = link_of(renewal)
    assert link is not None
    reference = _feed_apart(continued_history([arrival, renewal], [departure], link), NEW)
    old = _feed_apart([arrival, renewal], OLD)
    new = _feed_apart([departure], NEW)
    [alone] = new.alerts
    assert (alone.type, alone.traveller_key) == (AlertType.EXIT_WITHOUT_ENTRY, key_of(NEW))
    [alone_stay] = new.stays
    handed = old.state
    merged = _hand_over(old, new, departure.event_time)
    assert [(a.alert_id, a.action.value) for a in merged if a.traveller_key == key_of(NEW)] == [
        (alone.alert_id, "RETRACTED")
    ]
    records, stays = old.alerts + new.alerts, old.stays + new.stays
    assert _judged(records, stays) == _judged(reference.alerts, reference.stays)
    assert AlertType.EXIT_WITHOUT_ENTRY not in {a.type for a in final_alerts(records).values()}
    assert alone_stay.stay_id not in final_stays(stays)  # voided under the new key; the person's stay stands
    assert {a.traveller_key for a in final_alerts(records).values()} == {key_of(OLD)}
    assert [(s.entry_event_id, s.traveller_key) for s in final_stays(stays).values()] == [
        (arrival.event_id, key_of(OLD))
    ]
    before = new.state
    old.state = handed  # the handoff redelivered: nothing more to settle
    assert _hand_over(old, new, departure.event_time) == []
    assert new.state is not None and before is not None and new.state.to_bytes() == before.to_bytes()


def test_the_same_handoff_twice_merges_once() -> None:
    renewal = _renewal("2026-03-20 10:00")
    old = _feed_apart([*OLD_TRIPS, renewal], OLD)
    new = _feed_apart(NEW_TRIP[:1], NEW)
    handed = old.state
    _hand_over(old, new, "2026-04-04 12:00")
    once = new.state
    old.state = handed  # the redelivered record carries the same state
    assert _hand_over(old, new, "2026-04-04 12:00") == []
    assert new.state is not None and once is not None
    assert new.state.to_bytes() == once.to_bytes()


def test_a_chain_of_renewals_keeps_the_first_documents_key_and_counts_all_three() -> None:
    # 30 + 30 days on A (January, February), renewed to B, 20 days on B (March), renewed to C, 20 on C (April):
    # 91 days in 180 on C's 11th day in April; B and C alone never come near.
    third = person(number="THIRD7777")
    a_trips = _trip("2026-01-01", "2026-01-30", OLD) + _trip("2026-02-01", "2026-03-02", OLD)
    b_trip = _trip("2026-03-10", "2026-03-29", NEW)
    c_trip = _trip("2026-04-05", "2026-04-24", third)
    ab, bc = _renewal("2026-03-05 10:00"), _renewal("2026-04-01 10:00", NEW, third)
    link_ab, link_bc = link_of(ab), link_of(bc)
    assert link_ab is not None and link_bc is not None
    on_b = continued_history([*a_trips, ab], [*b_trip, bc], link_ab)
    reference = _feed_apart(continued_history(on_b, c_trip, link_bc), third)
    a, b, c = _feed_apart([*a_trips, ab], OLD), Run(key=key_of(NEW)), Run(key=key_of(third))
    _hand_over(a, b, ab.event_time)
    for ev in [*b_trip, bc]:
        b.feed([ev], ev.event_time)
    _hand_over(b, c, bc.event_time)
    for ev in c_trip:
        c.feed([ev], ev.event_time)
    records = a.alerts + b.alerts + c.alerts
    assert _judged(records, a.stays + b.stays + c.stays) == _judged(reference.alerts, reference.stays)
    assert [a.type.value for a in final_alerts(records).values()] == [AlertType.WINDOW_BREACH.value]
    assert {r.traveller_key for r in records} | {s.traveller_key for s in b.stays + c.stays} == {key_of(OLD)}
