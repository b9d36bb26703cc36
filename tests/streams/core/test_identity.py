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
from streams.core import TravellerState
from streams.core.identity import (
    Link,
    LinkBook,
    continued_history,
    hand_over,
    link_of,
    outgoing,
    retired,
    take_late,
)
from streams.core.model import STATUS, from_us
from streams.core.traveller import is_linked, pass_on
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
THIRD = person(number="THIRD7777")


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
    was, now = (OLD, NEW) if old.key == key_of(OLD) else (NEW, THIRD)
    renewal = [e for e in old.state.history if e[2] == STATUS and e[4] == StatusChangeKind.DOCUMENT_REPLACED][-1]
    link = Link(_pkey(was), _pkey(now), now.document, renewal[1], from_us(renewal[0]))
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
    old.state = retired(old.state, link)
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


# --- late events of the old document, after the handoff (streams.core.identity.take_late) ----------------------

# Entry on A on 1 March (30 days allowed, visa-free), renewed A -> B on 30 March, left on B on 4 April: 35 days, an
# overstay. Uploaded late, after the renewal was handed off: an exit on A on 15 March and a re-entry on 28 March.
# With them, the person was in for 15 days, then for 8: no overstay.
A_IN = entry("2026-03-01 09:00", who=OLD, eid="a-in")
A_OUT = exit_("2026-03-15 18:00", who=OLD, eid="a-late-out")
A_BACK = entry("2026-03-28 09:00", who=OLD, eid="a-late-in")
B_OUT = exit_("2026-04-04 18:00", who=NEW, eid="b-out")
LATE_RENEWAL = _renewal("2026-03-30 10:00")


def _forward(old: Run, new: Run, watermark: datetime) -> list[str]:
    """What the shell does with a retired state's outbox: forwarded to the new key and merged (or passed on
    again by a retired new key); the ids too old to re-order."""
    assert old.state is not None and new.state is not None
    events, old.state = outgoing(old.state)
    if new.state.successor is not None:
        new.state = pass_on(new.state, events)
        return []
    result, too_old = take_late(
        new.state, events, watermark=watermark, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS
    )
    new.state = result.state
    new.alerts.extend(result.alerts)
    new.stays.extend(result.stays)
    return too_old


def _late_reference(late: list) -> Run:
    link = link_of(LATE_RENEWAL)
    assert link is not None
    return _feed_apart(continued_history([A_IN, *late, LATE_RENEWAL], [B_OUT], link), NEW)


def test_the_late_events_change_the_verdict() -> None:
    without, with_late = _late_reference([]), _late_reference([A_OUT, A_BACK])
    overstays = {AlertType.OUT_OF_COUNTRY_OVERSTAY.value, AlertType.IN_COUNTRY_OVERSTAY.value}
    assert AlertType.OUT_OF_COUNTRY_OVERSTAY.value in without.types()
    assert not overstays & set(with_late.types())
    assert sorted((s.entry_event_id, s.exit_event_id, s.days) for s in with_late.final_stays().values()) == [
        ("a-in", "a-late-out", 15),
        ("a-late-in", "b-out", 8),
    ]


