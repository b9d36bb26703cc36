"""The rules file as data: lookups for every group and basis, effective-date boundaries, the calendar."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.records import AlertType, EntryBasisKind, Purpose, Severity
from shekara.rules import DEFAULT_RULES, RuleError, WorkCalendar, load_rules, parse_rules

RULES = load_rules()
B = EntryBasisKind


def _doc() -> dict:
    with DEFAULT_RULES.open("rb") as f:
        return tomllib.load(f)


# --- stay limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nationality", "basis", "on", "rule_id", "per_entry", "window"),
    [
        ("UZB", B.VISA_FREE, date(2026, 3, 1), "visa-free-general", 30, (180, 90)),
        ("TUR", B.VISA_FREE, date(2024, 6, 1), "visa-free-general", 30, (180, 90)),
        ("RUS", B.VISA_FREE, date(2026, 3, 1), "visa-free-eaeu", 90, (180, 90)),
        ("BLR", B.VISA_FREE, date(2016, 1, 1), "visa-free-eaeu", 90, (180, 90)),
        ("ARM", B.VISA_FREE, date(2026, 3, 1), "visa-free-eaeu", 90, (180, 90)),
        ("KGZ", B.VISA_FREE, date(2026, 3, 1), "visa-free-eaeu", 90, (180, 90)),
        ("CHN", B.VISA_FREE, date(2026, 3, 1), "visa-free-china", 30, (180, 90)),
        ("IND", B.VISA_FREE, date(2026, 3, 1), "visa-free-short-stay", 14, (180, 42)),
        ("IRN", B.VISA_FREE, date(2022, 1, 1), "visa-free-short-stay", 14, (180, 42)),
        ("AFG", B.VISA, date(2026, 3, 1), "visa", None, None),
        ("UZB", B.VISA, date(2026, 3, 1), "visa", None, None),
        ("UZB", B.WORK_PERMIT, date(2026, 3, 1), "work-permit", 30, None),
    ],
)
def test_stay_limit_rows(nationality, basis, on, rule_id, per_entry, window):
    row = RULES.stay_limit(nationality, basis, on)
    assert row.id == rule_id
    assert row.per_entry_days == per_entry
    assert (row.window_days, row.window_limit_days) == (window or (None, None))
    assert row.has_window == (window is not None)


@pytest.mark.parametrize("basis", [B.CITIZEN, B.RESIDENCE_PERMIT, B.REFUGEE, B.DIPLOMATIC])
@pytest.mark.parametrize("nationality", ["KAZ", "RUS", "CHN", "IND", "UZB"])
def test_unlimited_bases(basis, nationality):
    row = RULES.stay_limit(nationality, basis, date(2026, 3, 1))
    assert row.id == "unlimited" and row.unlimited and not row.has_window


def test_visa_expiry_and_permit_rows_take_their_end_from_documents():
    assert RULES.stay_limit("PAK", B.VISA, date(2026, 1, 1)).per_entry_from == "visa_expiry"
    assert RULES.stay_limit("UZB", B.WORK_PERMIT, date(2026, 1, 1)).per_entry_from == "permit_end"


def test_general_window_starts_27_jan_2023():
    """Visa runs were legal until 26 Jan 2023: no rolling window before, 90 in 180 from."""
    before = RULES.stay_limit("UZB", B.VISA_FREE, date(2023, 1, 26))
    after = RULES.stay_limit("UZB", B.VISA_FREE, date(2023, 1, 27))
    assert before.id == "visa-free-general-2017" and not before.has_window and before.per_entry_days == 30
    assert after.id == "visa-free-general" and after.has_window


def test_china_row_from_10_nov_2023_falls_back_to_general_before():
    assert RULES.stay_limit("CHN", B.VISA_FREE, date(2023, 11, 9)).id == "visa-free-general"
    assert RULES.stay_limit("CHN", B.VISA_FREE, date(2023, 11, 10)).id == "visa-free-china"


def test_short_stay_row_from_2022_falls_back_to_general_before():
    assert RULES.stay_limit("IND", B.VISA_FREE, date(2021, 12, 31)).id == "visa-free-general-2017"
    assert RULES.stay_limit("IND", B.VISA_FREE, date(2022, 1, 1)).id == "visa-free-short-stay"


def test_no_row_is_an_error_naming_the_case():
    with pytest.raises(RuleError, match="UZB"):
        RULES.stay_limit("UZB", B.VISA_FREE, date(2010, 1, 1))


def test_groups():
    assert RULES.group_of("RUS") == "EAEU"
    assert RULES.group_of("CHN") == "CHINA"
    assert RULES.group_of("IND") == "SHORT_STAY"
    assert RULES.group_of("PAK") == "VISA_REQUIRED"
    assert RULES.group_of("DEU") == "GENERAL"


# --- registration -----------------------------------------------------------------------------------


def test_registration_general_three_working_days():
    rule = RULES.registration_rule("UZB", B.VISA_FREE, Purpose.TOURISM, date(2026, 3, 1))
    assert rule is not None and rule.id == "host-registration"
    assert rule.deadline_working_days == 3 and rule.exempt_days == 0


def test_registration_eaeu_rule_changes_on_1_jul_2026():
    old = RULES.registration_rule("RUS", B.VISA_FREE, Purpose.WORK, date(2026, 6, 30))
    new = RULES.registration_rule("RUS", B.VISA_FREE, Purpose.WORK, date(2026, 7, 1))
    assert old is not None and old.id == "host-registration-eaeu" and old.exempt_days == 30
    assert new is not None and new.id == "self-registration-90-day"
    assert new.deadline_calendar_day == 30 and new.reregister_working_days == 5


@pytest.mark.parametrize("basis", [B.CITIZEN, B.RESIDENCE_PERMIT, B.DIPLOMATIC])
def test_registration_exempt_bases(basis):
    assert RULES.registration_rule("UZB", basis, Purpose.TOURISM, date(2026, 3, 1)) is None


def test_registration_exempt_transit_but_not_refugees_or_visas():
    assert RULES.registration_rule("UZB", B.VISA_FREE, Purpose.TRANSIT, date(2026, 3, 1)) is None
    assert RULES.registration_rule("SYR", B.REFUGEE, Purpose.RESIDENCE, date(2026, 3, 1)) is not None
    assert RULES.registration_rule("PAK", B.VISA, Purpose.BUSINESS, date(2026, 3, 1)) is not None


def test_china_and_short_stay_register_under_general_rule():
    for nat in ("CHN", "IND", "PAK"):
        rule = RULES.registration_rule(nat, B.VISA_FREE, Purpose.TOURISM, date(2026, 8, 1))
        assert rule is not None and rule.id == "host-registration"


# --- transit, policies, other rows ------------------------------------------------------------------


def test_transit_rule_from_8_jul_2022():
    assert RULES.transit_rule(date(2022, 7, 7)) is None
    tr = RULES.transit_rule(date(2022, 7, 8))
    assert tr is not None and tr.window_hours == 120
    assert "KZ-RU-ZHAISAN" in tr.routes["RUS"] and "KZ-CN-KHORGOS" in tr.routes["CHN"]


def test_every_alert_type_has_a_policy():
    for t in AlertType:
        assert isinstance(RULES.policy(t).severity, Severity)
    assert RULES.policy(AlertType.BANNED_ENTRY).immediate
    assert not RULES.policy(AlertType.IN_COUNTRY_OVERSTAY).immediate


def test_permits_address_ban_impossible_travel():
    assert "WORK_PERMIT_ISSUED" in RULES.permits.extend_stay
    assert RULES.permits.revoke["WORK_PERMIT_REVOKED"] == "WORK_PERMIT_ISSUED"
    assert RULES.permits.grace_days == 15 and RULES.permits.refugee_default_days == 365
    assert RULES.address.threshold["PRIVATE_HOST"] == 10 and "HOTEL" in RULES.address.exempt_host_kinds
    assert RULES.ban.default_ban_years == 5
    assert RULES.impossible_travel.air_kmh > RULES.impossible_travel.ground_kmh


# --- time -------------------------------------------------------------------------------------------


def test_local_date_day_boundary_in_almaty():
    # UTC+5 since 1 Mar 2024: 18:59 UTC is 23:59 local, 19:00 UTC is the next day
    assert RULES.local_date(datetime(2026, 3, 1, 18, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert RULES.local_date(datetime(2026, 3, 1, 19, 0, tzinfo=UTC)) == date(2026, 3, 2)


def test_utc6_to_utc5_change_on_1_mar_2024():
    """At 00:00 on 1 Mar 2024 (UTC+6) clocks went back to 23:00 on 29 Feb: the leap day lasted 25 hours."""
    assert RULES.day_start(date(2024, 2, 29)) == datetime(2024, 2, 28, 18, 0, tzinfo=UTC)  # UTC+6
    assert RULES.day_start(date(2024, 3, 1)) == datetime(2024, 2, 29, 19, 0, tzinfo=UTC)  # UTC+5 from here
    assert RULES.day_start(date(2024, 3, 1)) - RULES.day_start(date(2024, 2, 29)) == timedelta(hours=25)
    assert RULES.day_start(date(2024, 3, 2)) == datetime(2024, 3, 1, 19, 0, tzinfo=UTC)
    # 17:30 UTC on 29 Feb is 23:30 (UTC+6); 18:30 UTC is 23:30 again (UTC+5); 19:30 UTC is 00:30 on 1 Mar
    assert RULES.local_date(datetime(2024, 2, 29, 17, 30, tzinfo=UTC)) == date(2024, 2, 29)
    assert RULES.local_date(datetime(2024, 2, 29, 18, 30, tzinfo=UTC)) == date(2024, 2, 29)
    assert RULES.local_date(datetime(2024, 2, 29, 19, 30, tzinfo=UTC)) == date(2024, 3, 1)
    # before the change the same local day boundary was an hour earlier in UTC
    assert RULES.local_date(datetime(2024, 2, 27, 18, 30, tzinfo=UTC)) == date(2024, 2, 28)


def test_day_start_round_trips_every_day_of_two_years():
    d = date(2024, 1, 1)
    while d < date(2026, 1, 1):
        start = RULES.day_start(d)
        assert RULES.local_date(start) == d
        assert RULES.local_date(start - timedelta(microseconds=1)) == d - timedelta(days=1)
        d += timedelta(days=1)


# --- working days -----------------------------------------------------------------------------------


def test_working_days_skip_weekends():
    cal = RULES.calendar
    assert cal.nth_working_day_after(date(2026, 2, 27), 1) == date(2026, 3, 2)  # Fri -> Mon
    assert cal.nth_working_day_after(date(2026, 2, 26), 3) == date(2026, 3, 3)  # Thu -> Fri, Mon, Tue


def test_working_days_skip_nauryz_and_womens_day_2026():
    cal = RULES.calendar
    # 2026: 8 Mar (Sun) observed Mon 9 Mar; Nauryz 21-23 Mar plus observed 24-25 Mar
    assert not cal.is_working_day(date(2026, 3, 9))
    for d in range(21, 26):
        assert not cal.is_working_day(date(2026, 3, d))
    assert cal.nth_working_day_after(date(2026, 3, 19), 3) == date(2026, 3, 27)  # Fri 20, Thu 26, Fri 27


def test_working_days_skip_new_year():
    cal = RULES.calendar
    # 2026-01-01 Thu and 02 Fri are holidays; 7 Jan Orthodox Christmas
    assert cal.nth_working_day_after(date(2025, 12, 31), 1) == date(2026, 1, 5)
    assert cal.nth_working_day_after(date(2026, 1, 5), 2) == date(2026, 1, 8)


def test_transfer_decree_saturday_is_a_working_day():
    cal = RULES.calendar
    assert cal.is_working_day(date(2024, 5, 4))  # Saturday worked for the 8 May day off
    assert not cal.is_working_day(date(2024, 5, 8))


def test_calendar_extra_days_from_the_rules_file():
    cal = WorkCalendar(extra_days_off=[date(2027, 4, 14)], extra_working_days=[date(2027, 4, 17)])
    assert not cal.is_working_day(date(2027, 4, 14))  # a Wednesday made a day off
    assert cal.is_working_day(date(2027, 4, 17))  # a Saturday made a working day
    assert cal.is_working_day(date(2027, 4, 15))
    with pytest.raises(ValueError):
        cal.nth_working_day_after(date(2027, 4, 14), 0)


# --- loading and validation -------------------------------------------------------------------------


def test_load_rules_is_cached_and_versioned():
    assert load_rules() is RULES
    assert RULES.version == "2026-07-01.1"
    assert str(RULES.timezone) == "Asia/Almaty"


def test_overlapping_stay_limits_are_rejected():
    doc = _doc()
    doc["stay_limit"].append(dict(doc["stay_limit"][1], id="dup"))
    with pytest.raises(RuleError, match="overlap"):
        parse_rules(doc)


def test_overlapping_registration_rules_are_rejected():
    doc = _doc()
    doc["registration"].append(dict(doc["registration"][0], id="dup"))
    with pytest.raises(RuleError, match="overlap"):
        parse_rules(doc)


def test_missing_alert_policy_is_rejected():
    doc = _doc()
    del doc["alerts"]["FICTITIOUS_ADDRESS"]
    with pytest.raises(RuleError, match="FICTITIOUS_ADDRESS"):
        parse_rules(doc)


def test_bad_values_are_rejected_with_the_row():
    doc = _doc()
    doc["stay_limit"][0]["effective_from"] = "2017-01-01"  # a string, not a TOML date
    with pytest.raises(RuleError, match="effective_from"):
        parse_rules(doc)
    doc = _doc()
    doc["stay_limit"][0]["basis"] = "VISA_FRE"
    with pytest.raises(RuleError, match="basis"):
        parse_rules(doc)
    doc = _doc()
    doc["stay_limit"][0]["group"] = "NOWHERE"
    with pytest.raises(RuleError, match="NOWHERE"):
        parse_rules(doc)
    doc = _doc()
    doc["groups"]["CHINA"] = ["CHN", "RUS"]
    with pytest.raises(RuleError, match="RUS"):
        parse_rules(doc)
    doc = _doc()
    doc["registration"][0]["deadline_calendar_day"] = 30
    with pytest.raises(RuleError, match="exactly one"):
        parse_rules(doc)
    doc = _doc()
    doc["stay_limit"][1]["window_limit_days"] = None
    del doc["stay_limit"][1]["window_limit_days"]
    with pytest.raises(RuleError, match="window"):
        parse_rules(doc)


def test_a_missing_file_entry_is_a_rule_error(tmp_path):
    broken = tmp_path / "rules.toml"
    broken.write_text('[meta]\nversion = "x"\ntimezone = "Asia/Almaty"\n')
    with pytest.raises(RuleError, match="missing or malformed"):
        load_rules(broken)
