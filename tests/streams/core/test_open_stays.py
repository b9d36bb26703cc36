"""Open stays reach the warehouse (issue 16): a stay with no exit is emitted once it passes its last allowed day,
again when it changes after that, and its close is its next revision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.ids import stay_id
from schemas.records import AlertType, Crossing, EntryBasisKind, Registration, StatusChangeKind
from tests.streams.core.factory import ALA, ZHAISAN, entry, exit_, person, registration, run, status


def _registered(e: Crossing) -> Registration:
    return registration(e.event_time + timedelta(hours=1))


def test_an_open_stay_is_emitted_when_it_becomes_overdue_and_not_before():
    e = entry("2026-03-01 10:00")  # 30-day limit: last allowed day 30 Mar, overdue from 31 Mar 00:00 Almaty
    r = run([e, _registered(e)], watermark="2026-03-30 23:59")
    assert r.stays == []
    assert r.last is not None and r.last.next_due == datetime(2026, 3, 30, 19, 0, tzinfo=UTC)
    r.tick("2026-03-31 00:00")
    [s] = r.stays
    assert s.stay_id == stay_id(r.key, e.event_id) and s.revision == 0
    assert (s.exit_event_id, s.exit_time, s.close_time, s.exit_checkpoint) == (None, None, None, None)
    assert (s.entry_event_id, s.entry_checkpoint, s.allowed_days, s.days, s.days_over) == (
        e.event_id,
        ZHAISAN,
        30,
        0,
        0,
    )
    # the alert it agrees with is due at the same moment
    assert [a.type for a in r.alerts] == [AlertType.IN_COUNTRY_OVERSTAY]
    r.tick("2026-04-02 00:00")
    assert len(r.stays) == 1, "an unchanged open stay is not emitted again"


def test_a_stay_closed_before_its_deadline_never_emits_an_open_record():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-03-10 00:00")
    r.feed([exit_("2026-03-20 10:00")], watermark="2026-04-10 00:00")
    [s] = r.stays
    assert s.revision == 0 and s.exit_time is not None and s.close_time == s.exit_time


def test_a_stay_superseded_by_a_new_entry_carries_the_entry_as_its_close():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-04-01 00:00")
    again = entry("2026-04-05 10:00", ALA)
    r.feed([again], watermark="2026-04-06 00:00")
    closed = r.final_stays()[stay_id(r.key, e.event_id)]
    assert closed.revision == 1 and closed.exit_time is None and closed.close_time == again.event_time


def test_an_extension_after_the_open_stay_was_emitted_revises_it_at_once():
    pak = person("PAK", "P7654321")
    e = entry("2026-03-01 10:00", who=pak, basis=EntryBasisKind.VISA, visa_expiry=date(2026, 3, 20))
    r = run([e, registration("2026-03-01 12:00", who=pak)], watermark="2026-03-22 00:00")
    [opened] = r.stays
    assert opened.allowed_days == 20
    # an extension recorded late (its event time before the overstay began): the warehouse must stop counting it
    ext = status("2026-03-15 10:00", StatusChangeKind.VISA_EXTENDED, who=pak, valid_until=date(2026, 4, 10))
    r.feed([ext], watermark="2026-03-22 01:00")
    revised = r.stays[-1]
    assert (revised.revision, revised.allowed_days, revised.close_time) == (1, 41, None)
