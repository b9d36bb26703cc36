"""Step 4 of docs/alerts.md: the rolling window (90 in 180), visa runs, permits excluded."""

from __future__ import annotations

from datetime import date, timedelta

from schemas.ids import alert_id
from schemas.records import AlertType, EntryBasisKind, StatusChangeKind
from streams.core.window import counted_segments, first_breach
from tests.streams.core.factory import SYRYM, ZHAISAN, at, entry, exit_, person, registration, run, status

WB = AlertType.WINDOW_BREACH


def _trip(first: str, last: str, who=None, cp: str = ZHAISAN, basis=EntryBasisKind.VISA_FREE) -> list:
    """A stay from `first` to `last` (local dates), registered on arrival."""
    kw = {"who": who} if who is not None else {}
    return [
        entry(f"{first} 09:00", cp, basis=basis, **kw),
        registration(f"{first} 12:00", reg_id=f"R-{first}", **kw),
        exit_(f"{last} 18:00", cp, basis=basis, **kw),
    ]


# 2026: three 30-day visa-free stays with two-day gaps = 90 days present
RUNS = [("2026-01-01", "2026-01-30"), ("2026-02-01", "2026-03-02"), ("2026-03-04", "2026-04-02")]


def _visa_runs() -> list:
    return [ev for a, b in RUNS for ev in _trip(a, b)]


def test_three_visa_runs_of_30_days_are_exactly_90_and_allowed():
    r = run(_visa_runs())
    assert r.alerts == []
    assert [s.days for s in r.final_stays().values()] == [30, 30, 30]


def test_the_91st_day_in_180_is_a_breach_due_when_he_enters_that_day():
    history = _visa_runs() + _trip("2026-04-04", "2026-04-10")
    fourth = history[-3:]
    r = run(history)
    assert r.types() == ["WINDOW_BREACH"]
    [a] = r.final_alerts().values()
    entries = [ev.event_id for ev in history if ev.event_id.startswith("x") and ev.direction == "ENTRY"]
    assert a.alert_id == alert_id(WB.value, r.key, fourth[0].event_id)
    assert a.due_time == at("2026-04-04 09:00")  # not 00:00: he was abroad until his entry at 09:00
    assert a.evidence_event_ids == entries
    assert a.details["count"] == "91" and a.details["day"] == "2026-04-04"
    assert "91 days present in the 180 days to 2026-04-04 against a limit of 90" in a.reason
    assert "entered at KZ-RU-ZHAISAN 2026-04-04 09:00 Asia/Almaty that day" in a.reason


def test_the_window_slides_day_29_jun_breaches_30_jun_does_not():
    # [D-179, D] for D = 29 Jun is 1 Jan .. 29 Jun: 90 + 1 days; for D = 30 Jun it starts on 2 Jan
    assert run(_visa_runs() + _trip("2026-06-29", "2026-07-05")).types() == ["WINDOW_BREACH"]
    assert run(_visa_runs() + _trip("2026-06-30", "2026-07-05")).alerts == []


def test_breach_needs_d_within_the_per_entry_limit():
    # 60 days present, then a 45-day stay: day 31 of it is the per-entry overstay, not a window breach
    trips = _trip("2026-01-01", "2026-01-30") + _trip("2026-02-01", "2026-03-02")
    long_stay = _trip("2026-03-04", "2026-04-17")
    r = run(trips + long_stay)
    assert r.types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"]


def test_breach_only_while_present():
    # the window would overflow on the 91st day, but the person left the day before
    r = run(_visa_runs() + _trip("2026-04-04", "2026-04-04"))
    assert r.types() == ["WINDOW_BREACH"]  # present on 4 Apr itself (the crossing day counts)
    trips = _trip("2026-01-01", "2026-01-30") + _trip("2026-02-01", "2026-03-02") + _trip("2026-03-04", "2026-04-01")
    r = run(trips + _trip("2026-04-03", "2026-04-03"))  # 89 + 1 = 90: fine
    assert r.alerts == []


def test_open_stay_breach_fires_on_the_watermark():
    e = entry("2026-04-04 09:00")
    r = run([*_visa_runs(), e, registration("2026-04-04 12:00", reg_id="R-x")], watermark="2026-04-03 23:00")
    assert "WINDOW_BREACH" not in r.types()
    r.tick("2026-04-04 08:59")
    assert "WINDOW_BREACH" not in r.types()  # due when he is present: at his entry, not at midnight
    r.tick("2026-04-04 09:00")
    assert r.types() == ["WINDOW_BREACH"]


