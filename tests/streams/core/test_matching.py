"""Steps 1, 2 and 6 of docs/alerts.md: impossible travel, double entry, exit without entry, transit, watch lists."""

from __future__ import annotations

from datetime import date

from schemas.ids import alert_id, stay_id
from schemas.records import AlertAction, AlertType, EntryBasisKind, Purpose, Severity, StatusChangeKind
from shekara.reference import distance_km
from tests.streams.core.factory import (
    ALA,
    CHECKPOINTS,
    KHORGOS,
    NQZ,
    SYRYM,
    ZHAISAN,
    at,
    entry,
    exit_,
    person,
    registration,
    run,
    status,
)

KAZ = person("KAZ", "N0000042")
CIT = EntryBasisKind.CITIZEN


# --- impossible travel --------------------------------------------------------------------------------


def test_ground_speed_between_two_road_checkpoints():
    km = distance_km(CHECKPOINTS[ZHAISAN], CHECKPOINTS[SYRYM])
    assert 300 < km < 450
    e = entry("2026-03-01 10:00", ZHAISAN)
    fast = exit_("2026-03-01 12:00", SYRYM)  # ~380 km in 2 h
    r = run([e, registration("2026-03-01 11:00"), fast], watermark="2026-03-01 13:00")
    [a] = r.alerts
    assert a.type == AlertType.IMPOSSIBLE_TRAVEL and a.action == AlertAction.RAISED
    assert a.alert_id == alert_id("IMPOSSIBLE_TRAVEL", r.key, fast.event_id)
    assert a.evidence_event_ids == [e.event_id, fast.event_id] and a.checkpoint_id == SYRYM
    assert a.due_time == fast.event_time and a.severity == Severity.HIGH
    assert a.rule_id == "impossible-travel"
    assert f"{km:.0f} km from {ZHAISAN} to {SYRYM} in 2 h 00 min; the fastest plausible trip takes " in a.reason
    assert f"({km:.0f} km at 130 km/h by road or rail)" in a.reason
    slow = exit_("2026-03-01 14:00", SYRYM)  # 4 h: under 130 km/h
    assert run([e, registration("2026-03-01 11:00"), slow]).alerts == []


def test_impossible_crossing_is_excluded_from_matching_and_is_not_the_previous_crossing():
    e = entry("2026-03-01 10:00", ZHAISAN)
    clone = exit_("2026-03-01 11:00", KHORGOS)  # 1,800 km away an hour later
    x = exit_("2026-03-05 10:00", ZHAISAN)
    r = run([e, registration("2026-03-01 12:00"), clone, x])
    assert r.types() == ["IMPOSSIBLE_TRAVEL"]
    [s] = r.final_stays().values()
    assert s.exit_event_id == x.event_id  # the stay is closed by the genuine exit
    # judged against the entry (the last accepted crossing), not against the clone
    assert r.final_alerts()[alert_id("IMPOSSIBLE_TRAVEL", r.key, clone.event_id)].evidence_event_ids[0] == e.event_id


def test_air_speed_with_overhead():
    km = distance_km(CHECKPOINTS[ALA], CHECKPOINTS[NQZ])
    assert 900 < km < 1100
    e = entry("2026-03-01 10:00", ALA)
    assert run([e, exit_("2026-03-01 11:30", NQZ)]).types() == ["IMPOSSIBLE_TRAVEL"]  # 0.5 h flying
    assert "air" in run([e, exit_("2026-03-01 11:30", NQZ)]).alerts[0].reason
    assert run([e, exit_("2026-03-01 13:30", NQZ)]).types() == []  # 2.5 h flying
    assert run([e, exit_("2026-03-01 10:50", NQZ)]).types() == ["IMPOSSIBLE_TRAVEL"]  # less than the overhead


def test_same_checkpoint_and_same_instant():
    e = entry("2026-03-01 10:00", ZHAISAN)
    assert "IMPOSSIBLE_TRAVEL" not in run([e, exit_("2026-03-01 10:00", ZHAISAN)]).types()
    assert run([e, exit_("2026-03-01 10:00", SYRYM)]).types() == ["IMPOSSIBLE_TRAVEL"]


def test_unknown_checkpoints_are_not_judged():
    e = entry("2026-03-01 10:00", "KZ-XX-NOWHERE")
    assert run([e, exit_("2026-03-01 10:05", KHORGOS)]).types() == []


def test_citizens_are_checked_for_impossible_travel():
    r = run(
        [exit_("2026-03-01 10:00", ZHAISAN, who=KAZ, basis=CIT), entry("2026-03-01 10:30", KHORGOS, who=KAZ, basis=CIT)]
    )
    assert r.types() == ["IMPOSSIBLE_TRAVEL"] and r.stays == []


# --- double entry, exit without entry -------------------------------------------------------------------


