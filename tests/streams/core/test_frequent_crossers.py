"""Step 4 of docs/alerts.md for frequent crossers: one WINDOW_BREACH per breach episode, due when the person is
present on the breach day, with words that say so.

Day counting by hand (rules/kz.toml): UZB is GENERAL visa-free, 30 days per entry, 90 in any 180; IND is
SHORT_STAY, 14 per entry, 42 in 180. A day trip (in 08:00, out 18:00) is one stay of one present day.
From 1 Jan 2026, day k is 1 Jan + (k - 1): day 90 = 31 Mar, day 91 = 1 Apr.
"""

from __future__ import annotations

from datetime import date, timedelta

from schemas.ids import alert_id
from schemas.records import AlertType, Crossing, EntryBasisKind, Traveller
from shekara.rules import load_rules
from streams.core.window import Interval, continues_episode
from tests.streams.core.factory import SYRYM, at, entry, exit_, person, run

WB = AlertType.WINDOW_BREACH
DAY1 = date(2026, 1, 1)
UZ = person("UZB", "U9100001")
IN = person("IND", "I9100001")


def day(k: int) -> date:
    return DAY1 + timedelta(days=k - 1)


def trips(first: int, last: int, who: Traveller = UZ, t_in: str = "08:00", t_out: str = "18:00") -> list[Crossing]:
    """A day trip on each of days first..last (in and out through the same post)."""
    out: list[Crossing] = []
    for k in range(first, last + 1):
        d = day(k).isoformat()
        out += [entry(f"{d} {t_in}", SYRYM, who=who), exit_(f"{d} {t_out}", SYRYM, who=who)]
    return out


def breaches(history: list[Crossing]) -> list:
    r = run(history)
    return sorted((a for a in r.final_alerts().values() if a.type == WB), key=lambda a: a.due_time)


def test_90_day_trips_in_a_row_are_within_the_limit():
    assert breaches(trips(1, 90)) == []


def test_a_daily_trader_gets_one_alert_on_day_91_due_at_his_entry_that_morning():
    history = trips(1, 95)  # five day trips over the limit: days 91..95
    r = run(history)
    found = [a for a in r.final_alerts().values() if a.type == WB]
    assert len(found) == 1  # one continuing violation, not one per day trip
    [a] = found
    day91_entry = history[2 * 90]
    assert a.alert_id == alert_id(WB.value, r.key, day91_entry.event_id)
    assert a.due_time == at("2026-04-01 08:00")  # he was abroad at 00:00 that day
    assert a.details["day"] == "2026-04-01" and a.details["count"] == "91"
    assert "91 days present in the 180 days to 2026-04-01 against a limit of 90" in a.reason
    assert f"entered at {SYRYM} 2026-04-01 08:00 Asia/Almaty that day" in a.reason
    assert "began" not in a.reason  # nothing claims he was present at midnight
    assert a.evidence_event_ids[-1] == day91_entry.event_id and len(a.evidence_event_ids) == 91


def test_the_breach_day_entry_time_is_the_due_time_on_both_sides_of_midnight():
    early = breaches(trips(1, 90) + trips(91, 91, t_in="00:00", t_out="00:30"))
    assert [a.due_time for a in early] == [at("2026-04-01 00:00")]
    late = breaches(trips(1, 90) + trips(91, 91, t_in="23:59", t_out="23:59"))
    assert [a.due_time for a in late] == [at("2026-04-01 23:59")]


def test_present_at_midnight_when_the_stay_began_the_day_before():
    # the 90th day trip runs overnight: in 22:00 on day 90, out 01:00 on day 91 - day 91 is present too
    overnight = [entry("2026-03-31 22:00", SYRYM, who=UZ), exit_("2026-04-01 01:00", SYRYM, who=UZ)]
    [a] = breaches(trips(1, 89) + overnight)
    assert a.due_time == at("2026-04-01 00:00")
    assert a.details["day"] == "2026-04-01" and a.details["entry_day"] == "2026-03-31"
    assert (
        f"in the country since the entry at {SYRYM} on 2026-03-31, so present when 2026-04-01 began "
        "2026-04-01 00:00 Asia/Almaty" in a.reason
    )
    # out one minute before midnight instead: 90 days, no breach
    before = [entry("2026-03-31 22:00", SYRYM, who=UZ), exit_("2026-03-31 23:59", SYRYM, who=UZ)]
    assert breaches(trips(1, 89) + before) == []