@pytest.mark.parametrize("exit_first", [False, True], ids=["late-before-b-exit", "late-after-b-exit"])
@pytest.mark.parametrize("exit_before_handoff", [False, True], ids=["handoff-first", "b-exit-first"])
@pytest.mark.parametrize("together", [True, False], ids=["one-upload", "two-uploads"])
def test_late_old_document_events_after_the_handoff_are_judged_as_one_history(
    exit_first: bool, exit_before_handoff: bool, together: bool
) -> None:
    reference = _late_reference([A_OUT, A_BACK])
    old = _feed_apart([A_IN, LATE_RENEWAL], OLD)
    new = Run(key=key_of(NEW))
    if exit_before_handoff:
        new.feed([B_OUT], B_OUT.event_time)  # judged alone: an exit without entry, retracted by the merge
    _hand_over(old, new, B_OUT.event_time if exit_before_handoff else LATE_RENEWAL.event_time)
    if exit_first and not exit_before_handoff:
        new.feed([B_OUT], B_OUT.event_time)
    for upload in [[A_OUT, A_BACK]] if together else [[A_BACK], [A_OUT]]:  # the second upload out of order too
        taken = old.feed(upload, max(B_OUT.event_time, A_BACK.event_time))
        assert (taken.alerts, taken.stays, taken.rejected) == ([], [], [])  # not judged on the retired side
        assert taken.next_due is None
        seen = B_OUT.event_time if exit_first or exit_before_handoff else LATE_RENEWAL.event_time
        assert _forward(old, new, seen) == []
    if not exit_first and not exit_before_handoff:
        new.feed([B_OUT], B_OUT.event_time)
    assert old.state is not None and old.state.successor is not None and old.state.successor.outbox == ()
    records, stays = old.alerts + new.alerts, old.stays + new.stays
    assert _judged(records, stays) == _judged(reference.alerts, reference.stays)
    assert {a.traveller_key for a in final_alerts(records).values()} <= {key_of(OLD)}
    assert {s.traveller_key for s in final_stays(stays).values()} == {key_of(OLD)}
    # nothing twice: each record (id, revision) emitted once, under one key
    assert len({(a.alert_id, a.revision) for a in records}) == len(records)
    assert len({(s.stay_id, s.revision) for s in stays}) == len(stays)
    far = at("2027-01-01 00:00")  # every deadline passed
    reference.tick(far)
    new.tick(far)
    after = _judged(old.alerts + new.alerts, old.stays + new.stays)
    assert after == _judged(reference.alerts, reference.stays)


def test_a_redelivered_forward_changes_nothing() -> None:
    old = _feed_apart([A_IN, LATE_RENEWAL], OLD)
    new = Run(key=key_of(NEW))
    _hand_over(old, new, LATE_RENEWAL.event_time)
    new.feed([B_OUT], B_OUT.event_time)
    old.feed([A_OUT, A_BACK], B_OUT.event_time)
    assert old.state is not None and old.state.successor is not None
    sent = old.state.successor.outbox
    assert [e[1] for e in sent] == ["a-late-out", "a-late-in"]
    _forward(old, new, B_OUT.event_time)
    once = new.state
    assert once is not None
    result, too_old = take_late(
        once, sent, watermark=B_OUT.event_time, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS
    )
    assert (result.alerts, result.stays, too_old) == ([], [], [])
    assert result.state.to_bytes() == once.to_bytes()
    # the same upload reaching the retired state again is known: nothing queued, nothing forwarded
    again = old.feed([A_OUT], B_OUT.event_time)
    assert again.state.successor is not None and again.state.successor.outbox == ()


def test_a_late_event_older_than_the_persons_folded_history_is_reported() -> None:
    # A's history was folded at the renewal (a 29-day gap); the person's on B after the exit (a long gap again).
    # An upload older than B's base cannot be re-ordered: named, not merged silently.
    later_out = exit_("2026-04-30 18:00", who=NEW, eid="b-out-2")
    old = _feed_apart([A_IN, LATE_RENEWAL], OLD)
    new = Run(key=key_of(NEW))
    _hand_over(old, new, LATE_RENEWAL.event_time)
    new.feed([B_OUT], B_OUT.event_time)
    new.feed([entry("2026-04-20 09:00", who=NEW, eid="b-in"), later_out], later_out.event_time)
    assert new.state is not None and new.state.base_key is not None
    old.feed([A_OUT], later_out.event_time)
    assert _forward(old, new, later_out.event_time) == ["a-late-out"]


def test_a_retired_state_keeps_its_link_through_its_bytes() -> None:
    old = _feed_apart([A_IN, LATE_RENEWAL], OLD)
    assert old.state is not None and not is_linked(old.state.to_bytes())  # format 2, as before
    link = link_of(LATE_RENEWAL)
    assert link is not None
    gone = retired(old.state, link)
    data = gone.to_bytes()
    assert is_linked(data) and TravellerState.from_bytes(data).to_bytes() == data
    assert TravellerState.from_bytes(data).successor == gone.successor
    assert gone.successor is not None
    assert (gone.successor.new_key, gone.successor.link_id) == (_pkey(NEW), link.event_id)
    held = Run(key=key_of(OLD), state=gone).feed([A_OUT, A_BACK], B_OUT.event_time).state
    back = TravellerState.from_bytes(held.to_bytes())
    assert back.to_bytes() == held.to_bytes() and back.successor is not None
    assert [e[1] for e in back.successor.outbox] == ["a-late-out", "a-late-in"]
    sent, emptied = outgoing(back)
    assert [e[1] for e in sent] == ["a-late-out", "a-late-in"]
    assert is_linked(emptied.to_bytes()) and TravellerState.from_bytes(emptied.to_bytes()).successor == (
        link.event_id,
        _pkey(NEW),
        gone.successor.at,
        (),
    )
    assert retired(back, link).successor == back.successor  # a renewal redelivered keeps what is still queued


