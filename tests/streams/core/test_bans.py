"""Step 6 of docs/alerts.md: an expulsion order without an end date bans entry for the rules' default years.

rules/kz.toml: [ban] default_ban_years = 5. The ban starts on valid_from (the expulsion event's local day when
absent), which is day 1, and covers five whole years: its last day is the day before the fifth anniversary.
The anniversary of 29 February in a common year is 1 March, so a ban from 29 Feb 2028 ends on 28 Feb 2033.
"""

from __future__ import annotations

from datetime import date

import pytest

from schemas.records import Alert, AlertType, EntryBasisKind, StatusChange, StatusChangeKind
from shekara.rules import load_rules
from streams.core import Event
from tests.streams.core.factory import entry, exit_, person, run, status

BANNED = AlertType.BANNED_ENTRY
TJ = person("TJK", "T9200001")


@pytest.mark.parametrize(
    ("start", "last"),
    [
        (date(2026, 3, 3), date(2031, 3, 2)),
        (date(2028, 2, 29), date(2033, 2, 28)),  # leap day: the anniversary in a common year is 1 March
        (date(2027, 2, 28), date(2032, 2, 27)),  # into a leap year: 28 Feb 2032 is the anniversary
        (date(2026, 1, 1), date(2030, 12, 31)),
        (date(2026, 12, 31), date(2031, 12, 30)),
    ],
)
def test_default_ban_last_day(start: date, last: date) -> None:
    assert load_rules().ban.default_ban_years == 5
    assert load_rules().ban.last_day(start) == last


def _expelled(when: str, valid_from: date | None = None) -> StatusChange:
    return status(when, StatusChangeKind.EXPELLED, who=TJ, valid_from=valid_from, valid_until=None)


def _history(expelled: StatusChange, back: str) -> list[Event]:
    return [
        entry("2026-03-01 10:00", who=TJ),
        expelled,
        exit_("2026-03-04 10:00", who=TJ),
        entry(back, who=TJ),
    ]


def _banned(history: list[Event]) -> list[Alert]:
    return [a for a in run(history).final_alerts().values() if a.type == BANNED]


def test_an_expulsion_without_end_bans_for_five_years_from_valid_from():
    order = _expelled("2026-03-03 10:00", valid_from=date(2026, 3, 3))
    [a] = _banned(_history(order, "2031-03-02 23:59"))  # the last banned day, one minute before midnight
    assert a.details["until"] == "2031-03-02" and a.details["expelled_day"] == "2026-03-03"
    assert "under an entry ban until 2031-03-02" in a.reason
    assert _banned(_history(order, "2031-03-03 00:00")) == []  # the first free day, from its first minute


def test_without_valid_from_the_ban_starts_on_the_expulsion_day_local_time():
    # 2 Mar 23:30 in Almaty is still 2 Mar (UTC 18:30): the ban's day 1 is 2 Mar, its last day 1 Mar 2031
    order = _expelled("2026-03-02 23:30")
    assert [a.details["until"] for a in _banned(_history(order, "2031-03-01 12:00"))] == ["2031-03-01"]
    assert _banned(_history(order, "2031-03-02 12:00")) == []


def test_a_ban_from_29_february_ends_on_28_february():
    order = status("2028-02-29 10:00", StatusChangeKind.EXPELLED, who=TJ, valid_from=date(2028, 2, 29))
    history: list[Event] = [entry("2028-02-27 10:00", who=TJ), order, exit_("2028-03-01 10:00", who=TJ)]
    assert [a.details["until"] for a in _banned([*history, entry("2033-02-28 10:00", who=TJ)])] == ["2033-02-28"]
    assert _banned([*history, entry("2033-03-01 10:00", who=TJ)]) == []


def test_an_end_date_in_the_order_wins_over_the_default():
    order = status("2026-03-03 10:00", StatusChangeKind.EXPELLED, who=TJ, valid_until=date(2027, 3, 2))
    assert [a.details["until"] for a in _banned(_history(order, "2027-03-02 10:00"))] == ["2027-03-02"]
    assert _banned(_history(order, "2027-03-03 10:00")) == []


def test_a_citizen_is_never_refused_entry():
    kaz = person("KAZ", "K9200001")
    order = status("2026-03-03 10:00", StatusChangeKind.EXPELLED, who=kaz)
    assert _banned([order, entry("2026-04-01 10:00", who=kaz, basis=EntryBasisKind.CITIZEN)]) == []