def test_out_and_back_in_on_the_breach_day_is_the_same_episode():
    # day 91: out at 12:00, back at 14:00, out again at 18:00 - two stays, one alert (the first)
    again = [entry("2026-04-01 14:00", SYRYM, who=UZ), exit_("2026-04-01 18:00", SYRYM, who=UZ)]
    history = trips(1, 90) + trips(91, 91, t_out="12:00") + again
    [a] = breaches(history)
    assert a.due_time == at("2026-04-01 08:00")


def test_the_episode_restarts_only_once_the_count_was_back_within_the_limit():
    # IND, 42 in 180: 45 day trips from 1 Jan breach on day 43 (12 Feb), days 44-45 continue the episode.
    first = trips(1, 45, who=IN)
    [a] = breaches(first)
    assert a.due_time == at("2026-02-12 08:00")
    # Back daily from day 184 (3 Jul): the window of day 183 holds days 4..45 = 42, within the limit, so the
    # episode is over. From day 184 on, each day in replaces a day leaving: 42 until the old days are gone;
    # day 226 (14 Aug) holds days 184..226 = 43: a new breach, a new alert.
    found = breaches(first + trips(184, 230, who=IN))
    assert [x.due_time for x in found] == [at("2026-02-12 08:00"), at("2026-08-14 08:00")]
    assert found[1].details["count"] == "43"
    # Back one day earlier (day 183): the window of day 182 holds days 3..45 = 43, still over the limit; from
    # then on the count never falls back to 42 (a day in for each day out), so it is one episode throughout.
    assert [x.due_time for x in breaches(first + trips(183, 230, who=IN))] == [at("2026-02-12 08:00")]


def test_a_stay_that_breaches_mid_stay_is_due_at_the_start_of_the_breach_day():
    # 30 + 30 days (1 Jan - 30 Jan, 31 Jan - 1 Mar) and a day trip on 2 Mar: days 1..61 present; away on 3 Mar
    # (day 62); in on 4 Mar (day 63) for 30 days, within its per-entry limit: day 92 (2 Apr) holds 61 + 30 = 91
    history = [entry("2026-01-01 09:00", SYRYM, who=UZ), exit_("2026-01-30 18:00", SYRYM, who=UZ)]
    history += [entry("2026-01-31 09:00", SYRYM, who=UZ), exit_("2026-03-01 18:00", SYRYM, who=UZ)]
    history += trips(61, 61)
    history += [entry("2026-03-04 09:00", SYRYM, who=UZ), exit_("2026-04-02 18:00", SYRYM, who=UZ)]
    [a] = breaches(history)
    assert a.due_time == at("2026-04-02 00:00") and a.details["entry_day"] == "2026-03-04"
    assert a.details["count"] == "91" and "so present when 2026-04-02 began" in a.reason


# --- the episode test itself -------------------------------------------------------------------------------


def _iv(a: int, b: int) -> Interval:
    return Interval(a, b, f"s{a}")


def test_continues_episode_at_the_boundaries():
    kw = {"window_days": 180, "limit_days": 90}
    assert not continues_episode(first=91, past=[_iv(1, 90)], **kw)  # day 90 holds 90: within the limit
    assert continues_episode(first=92, past=[_iv(1, 91)], **kw)  # day 91 held 91
    assert continues_episode(first=95, past=[_iv(1, 91)], **kw)  # away 92-94: the count only falls, still 91
    assert not continues_episode(first=1 + 181, past=[_iv(1, 91)], **kw)  # day 181's window starts on day 2: 90
    assert continues_episode(first=181, past=[_iv(1, 91)], **kw)  # day 180's window holds days 1..91
    # out and back in on day 91 itself: that day is in the earlier stay and over the limit
    assert continues_episode(first=91, past=[_iv(1, 91)], **kw)
    # out and back in on day 90: 90 days, within the limit
    assert not continues_episode(first=90, past=[_iv(1, 90)], **kw)
    # a same-day re-entry shares its day with the earlier stay: counted once
    assert not continues_episode(first=46, past=[_iv(1, 45), _iv(45, 45)], window_days=180, limit_days=45)


def test_the_rules_file_still_says_what_these_tests_assume():
    rules = load_rules()
    general = rules.stay_limit("UZB", EntryBasisKind.VISA_FREE, DAY1)
    short = rules.stay_limit("IND", EntryBasisKind.VISA_FREE, DAY1)
    assert (general.per_entry_days, general.window_days, general.window_limit_days) == (30, 180, 90)
    assert (short.per_entry_days, short.window_days, short.window_limit_days) == (14, 180, 42)
