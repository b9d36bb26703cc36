"""Steps 2-3 of docs/alerts.md: stays, per-entry limits, overstays in and out of the country, day counting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.ids import alert_id, stay_id
from schemas.records import AlertAction, AlertType, EntryBasisKind, Purpose, Severity, StatusChangeKind
from tests.streams.core.factory import (
    ALMATY,
    RULES,
    SYRYM,
    ZHAISAN,
    Run,
    at,
    entry,
    exit_,
    person,
    registration,
    run,
    status,
)

IN, OUT = AlertType.IN_COUNTRY_OVERSTAY, AlertType.OUT_OF_COUNTRY_OVERSTAY


def _registered(e: object, **kw: object) -> object:
    """A hotel registration an hour after the entry (so only the stay limit is in play)."""
    return registration(e.event_time + timedelta(hours=1), **kw)  # type: ignore[attr-defined]


# --- a normal stay ----------------------------------------------------------------------------------


def test_stay_within_limit_gives_one_stay_and_no_alert():
    e, x = entry("2026-03-01 10:00"), exit_("2026-03-20 18:00", SYRYM)
    r = run([e, _registered(e), x])
    assert r.alerts == []
    [s] = r.stays
    assert s.stay_id == stay_id(r.key, e.event_id) and s.revision == 0
    assert (s.entry_event_id, s.exit_event_id) == (e.event_id, x.event_id)
    assert (s.entry_checkpoint, s.exit_checkpoint) == (ZHAISAN, SYRYM)
    assert (s.entry_time, s.exit_time) == (e.event_time, x.event_time)
    assert (s.days, s.allowed_days, s.days_over) == (20, 30, 0)
    assert (s.rule_id, s.rule_version) == ("visa-free-general", "2023-01-27")
    assert (s.nationality, s.entry_basis, s.purpose) == ("UZB", EntryBasisKind.VISA_FREE, Purpose.TOURISM)
    assert s.traveller_key == r.key


def test_open_stay_emits_nothing_and_asks_to_be_woken_at_its_deadline():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-03-02 00:00")
    assert r.alerts == [] and r.stays == []
    # day 31 begins 31 Mar 00:00 Almaty (UTC+5)
    assert r.last is not None and r.last.next_due == datetime(2026, 3, 30, 19, 0, tzinfo=UTC)


# --- in-country overstay ----------------------------------------------------------------------------


def test_in_country_overstay_fires_when_the_watermark_reaches_day_31():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-03-30 23:59")
    assert r.alerts == []
    r.tick("2026-03-31 00:00")
    [a] = r.alerts
    assert a.action == AlertAction.RAISED and a.type == IN
    assert a.alert_id == alert_id(IN.value, r.key, e.event_id)
    assert a.due_time == at("2026-03-31 00:00")
    assert a.severity == Severity.HIGH and a.checkpoint_id == ZHAISAN and a.nationality == "UZB"
    assert a.evidence_event_ids == [e.event_id]
    assert (a.rule_id, a.rule_version) == ("visa-free-general", "2023-01-27")
    assert a.details["rules_version"] == RULES.version
    assert "30-day limit" in a.reason and "2026-03-31 00:00 Asia/Almaty" in a.reason
    assert r.last is not None and r.last.next_due is None


def test_late_exit_resolves_the_in_country_alert_and_raises_an_out_of_country_one():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-04-01 00:00")
    x = exit_("2026-04-03 12:00")
    r.feed([x], watermark="2026-04-03 06:00")
    actions = [(a.type, a.action) for a in r.alerts]
    assert actions == [(IN, AlertAction.RAISED), (IN, AlertAction.RESOLVED), (OUT, AlertAction.RAISED)]
    out = r.alerts[-1]
    assert out.alert_id == alert_id(OUT.value, r.key, x.event_id)
    assert (
        out.days_overstayed == 4 and out.due_time == x.event_time and out.evidence_event_ids == [e.event_id, x.event_id]
    )
    assert "Left on day 34 against a 30-day limit" in out.reason and "4 days overstayed" in out.reason
    # the open stay reached the warehouse when it became overdue; the exit closes it (its next revision)
    opened, s = r.stays
    assert (opened.revision, opened.exit_time, opened.close_time, opened.days) == (0, None, None, 0)
    assert opened.allowed_days == 30 and opened.stay_id == s.stay_id
    assert (s.revision, s.close_time, s.exit_time) == (1, x.event_time, x.event_time)
    assert (s.days, s.allowed_days, s.days_over) == (34, 30, 4)


def test_replay_of_the_same_history_gives_raised_and_resolved_at_once():
    e, x = entry("2026-03-01 10:00"), exit_("2026-04-03 12:00")
    r = run([x, e, _registered(e)])  # any order, one batch
    assert [(a.type, a.action) for a in r.alerts] == [
        (IN, AlertAction.RAISED),
        (IN, AlertAction.RESOLVED),
        (OUT, AlertAction.RAISED),
    ]
    assert r.alerts[0].days_overstayed == 4


def test_exit_on_day_30_at_23_59_is_in_time():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e), exit_("2026-03-30 23:59")])
    assert r.alerts == [] and r.stays[0].days == 30


def test_exit_at_the_first_instant_of_day_31_is_an_overstay_of_one_day():
    e = entry("2026-03-01 10:00")
    x = exit_("2026-03-31 00:00")
    r = run([e, _registered(e), x])
    assert r.types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"]
    assert r.final_alerts()[alert_id(OUT.value, r.key, x.event_id)].days_overstayed == 1


def test_late_arriving_exit_before_the_deadline_retracts_the_alert():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e)], watermark="2026-04-02 00:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED]
    x = exit_("2026-03-29 12:00")  # an offline checkpoint uploads days late
    r.feed([x], watermark="2026-04-02 00:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED, AlertAction.RETRACTED]
    assert r.alerts[-1].alert_id == r.alerts[0].alert_id and r.alerts[-1].reason.startswith("Retracted")
    assert r.final_alerts() == {}
    assert r.stays[-1].exit_event_id == x.event_id and r.stays[-1].days == 29


# --- day counting ---------------------------------------------------------------------------------


def test_day_one_is_the_local_day_of_crossing_2330_vs_0030():
    late = run([entry("2026-03-01 23:30")], watermark="2026-03-01 23:59")
    early = run([entry("2026-03-02 00:30")], watermark="2026-03-02 00:59")
    assert late.last is not None and early.last is not None
    # registration deadlines too, but the overstay deadline is the latest pending one: compare stays' L+1
    assert late.state is not None and early.state is not None
    due_late = max(c[4] for c in late.state.pending.values())
    due_early = max(c[4] for c in early.state.pending.values())
    assert due_early - due_late == 24 * 3600 * 1_000_000
    assert datetime.fromtimestamp(due_late / 1e6, UTC).astimezone(ALMATY).date() == date(2026, 3, 31)


def test_day_boundaries_follow_the_utc6_to_utc5_change():
    # entered 10 Feb 2024 (UTC+6): L = 10 Mar; day 31 starts 11 Mar 00:00 at UTC+5 = 10 Mar 19:00 UTC
    e = entry("2024-02-10 09:00")
    r = run([e, _registered(e), exit_("2024-03-11 01:00")])
    alert = r.final_alerts()[alert_id(IN.value, r.key, e.event_id)]
    assert alert.due_time == datetime(2024, 3, 10, 19, 0, tzinfo=UTC)
    assert r.stays[0].days == 31


def test_entry_at_2330_utc_plus_6_on_leap_day_counts_29_feb():
    # 29 Feb 2024 17:30 UTC is 23:30 local (UTC+6): day 1 is 29 Feb; L = 29 Feb + 29 = 29 Mar
    e = entry(datetime(2024, 2, 29, 17, 30, tzinfo=UTC))
    r = run([e, _registered(e), exit_("2024-03-29 23:00")])
    assert r.alerts == [] and r.stays[0].days == 30
    r2 = run([e, _registered(e), exit_("2024-03-30 00:10")])
    assert r2.types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"]


def test_leap_years_2024_and_2028_against_2025_and_2027():
    for year, last in (
        (2024, date(2024, 3, 1)),
        (2025, date(2025, 3, 2)),
        (2028, date(2028, 3, 1)),
        (2027, date(2027, 3, 2)),
    ):
        e = entry(f"{year}-02-01 12:00")
        r = run([e, _registered(e)], watermark=f"{year}-02-01 13:00")
        assert r.state is not None
        due = max(c[4] for c in r.state.pending.values())
        assert RULES.local_date(datetime.fromtimestamp(due / 1e6, UTC)) == last + timedelta(days=1), year


# --- per-entry limits by group and basis -------------------------------------------------------------


def _limit(who: object, basis: EntryBasisKind = EntryBasisKind.VISA_FREE, **kw: object) -> int | None:
    e = entry("2026-03-01 10:00", who=who, basis=basis, **kw)  # type: ignore[arg-type]
    r = run([e, exit_("2026-03-02 10:00", who=who, basis=basis)])  # type: ignore[arg-type]
    return r.final_stays()[stay_id(r.key, e.event_id)].allowed_days


def test_allowed_days_by_nationality_group():
    assert _limit(person("UZB")) == 30
    assert _limit(person("RUS", "R1111111")) == 90
    assert _limit(person("CHN", "C1111111")) == 30
    assert _limit(person("IND", "I1111111")) == 14
    assert _limit(person("SYR", "S1111111"), EntryBasisKind.REFUGEE) is None
    assert _limit(person("DEU", "D1111111"), EntryBasisKind.RESIDENCE_PERMIT) is None


def test_visa_holder_until_expiry_and_extension():
    pak = person("PAK", "P1234567")
    e = entry("2026-03-01 10:00", who=pak, basis=EntryBasisKind.VISA, visa_expiry=date(2026, 3, 20))
    reg = registration("2026-03-01 12:00", who=pak)
    # exit on 22 Mar: 2 days over the visa
    r = run([e, reg, exit_("2026-03-22 10:00", who=pak, basis=EntryBasisKind.VISA)])
    assert r.types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"]
    assert r.stays[0].allowed_days == 20 and r.stays[0].days_over == 2
    # extended on 15 Mar to 10 Apr: in time
    ext = status("2026-03-15 10:00", StatusChangeKind.VISA_EXTENDED, who=pak, valid_until=date(2026, 4, 10))
    r = run([e, reg, ext, exit_("2026-03-22 10:00", who=pak, basis=EntryBasisKind.VISA)])
    assert r.alerts == [] and r.stays[0].allowed_days == 41
    # an extension issued after the visa ran out does not cure the overstay
    late_ext = status("2026-03-21 10:00", StatusChangeKind.VISA_EXTENDED, who=pak, valid_until=date(2026, 4, 10))
    r = run([e, reg, late_ext, exit_("2026-03-22 10:00", who=pak, basis=EntryBasisKind.VISA)])
    assert r.types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"]


def test_work_permit_issued_during_a_visa_free_stay_extends_it():
    e = entry("2026-03-01 10:00", purpose=Purpose.WORK)
    permit = status(
        "2026-03-10 10:00",
        StatusChangeKind.WORK_PERMIT_ISSUED,
        valid_from=date(2026, 3, 10),
        valid_until=date(2026, 9, 30),
    )
    x = exit_("2026-09-15 10:00")
    r = run([e, _registered(e), permit, x])
    assert r.alerts == []
    assert r.stays[0].allowed_days == (date(2026, 9, 30) - date(2026, 3, 1)).days + 1


def test_revoked_permit_leaves_grace_days_but_never_less_than_the_original_limit():
    e = entry("2026-03-01 10:00", purpose=Purpose.WORK)
    permit = status("2026-03-10 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, valid_until=date(2026, 9, 30))
    revoked = status("2026-06-01 10:00", StatusChangeKind.WORK_PERMIT_REVOKED)
    r = run([e, _registered(e), permit, revoked, exit_("2026-06-20 10:00")])
    # L = 1 Jun + 15 = 16 Jun; exit 20 Jun = 4 days over
    assert r.stays[0].allowed_days == (date(2026, 6, 16) - date(2026, 3, 1)).days + 1
    assert r.stays[0].days_over == 4
    early = status("2026-03-05 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, valid_until=date(2026, 9, 30))
    early_revoked = status("2026-03-06 10:00", StatusChangeKind.WORK_PERMIT_REVOKED)
    r = run([e, _registered(e), early, early_revoked, exit_("2026-03-30 10:00")])
    assert r.alerts == [] and r.stays[0].allowed_days == 30  # 6 Mar + 15 < original L (30 Mar)


def test_work_permit_basis_takes_the_permit_end_or_30_days():
    w = person("TJK", "T7654321")
    permit = status("2026-02-01 10:00", StatusChangeKind.WORK_PERMIT_ISSUED, who=w, valid_until=date(2026, 12, 31))
    e = entry("2026-03-01 10:00", who=w, basis=EntryBasisKind.WORK_PERMIT, purpose=Purpose.WORK)
    x = exit_("2026-11-01 10:00", who=w, basis=EntryBasisKind.WORK_PERMIT)
    reg = registration("2026-03-02 10:00", who=w)
    r = run([permit, e, reg, x])
    assert r.alerts == [] and r.stays[0].allowed_days == (date(2026, 12, 31) - date(2026, 3, 1)).days + 1
    assert r.stays[0].rule_id == "work-permit"
    r = run([e, reg, x])  # no permit on record: 30 days
    assert r.stays[0].allowed_days == 30 and "OUT_OF_COUNTRY_OVERSTAY" in r.types()


def test_refugee_status_without_end_extends_for_the_default_period():
    s = person("AFG", "A7654321")
    e = entry("2026-03-01 10:00", who=s)
    granted = status("2026-03-10 10:00", StatusChangeKind.REFUGEE_GRANTED, who=s, valid_from=date(2026, 3, 10))
    r = run([e, registration("2026-03-01 12:00", who=s), granted, exit_("2027-03-09 10:00", who=s)])
    assert r.alerts == []  # 10 Mar 2026 + 365 - 1 = 9 Mar 2027
    assert r.stays[0].allowed_days == (date(2027, 3, 9) - date(2026, 3, 1)).days + 1


def test_rule_change_mid_stay_the_law_at_entry_applies():
    # entered 20 Jan 2023 under the 2017 row (no window); still judged by it after 27 Jan 2023
    e = entry("2023-01-20 10:00")
    r = run([e, _registered(e), exit_("2023-02-15 10:00")])
    assert r.stays[0].rule_id == "visa-free-general-2017"


# --- stays: double entry, exit without entry ----------------------------------------------------------


def test_superseded_stay_is_closed_at_the_new_entry():
    e1, e2 = entry("2026-03-01 10:00"), entry("2026-03-10 09:00", SYRYM)
    x = exit_("2026-03-12 10:00", SYRYM)
    r = run([e1, registration("2026-03-01 12:00"), e2, x])
    stays = r.final_stays()
    first, second = stays[stay_id(r.key, e1.event_id)], stays[stay_id(r.key, e2.event_id)]
    assert first.exit_event_id is None and first.exit_time is None and first.days == 9
    assert (second.entry_event_id, second.exit_event_id, second.days) == (e2.event_id, x.event_id, 3)
    assert r.types() == ["DOUBLE_ENTRY"]


def test_superseded_stay_overstays_when_the_new_entry_comes_after_its_deadline():
    e1, e2 = entry("2026-03-01 10:00"), entry("2026-04-05 09:00")
    r = run([e1, registration("2026-03-01 12:00"), e2, registration("2026-04-05 10:00")], watermark="2026-04-06 00:00")
    assert r.types() == ["DOUBLE_ENTRY", "IN_COUNTRY_OVERSTAY"]
    a = r.final_alerts()[alert_id(IN.value, r.key, e1.event_id)]
    assert a.action == AlertAction.RESOLVED and "a new entry recorded" in a.reason


def test_citizens_get_no_stays():
    kaz = person("KAZ", "N0000001")
    r = run(
        [
            exit_("2026-03-01 10:00", who=kaz, basis=EntryBasisKind.CITIZEN),
            entry("2026-06-01 10:00", who=kaz, basis=EntryBasisKind.CITIZEN),
            entry("2026-06-05 10:00", who=kaz, basis=EntryBasisKind.CITIZEN),
        ]
    )
    assert r.alerts == [] and r.stays == []


def test_stay_id_and_revision_on_a_correction():
    e = entry("2026-03-01 10:00")
    r = run([e, _registered(e), exit_("2026-03-20 10:00")], watermark="2026-03-20 12:00")
    r.feed([exit_("2026-03-15 10:00", SYRYM)], watermark="2026-03-20 12:00")  # an earlier exit uploaded late
    by_rev = sorted(r.stays, key=lambda s: (s.stay_id, s.revision))
    first = [s for s in by_rev if s.stay_id == stay_id(r.key, e.event_id)]
    assert [s.revision for s in first] == [0, 1]
    assert first[0].days == 20 and first[1].days == 15 and first[1].exit_checkpoint == SYRYM
    # the later exit no longer closes that stay: it is an exit without entry now
    assert len(r.final_stays()) == 2


def test_step_does_not_modify_the_given_state():
    e = entry("2026-03-01 10:00")
    r = Run()
    r.feed([e], watermark="2026-03-01 11:00")
    before = r.state
    assert before is not None
    snapshot = before.to_bytes()
    r.feed([exit_("2026-03-05 10:00")], watermark="2026-03-05 11:00")
    assert before.to_bytes() == snapshot and r.state is not before
