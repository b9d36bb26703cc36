"""Step 5 of docs/alerts.md: registration deadlines in working days, exemptions, re-registration."""

from __future__ import annotations

from schemas.ids import alert_id
from schemas.records import AlertAction, AlertType, EntryBasisKind, HostKind, Purpose, RegistrationAction, Severity
from tests.streams.core.factory import at, entry, exit_, person, registration, run

UNREG = AlertType.UNREGISTERED_STAY
CANCEL = RegistrationAction.CANCELLED


def _due(events: list, watermark: str = "2100-01-01 00:00") -> dict:
    """Final UNREGISTERED_STAY alerts of a history: anchor event id -> due time."""
    r = run(events, watermark=watermark)
    return {a.details["anchor_event_id"]: a.due_time for a in r.final_alerts().values() if a.type == UNREG}


def test_three_working_days_from_the_day_after_arrival():
    e = entry("2026-03-02 10:00")  # Monday; deadline Thursday 5 Mar
    assert _due([e], "2026-03-05 23:00") == {}
    r = run([e], watermark="2026-03-06 00:00")
    [a] = r.final_alerts().values()
    assert a.type == UNREG and a.due_time == at("2026-03-06 00:00")
    assert a.alert_id == alert_id(UNREG.value, r.key, e.event_id)
    assert a.severity == Severity.LOW and a.rule_id == "host-registration" and a.rule_version == "2011-07-01"
    assert "3 working days" in a.reason and "deadline 2026-03-05" in a.reason


def test_registration_on_the_last_day_is_in_time():
    e = entry("2026-03-02 10:00")
    assert _due([e, registration("2026-03-05 23:59")], "2026-03-20 00:00") == {}


def test_deadline_runs_over_the_weekend():
    e = entry("2026-03-05 10:00")  # Thursday -> Fri 6, Mon 9 is the observed Women's Day, Tue 10, Wed 11
    assert _due([e], "2026-03-20 00:00") == {e.event_id: at("2026-03-12 00:00")}


def test_deadline_runs_over_nauryz():
    e = entry("2026-03-20 10:00")  # Fri; 21-25 Mar holidays; Thu 26, Fri 27, Mon 30
    assert _due([e], "2026-04-05 00:00") == {e.event_id: at("2026-03-31 00:00")}


def test_deadline_runs_over_new_year_and_orthodox_christmas():
    e = entry("2025-12-31 10:00")  # 1-2 Jan holidays, weekend, Mon 5, Tue 6, 7 Jan holiday, Thu 8
    assert _due([e], "2026-01-20 00:00") == {e.event_id: at("2026-01-09 00:00")}


def test_eaeu_first_30_days_exempt_before_1_jul_2026():
    rus = person("RUS", "R1234567")
    e = entry("2026-05-01 10:00", who=rus)  # day 30 = Sat 30 May; then Mon 1, Tue 2, Wed 3 Jun
    assert _due([e], "2026-06-20 00:00") == {e.event_id: at("2026-06-04 00:00")}


def test_eaeu_self_registration_by_day_30_from_1_jul_2026():
    rus = person("RUS", "R1234567")
    e = entry("2026-07-01 10:00", who=rus)
    due = _due([e], "2026-08-20 00:00")
    assert due == {e.event_id: at("2026-07-31 00:00")}
    r = run([e], watermark="2026-08-20 00:00")
    [a] = r.final_alerts().values()
    assert a.rule_id == "self-registration-90-day" and "day 30" in a.reason


def test_rule_change_mid_stay_keeps_the_law_at_entry():
    rus = person("RUS", "R1234567")
    e = entry("2026-06-20 10:00", who=rus)  # old rule: day 30 = Sun 19 Jul, then Mon 20, Tue 21, Wed 22
    assert _due([e], "2026-08-20 00:00") == {e.event_id: at("2026-07-23 00:00")}


def test_registration_up_to_24_hours_before_entry_counts():
    e = entry("2026-03-02 10:00")
    assert _due([registration("2026-03-01 14:00"), e], "2026-03-20 00:00") == {}
    assert _due([registration("2026-03-01 09:00"), e], "2026-03-20 00:00") == {e.event_id: at("2026-03-06 00:00")}