def test_eaeu_90_in_180_with_90_day_entries():
    rus = person("RUS", "R5555555")
    trips = _trip("2026-01-01", "2026-03-01", who=rus) + _trip("2026-03-10", "2026-04-08", who=rus)
    # 60 + 30 = 90, then one more day within 180
    r = run(trips + _trip("2026-04-20", "2026-04-21", who=rus))
    assert r.types() == ["WINDOW_BREACH"]


def test_short_stay_nationals_14_and_42():
    ind = person("IND", "I5555555")
    trips = [
        _trip(a, b, who=ind)
        for a, b in (("2026-01-01", "2026-01-14"), ("2026-01-20", "2026-02-02"), ("2026-02-10", "2026-02-23"))
    ]
    flat = [ev for t in trips for ev in t]
    assert run(flat).alerts == []
    assert run(flat + _trip("2026-03-01", "2026-03-01", who=ind)).types() == ["WINDOW_BREACH"]


def test_days_covered_by_a_work_permit_do_not_count():
    # a 30-day stay in which a work permit covered days 11..30 counts only 10 days
    permit = status(
        "2026-01-11 10:00",
        StatusChangeKind.WORK_PERMIT_ISSUED,
        valid_from=date(2026, 1, 11),
        valid_until=date(2026, 6, 30),
    )
    first = _trip("2026-01-01", "2026-01-30")
    later = _trip("2026-02-01", "2026-03-02") + _trip("2026-03-04", "2026-04-02") + _trip("2026-04-04", "2026-04-10")
    r = run([*first[:2], permit, first[2], *later])
    assert "WINDOW_BREACH" not in r.types()  # 10 + 30 + 30 + 7 = 77


def test_days_on_a_residence_or_visa_basis_do_not_use_up_the_visa_free_allowance():
    resident = _trip("2026-01-01", "2026-03-30", basis=EntryBasisKind.RESIDENCE_PERMIT)
    r = run([*resident, *_trip("2026-04-02", "2026-04-20")])
    assert r.alerts == []
    visa_free = (
        _trip("2026-01-01", "2026-01-30") + _trip("2026-02-01", "2026-03-02") + _trip("2026-03-04", "2026-03-30")
    )
    assert run([*visa_free, *_trip("2026-04-02", "2026-04-20")]).types() == ["WINDOW_BREACH"]


def test_before_27_jan_2023_visa_runs_were_legal():
    trips = [
        ("2022-10-01", "2022-10-30"),
        ("2022-11-01", "2022-11-30"),
        ("2022-12-02", "2022-12-31"),
        ("2023-01-02", "2023-01-20"),
    ]
    r = run([ev for a, b in trips for ev in _trip(a, b)])
    assert r.alerts == []


def test_window_counts_ignore_stays_older_than_180_days_after_pruning():
    # eight months of monthly 20-day trips: each window sees at most 6 * 20 = 120 > 90 ... so breaches are
    # found; the point is that the result only depends on the last 180 days
    trips = []
    day = date(2026, 1, 1)
    for _ in range(8):
        trips += _trip(day.isoformat(), (day + timedelta(days=19)).isoformat(), cp=SYRYM)
        day += timedelta(days=30)
    r = run(trips)
    breaches = [a for a in r.final_alerts().values() if a.type == WB]
    assert breaches and all(len(a.evidence_event_ids) <= 7 for a in breaches)


# --- the counting functions themselves --------------------------------------------------------------


def test_counted_segments_cut_out_permit_days():
    assert counted_segments(10, 40, []) == [(10, 40)]
    assert counted_segments(10, 40, [(20, 25)]) == [(10, 19), (26, 40)]
    assert counted_segments(10, 40, [(5, 50)]) == []
    assert counted_segments(10, 40, [(30, 50), (12, 12)]) == [(10, 11), (13, 29)]
    assert counted_segments(10, 9, []) == []


def test_first_breach_exact_boundaries():
    kw = dict(window_days=180, limit_days=90, covered=(), anchor="now")
    past = [(1, 30, "a"), (32, 61, "b"), (63, 92, "c")]  # 90 days
    assert first_breach(first=94, last_present=100, last_allowed=123, past=past, **kw) == (
        94,
        91,
        ["a", "b", "c", "now"],
    )
    assert first_breach(first=1 + 180, last_present=190, last_allowed=210, past=past, **kw) is None  # [2, 181]
    assert first_breach(first=180, last_present=180, last_allowed=209, past=past, **kw) == (
        180,
        91,
        ["a", "b", "c", "now"],
    )
    # within the limit when the current stay is short enough
    assert first_breach(first=94, last_present=93, last_allowed=123, past=past, **kw) is None