def test_double_entry_duplicate_scan_vs_data_gap():
    e1 = entry("2026-03-01 10:00", ZHAISAN)
    dup = entry("2026-03-01 10:40", ZHAISAN)
    r = run([e1, registration("2026-03-01 11:00"), dup], watermark="2026-03-01 12:00")
    [a] = r.alerts
    assert a.type == AlertType.DOUBLE_ENTRY and "duplicate entry scan" in a.reason
    assert a.evidence_event_ids == [e1.event_id, dup.event_id] and a.alert_id == alert_id(
        "DOUBLE_ENTRY", r.key, dup.event_id
    )
    gap = entry("2026-03-09 10:00", ZHAISAN)
    r = run([e1, registration("2026-03-01 11:00"), gap], watermark="2026-03-10 00:00")
    assert "missing exit record (data gap)" in r.alerts[0].reason
    other_cp = entry("2026-03-01 10:30", SYRYM)  # fast, but different checkpoint - not impossible? it is: 380 km
    assert run([e1, other_cp]).types() == ["IMPOSSIBLE_TRAVEL"]


def test_double_entry_waits_for_the_watermark():
    e1, e2 = entry("2026-03-01 10:00"), entry("2026-03-05 10:00")
    r = run([e1, registration("2026-03-01 11:00"), e2], watermark="2026-03-05 09:00")
    assert r.alerts == [] and r.stays == []
    assert r.last is not None and r.last.next_due == e2.event_time
    r.tick("2026-03-05 10:00")
    assert [a.type for a in r.alerts] == [AlertType.DOUBLE_ENTRY]
    [superseded] = r.stays
    assert (
        superseded.stay_id == stay_id(r.key, e1.event_id) and superseded.exit_event_id is None and superseded.days == 4
    )


def test_late_exit_between_two_entries_retracts_nothing_if_it_arrives_in_time():
    e1, e2 = entry("2026-03-01 10:00"), entry("2026-03-05 10:00")
    x = exit_("2026-03-03 10:00")
    r = run([e1, registration("2026-03-01 11:00"), e2], watermark="2026-03-05 09:00")
    r.feed([x], watermark="2026-03-05 09:30")
    r.tick("2026-03-06 00:00")
    assert r.alerts == []
    assert [(s.entry_event_id, s.exit_event_id) for s in r.stays] == [(e1.event_id, x.event_id)]


def test_exit_without_entry_for_foreigners_only():
    x = exit_("2026-03-01 10:00")
    r = run([x])
    [a] = r.alerts
    assert a.type == AlertType.EXIT_WITHOUT_ENTRY and a.alert_id == alert_id("EXIT_WITHOUT_ENTRY", r.key, x.event_id)
    assert a.due_time == x.event_time and a.evidence_event_ids == [x.event_id]
    [s] = r.stays
    assert s.stay_id == stay_id(r.key, x.event_id) and s.entry_event_id is None and s.days == 1
    assert s.allowed_days is None and s.exit_event_id == x.event_id
    resident = run([exit_("2026-03-01 10:00", basis=EntryBasisKind.RESIDENCE_PERMIT)])
    assert resident.alerts == [] and len(resident.stays) == 1
    assert run([exit_("2026-03-01 10:00", who=KAZ, basis=CIT)]).stays == []


def test_exit_without_entry_is_withdrawn_when_the_entry_arrives_late():
    x = exit_("2026-03-05 10:00")
    r = run([x], watermark="2026-03-05 12:00")
    assert [a.type for a in r.alerts] == [AlertType.EXIT_WITHOUT_ENTRY]
    e = entry("2026-03-01 10:00")
    r.feed([e, registration("2026-03-01 12:00")], watermark="2026-03-05 13:00")
    assert [a.action for a in r.alerts] == [AlertAction.RAISED, AlertAction.RETRACTED]
    # the stay anchored on the exit is voided (same id, next revision), the real one emitted
    ewe = [s for s in r.stays if s.stay_id == stay_id(r.key, x.event_id)]
    assert [(s.revision, s.rule_id, s.days) for s in ewe] == [(0, "visa-free-general", 1), (1, "void", 0)]
    assert list(r.final_stays()) == [stay_id(r.key, e.event_id)]


# --- transit --------------------------------------------------------------------------------------------


def _transit(when: str, dest: str = "RUS", planned: str | None = None):
    return entry(when, "KZ-UZ-ZHIBEK-ZHOLY", purpose=Purpose.TRANSIT, dest=dest, planned=planned)


def test_transit_within_window_via_designated_route():
    e = _transit("2026-03-01 10:00")
    assert run([e, exit_("2026-03-05 10:00", ZHAISAN, purpose=Purpose.TRANSIT)]).alerts == []


def test_transit_overstay_at_entry_time_plus_window():
    e = _transit("2026-03-01 10:00")
    r = run([e], watermark="2026-03-06 09:59")
    assert r.alerts == []
    r.tick("2026-03-06 10:00")
    [a] = r.alerts
    assert a.type == AlertType.TRANSIT_OVERSTAY and a.due_time == at("2026-03-06 10:00")
    assert a.rule_id == "transit-route" and "120-hour" in a.reason
    r.feed([exit_("2026-03-07 10:00", ZHAISAN, purpose=Purpose.TRANSIT)], watermark="2026-03-07 11:00")
    assert [x.action for x in r.alerts] == [AlertAction.RAISED, AlertAction.RESOLVED]