def test_a_chain_passes_late_events_on_to_the_last_document() -> None:
    # A -> B -> C, both handoffs done; then a late upload on A: A forwards to B, B (retired) passes it on to C.
    link_ab = link_of(LATE_RENEWAL)
    bc = _renewal("2026-04-02 10:00", NEW, THIRD)
    link_bc = link_of(bc)
    c_out = exit_("2026-04-04 18:00", who=THIRD, eid="c-out")
    assert link_ab is not None and link_bc is not None
    on_b = continued_history([A_IN, A_OUT, A_BACK, LATE_RENEWAL], [bc], link_ab)
    reference = _feed_apart(continued_history(on_b, [c_out], link_bc), THIRD)
    a, b, c = _feed_apart([A_IN, LATE_RENEWAL], OLD), Run(key=key_of(NEW)), Run(key=key_of(THIRD))
    _hand_over(a, b, LATE_RENEWAL.event_time)
    b.feed([bc], bc.event_time)
    _hand_over(b, c, bc.event_time)
    c.feed([c_out], c_out.event_time)
    a.feed([A_OUT, A_BACK], c_out.event_time)
    _forward(a, b, bc.event_time)
    assert b.state is not None and b.state.successor is not None and len(b.state.successor.outbox) == 2
    _forward(b, c, c_out.event_time)
    records, stays = a.alerts + b.alerts + c.alerts, a.stays + b.stays + c.stays
    assert _judged(records, stays) == _judged(reference.alerts, reference.stays)
    assert AlertType.OUT_OF_COUNTRY_OVERSTAY.value not in {a.type.value for a in final_alerts(records).values()}
    assert {s.traveller_key for s in final_stays(stays).values()} == {key_of(OLD)}


def test_the_old_booklets_watch_list_is_still_judged_on_its_key_after_the_handoff() -> None:
    # A reported lost, then crossed (LOST_STOLEN_DOCUMENT), renewed to B. The handoff leaves that alert standing
    # (the person's replay, without the booklet's report, used to retract it); a crossing on the lost A after the
    # renewal raises it on A's retired side, once, and is forwarded to the person's history like any other event.
    lost = status("2026-02-01 10:00", StatusChangeKind.DOCUMENT_LOST, who=OLD, eid="a-lost")
    used = entry("2026-02-03 09:00", who=OLD, eid="a-used")
    renewal = _renewal("2026-02-05 10:00")
    old = _feed_apart([lost, used, renewal], OLD)
    [raised] = old.alerts
    assert (raised.type, raised.action.value) == (AlertType.LOST_STOLEN_DOCUMENT, "RAISED")
    new = Run(key=key_of(NEW))
    assert _hand_over(old, new, renewal.event_time) == []  # not retracted under the person's key
    assert new.state is not None
    assert AlertType.LOST_STOLEN_DOCUMENT.value not in {e.alert.type for e in new.state.emitted.values()}
    again = entry("2026-02-20 09:00", who=OLD, eid="a-used-again")
    taken = old.feed([again], again.event_time)
    assert [(a.type, a.action.value, a.traveller_key) for a in taken.alerts] == [
        (AlertType.LOST_STOLEN_DOCUMENT, "RAISED", key_of(OLD))
    ]
    assert taken.stays == [] and taken.next_due is None
    assert old.feed([again], again.event_time).alerts == []  # a redelivery: known, nothing again
    _forward(old, new, again.event_time)
    assert new.state is not None and "a-used-again" in {e[1] for e in new.state.history}
    assert AlertType.LOST_STOLEN_DOCUMENT not in {a.type for a in new.alerts}
    lost_alerts = [a for a in old.alerts + new.alerts if a.type == AlertType.LOST_STOLEN_DOCUMENT]
    assert len({(a.alert_id, a.revision) for a in lost_alerts}) == len(lost_alerts) == 2
    assert all(a.action.value == "RAISED" for a in final_alerts(lost_alerts).values())