def test_registration_cancelled_before_the_deadline_does_not_count():
    e = entry("2026-03-02 10:00")
    reg = registration("2026-03-02 12:00", reg_id="R-1")
    cancel = registration("2026-03-03 12:00", CANCEL, reg_id="R-1")
    assert _due([e, reg, cancel], "2026-03-20 00:00") == {e.event_id: at("2026-03-06 00:00")}
    other = registration("2026-03-04 12:00", reg_id="R-2")
    assert _due([e, reg, cancel, other], "2026-03-20 00:00") == {}
    late_cancel = registration("2026-03-10 12:00", CANCEL, reg_id="R-1")  # after the deadline: was satisfied
    assert _due([e, reg, late_cancel], "2026-03-20 00:00") == {}


def test_re_registration_within_5_working_days_after_a_cancellation():
    rus = person("RUS", "R1234567")
    e = entry("2026-07-01 10:00", who=rus)
    reg = registration("2026-07-02 10:00", reg_id="R-1", who=rus, host=HostKind.SELF)
    cancel = registration("2026-07-10 10:00", CANCEL, reg_id="R-1", who=rus)  # Fri -> Mon 13 .. Fri 17
    due = _due([e, reg, cancel], "2026-08-20 00:00")
    # the cancellation's own alert, and the day-30 deadline is no longer met either
    assert due == {cancel.event_id: at("2026-07-18 00:00"), e.event_id: at("2026-07-31 00:00")}
    again = registration("2026-07-16 10:00", reg_id="R-2", who=rus)
    assert _due([e, reg, cancel, again], "2026-08-20 00:00") == {}
    gone = exit_("2026-07-14 10:00", who=rus)
    assert _due([e, reg, cancel, gone], "2026-08-20 00:00") == {}


def test_re_registration_applies_only_under_a_rule_that_has_it():
    e = entry("2026-07-01 10:00")  # UZB: host registration rule, no re-registration
    reg = registration("2026-07-02 10:00", reg_id="R-1")
    cancel = registration("2026-07-10 10:00", CANCEL, reg_id="R-1")
    assert _due([e, reg, cancel], "2026-08-20 00:00") == {}


def test_exempt_bases_and_transit_need_no_registration():
    for basis in (EntryBasisKind.RESIDENCE_PERMIT, EntryBasisKind.DIPLOMATIC):
        assert _due([entry("2026-03-02 10:00", basis=basis)], "2026-03-20 00:00") == {}
    transit = entry("2026-03-02 10:00", purpose=Purpose.TRANSIT, dest="RUS")
    r = run([transit, exit_("2026-03-03 10:00", purpose=Purpose.TRANSIT)])
    assert r.alerts == []


def test_left_before_the_deadline_needs_no_registration():
    e = entry("2026-03-02 10:00")
    assert _due([e, exit_("2026-03-05 20:00")]) == {}


def test_late_registration_resolves_and_late_data_retracts():
    e = entry("2026-03-02 10:00")
    r = run([e], watermark="2026-03-06 01:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED]
    r.feed([registration("2026-03-07 10:00")], watermark="2026-03-07 11:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED, AlertAction.RESOLVED]
    assert "registration recorded 2026-03-07 10:00" in r.alerts[-1].reason
    # another traveller: the hotel's registration from the 4th reaches us late
    r2 = run([entry("2026-03-02 10:00")], watermark="2026-03-06 01:00")
    r2.feed([registration("2026-03-04 10:00")], watermark="2026-03-06 02:00")
    assert [a.action for a in r2.alerts] == [AlertAction.RAISED, AlertAction.RETRACTED]
    assert r2.final_alerts() == {}


def test_exit_after_the_deadline_resolves():
    e = entry("2026-03-02 10:00")
    r = run([e], watermark="2026-03-06 01:00")
    r.feed([exit_("2026-03-08 10:00")], watermark="2026-03-08 11:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED, AlertAction.RESOLVED]
    assert r.final_alerts()[r.alerts[0].alert_id].action == AlertAction.RESOLVED


def test_a_registration_from_a_previous_stay_does_not_count():
    first = [entry("2026-03-02 10:00"), registration("2026-03-02 12:00"), exit_("2026-03-04 10:00")]
    second = entry("2026-03-10 10:00")
    due = _due([*first, second], "2026-03-20 00:00")
    assert due == {second.event_id: at("2026-03-14 00:00")}  # Tue 10 -> Wed 11, Thu 12, Fri 13