def test_wrong_route_exit():
    e = _transit("2026-03-01 10:00")
    x = exit_("2026-03-02 10:00", "KZ-KG-KORDAI", purpose=Purpose.TRANSIT)
    r = run([e, x])
    [a] = r.alerts
    assert a.type == AlertType.WRONG_ROUTE_EXIT and a.alert_id == alert_id("WRONG_ROUTE_EXIT", r.key, x.event_id)
    assert a.evidence_event_ids == [e.event_id, x.event_id] and a.checkpoint_id == "KZ-KG-KORDAI"
    # the declared exit checkpoint is always allowed
    e2 = _transit("2026-03-01 10:00", planned=ALA)
    assert run([e2, exit_("2026-03-02 18:00", ALA, purpose=Purpose.TRANSIT)]).alerts == []
    # nothing to compare with: no planned exit, no designated route for the destination
    e3 = _transit("2026-03-01 10:00", dest="TUR")
    assert run([e3, exit_("2026-03-02 18:00", ALA, purpose=Purpose.TRANSIT)]).alerts == []


def test_transit_overstayer_past_30_days_also_overstays():
    e = _transit("2026-03-01 10:00")
    x = exit_("2026-04-05 10:00", ZHAISAN, purpose=Purpose.TRANSIT)
    assert run([e, x]).types() == ["IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY", "TRANSIT_OVERSTAY"]


# --- watch lists ------------------------------------------------------------------------------------------


def test_banned_entry():
    expelled = status("2026-01-10 10:00", StatusChangeKind.EXPELLED, valid_until=date(2031, 1, 9))
    e = entry("2026-03-01 10:00")
    r = run([expelled, e, registration("2026-03-01 12:00")], watermark="2026-03-01 10:00")
    [a] = r.alerts
    assert a.type == AlertType.BANNED_ENTRY and a.severity == Severity.CRITICAL
    assert a.evidence_event_ids == [expelled.event_id, e.event_id] and a.rule_id == "entry-ban"
    assert "until 2031-01-09" in a.reason
    after = entry("2031-01-10 10:00")
    assert "BANNED_ENTRY" not in run([expelled, after, registration("2031-01-10 12:00")]).types()
    on_last_day = entry("2031-01-09 23:00")
    assert "BANNED_ENTRY" in run([expelled, on_last_day]).types()
    before = entry("2026-01-09 10:00")
    assert "BANNED_ENTRY" not in run([before, expelled]).types()
    assert run([expelled, exit_("2026-03-01 10:00")]).types() == ["EXIT_WITHOUT_ENTRY"]  # exits are not refused


def test_banned_entry_also_for_an_impossible_crossing_and_never_for_citizens():
    expelled = status("2026-01-10 10:00", StatusChangeKind.EXPELLED, valid_until=date(2031, 1, 9))
    e = entry("2026-03-01 10:00", ZHAISAN)
    clone = entry("2026-03-01 10:30", KHORGOS)
    assert run([expelled, e, clone]).types() == ["BANNED_ENTRY", "BANNED_ENTRY", "IMPOSSIBLE_TRAVEL"]
    kaz_expelled = status("2026-01-10 10:00", StatusChangeKind.EXPELLED, who=KAZ, valid_until=date(2031, 1, 9))
    assert run([kaz_expelled, entry("2026-03-01 10:00", who=KAZ, basis=CIT)]).alerts == []


def test_lost_and_stolen_documents_until_recovered():
    lost = status("2026-02-01 10:00", StatusChangeKind.DOCUMENT_STOLEN)
    e = entry("2026-03-01 10:00")
    r = run([lost, e, registration("2026-03-01 12:00")], watermark="2026-03-01 10:00")
    [a] = r.alerts
    assert a.type == AlertType.LOST_STOLEN_DOCUMENT and a.evidence_event_ids == [lost.event_id, e.event_id]
    assert "reported stolen on 2026-02-01" in a.reason
    recovered = status("2026-02-15 10:00", StatusChangeKind.DOCUMENT_RECOVERED)
    assert run([lost, recovered, e, registration("2026-03-01 12:00")]).alerts == []
    # exits too, and citizens too
    kaz_lost = status("2026-02-01 10:00", StatusChangeKind.DOCUMENT_LOST, who=KAZ)
    r = run([kaz_lost, exit_("2026-03-01 10:00", who=KAZ, basis=CIT)])
    assert r.types() == ["LOST_STOLEN_DOCUMENT"] and "reported lost" in r.alerts[0].reason
    assert run([exit_("2026-01-01 10:00", who=KAZ, basis=CIT), kaz_lost]).alerts == []
