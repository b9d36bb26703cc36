"""The simulator's ground truth against docs/alerts.md, case by case, on hand-built histories (pure, fast)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest

from harness import samples
from harness.simulator.plan import (
    Person,
    Planned,
    PlannedCrossing,
    PlannedRegistration,
    PlannedStatus,
    make_person,
)
from harness.simulator.truth import Expected, address_key, address_truth, normalise_address, traveller_truth
from schemas.ids import alert_id
from schemas.records import (
    Direction,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    RegistrationAction,
    StatusChangeKind,
)
from shekara.pseudonym import pseudonymise, traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules

RULES = load_rules()
CPS = load_checkpoints()
KEY = b"truth-test-key"
VISA_FREE = EntryBasis(EntryBasisKind.VISA_FREE)
_ids = itertools.count(1)
_docs = itertools.count(1)


def person(nat: str = "UZB") -> Person:
    return make_person(samples.traveller(f"AB{next(_docs):07d}", nat, birth_date=date(1990, 1, 1)), KEY)


def at(day: date, hh: int = 12, mm: int = 0) -> datetime:
    """Local (Asia/Almaty) wall time on `day` as a UTC instant."""
    return RULES.day_start(day) + timedelta(hours=hh, minutes=mm)


def eid() -> str:
    return f"ev-{next(_ids):06d}"


def cross(
    p: Person,
    when: datetime,
    direction: Direction,
    cp: str = "KZ-UZ-ZHIBEK-ZHOLY",
    basis: EntryBasis = VISA_FREE,
    purpose: Purpose = Purpose.TOURISM,
    dest: str | None = None,
    planned: str | None = None,
) -> PlannedCrossing:
    return PlannedCrossing(when, eid(), p, CPS[cp], direction, purpose, basis, dest, planned)


def reg(
    p: Person,
    when: datetime,
    action: RegistrationAction = RegistrationAction.REGISTERED,
    reg_id: str | None = None,
    host: HostKind = HostKind.HOTEL,
    address: str = "ABAI 1 GOSTINITSA",
    valid: tuple[date, date] | None = None,
) -> PlannedRegistration:
    vf, vu = valid or (when.date() - timedelta(days=1), when.date() + timedelta(days=30))
    return PlannedRegistration(when, eid(), p, action, reg_id or eid(), host, "H1", "KZ-75", address, vf, vu, "test")


def status(
    p: Person, when: datetime, kind: StatusChangeKind, vf: date | None = None, vu: date | None = None
) -> PlannedStatus:
    return PlannedStatus(when, eid(), p, kind, "authority", "test", vf, vu)


END = at(date(2027, 1, 1), 0)


def truth(history: list[Planned], end: datetime = END) -> dict[str, list[Expected]]:
    p = history[0].person
    out: dict[str, list[Expected]] = {}
    for x in traveller_truth(history, traveller_key=p.key, rules=RULES, end=end):
        out.setdefault(x.type or "", []).append(x)
    return out


# --- identities ------------------------------------------------------------------------------------------------


def test_ids_and_keys_are_the_shared_ones() -> None:
    p = person("UZB")
    doc = p.traveller.document
    assert p.key == traveller_key(doc.issuing_country, doc.number, KEY)
    e = cross(p, at(date(2026, 6, 1)), Direction.EXIT)
    got = truth([e])["EXIT_WITHOUT_ENTRY"][0]
    assert got.alert_id == alert_id("EXIT_WITHOUT_ENTRY", p.key, e.event_id)
    assert got.anchor_event_id == e.event_id and got.due_time == e.time


def test_address_key_normalises_like_the_spec() -> None:
    assert normalise_address("  ul. Abaya,  12 - kv.5 ") == "UL ABAYA 12 KV 5"
    assert address_key("KZ-75", "ul. Abaya, 12", KEY) == pseudonymise("KZ-75|UL ABAYA 12", KEY, "address")


# --- Step 3: per-entry limit, day 1 = day of crossing, Asia/Almaty days ----------------------------------------


def test_last_allowed_day_counts_the_entry_day_and_local_midnight() -> None:
    p = person("UZB")  # GENERAL: 30 days per entry
    entry = cross(p, at(date(2026, 6, 1), 23, 30), Direction.ENTRY)  # 18:30 UTC, still 1 June locally
    registered = reg(p, at(date(2026, 6, 2), 10))
    on_time = cross(p, at(date(2026, 6, 30), 23, 50), Direction.EXIT)  # day 30
    assert truth([entry, registered, on_time]) == {}

    p2 = person("UZB")
    entry2 = cross(p2, at(date(2026, 6, 1), 23, 30), Direction.ENTRY)
    late = cross(p2, at(date(2026, 7, 1), 0, 10), Direction.EXIT)  # 30 June 19:10 UTC, but day 31 locally
    got = truth([entry2, reg(p2, at(date(2026, 6, 2), 10)), late])
    assert set(got) == {"IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"}
    assert got["IN_COUNTRY_OVERSTAY"][0].due_time == RULES.day_start(date(2026, 7, 1))
    assert got["IN_COUNTRY_OVERSTAY"][0].anchor_event_id == entry2.event_id
    out = got["OUT_OF_COUNTRY_OVERSTAY"][0]
    assert out.anchor_event_id == late.event_id and out.days_overstayed == 1
    assert out.evidence_event_ids == [entry2.event_id, late.event_id]


def test_in_country_overstay_only_once_due_before_the_end() -> None:
    p = person("IND")  # SHORT_STAY: 14 days per entry
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, cp="KZ-AIR-ALA")
    history: list[Planned] = [entry, reg(p, at(date(2026, 6, 1), 18))]
    due = RULES.day_start(date(2026, 6, 15))
    assert truth(history, end=due - timedelta(seconds=1)) == {}
    got = truth(history, end=due)
    assert [x.due_time for x in got["IN_COUNTRY_OVERSTAY"]] == [due]


def test_visa_expiry_and_extension() -> None:
    p = person("AFG")  # needs a visa
    visa = EntryBasis(EntryBasisKind.VISA, date(2026, 6, 20), "V1")
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, basis=visa)
    leave = cross(p, at(date(2026, 7, 5)), Direction.EXIT, basis=visa)
    assert set(truth([entry, reg(p, at(date(2026, 6, 2))), leave])) == {
        "IN_COUNTRY_OVERSTAY",
        "OUT_OF_COUNTRY_OVERSTAY",
    }
    p2 = person("AFG")
    entry2 = cross(p2, at(date(2026, 6, 1)), Direction.ENTRY, basis=visa)
    ext = status(p2, at(date(2026, 6, 18)), StatusChangeKind.VISA_EXTENDED, date(2026, 6, 20), date(2026, 7, 20))
    leave2 = cross(p2, at(date(2026, 7, 5)), Direction.EXIT, basis=visa)
    assert truth([entry2, reg(p2, at(date(2026, 6, 2))), ext, leave2]) == {}


def test_work_permit_during_a_visa_free_stay_extends_it_and_its_days_do_not_count() -> None:
    p = person("UZB")
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, purpose=Purpose.WORK)
    permit = status(p, at(date(2026, 6, 10)), StatusChangeKind.WORK_PERMIT_ISSUED, date(2026, 6, 10), date(2026, 11, 1))
    leave = cross(p, at(date(2026, 10, 20)), Direction.EXIT, purpose=Purpose.WORK)
    # 142 days inside: no overstay (the permit extends L) and no 90/180 breach (permit days do not count).
    assert truth([entry, reg(p, at(date(2026, 6, 2))), permit, leave]) == {}


def test_work_permit_basis_takes_the_permit_end() -> None:
    p = person("TJK")
    basis = EntryBasis(EntryBasisKind.WORK_PERMIT, None, "WP1")
    permit = status(p, at(date(2026, 5, 20)), StatusChangeKind.WORK_PERMIT_ISSUED, date(2026, 6, 1), date(2026, 9, 30))
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, basis=basis, purpose=Purpose.WORK)
    employer = reg(p, at(date(2026, 6, 2)), host=HostKind.EMPLOYER)
    history: list[Planned] = [permit, entry, employer]
    got = truth(history)
    assert [x.due_time for x in got["IN_COUNTRY_OVERSTAY"]] == [RULES.day_start(date(2026, 10, 1))]
    leave = cross(p, at(date(2026, 9, 25)), Direction.EXIT, basis=basis, purpose=Purpose.WORK)
    assert truth([*history, leave]) == {}


# --- Step 4: rolling window -------------------------------------------------------------------------------------


def _visa_runs(p: Person, stays: int, nights: int, start: date) -> tuple[list[Planned], list[PlannedCrossing]]:
    events: list[Planned] = []
    entries = []
    d = start
    for _ in range(stays):
        e = cross(p, at(d, 10), Direction.ENTRY, cp="KZ-AIR-ALA")
        entries.append(e)
        events += [e, reg(p, at(d, 15)), cross(p, at(d + timedelta(days=nights), 18), Direction.EXIT, cp="KZ-AIR-ALA")]
        d += timedelta(days=nights + 2)
    return events, entries


def test_window_breach_by_repeated_short_stays() -> None:
    p = person("IND")  # 14 per entry, 42 in 180
    events, entries = _visa_runs(p, 4, 12, date(2026, 6, 1))  # 13 days each: 39 in three stays
    got = truth(events)
    assert set(got) == {"WINDOW_BREACH"}
    breach = got["WINDOW_BREACH"][0]
    fourth = RULES.local_date(entries[3].time)
    assert breach.anchor_event_id == entries[3].event_id
    assert breach.due_time == RULES.day_start(fourth + timedelta(days=3))  # day 4 of the fourth stay: 43 days
    assert breach.evidence_event_ids == [e.event_id for e in entries]
    three, _ = _visa_runs(person("IND"), 3, 12, date(2026, 6, 1))
    assert truth(three) == {}


def test_window_counts_only_before_the_per_entry_limit() -> None:
    p = person("RUS")  # EAEU: 90 per entry, 90 in 180: a 95-day stay is an overstay, not a breach
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, cp="KZ-RU-ZHAISAN")
    leave = cross(p, at(date(2026, 9, 3)), Direction.EXIT, cp="KZ-RU-ZHAISAN")
    got = truth([entry, reg(p, at(date(2026, 6, 3))), leave])
    assert set(got) == {"IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"}


# --- Step 5: registration --------------------------------------------------------------------------------------


def test_registration_deadline_in_working_days_on_both_sides_of_midnight() -> None:
    friday = date(2026, 6, 5)  # three working days after: Mon 8, Tue 9, Wed 10 June
    due = RULES.day_start(date(2026, 6, 11))
    p = person("UZB")
    entry = cross(p, at(friday, 20), Direction.ENTRY)
    leave = cross(p, at(date(2026, 6, 15)), Direction.EXIT)
    assert truth([entry, reg(p, due - timedelta(minutes=20)), leave]) == {}
    p2 = person("UZB")
    entry2 = cross(p2, at(friday, 20), Direction.ENTRY)
    got = truth([entry2, reg(p2, due + timedelta(minutes=20)), cross(p2, at(date(2026, 6, 15)), Direction.EXIT)])
    assert [(x.anchor_event_id, x.due_time) for x in got["UNREGISTERED_STAY"]] == [(entry2.event_id, due)]
    p3 = person("UZB")  # left before the deadline: nothing is due
    assert (
        truth([cross(p3, at(friday, 20), Direction.ENTRY), cross(p3, at(date(2026, 6, 10), 22), Direction.EXIT)]) == {}
    )


def test_registration_deadline_skips_public_holidays() -> None:
    p = person("TJK")
    entry = cross(p, at(date(2026, 7, 3)), Direction.ENTRY)  # Friday; Monday 6 July is Capital Day
    got = truth([entry, cross(p, at(date(2026, 7, 20)), Direction.EXIT)])
    assert [x.due_time for x in got["UNREGISTERED_STAY"]] == [RULES.day_start(date(2026, 7, 10))]


def test_eaeu_registration_before_and_after_the_1_july_2026_change() -> None:
    p = person("RUS")  # 30 days exempt, then 3 working days: 19 July is a Sunday -> Mon 20 .. Wed 22
    entry = cross(p, at(date(2026, 6, 20)), Direction.ENTRY, cp="KZ-RU-SYRYM")
    got = truth([entry, cross(p, at(date(2026, 8, 10)), Direction.EXIT, cp="KZ-RU-SYRYM")])
    assert [x.due_time for x in got["UNREGISTERED_STAY"]] == [RULES.day_start(date(2026, 7, 23))]
    p2 = person("RUS")  # from 1 July: self-registration by day 30
    entry2 = cross(p2, at(date(2026, 7, 1)), Direction.ENTRY, cp="KZ-RU-SYRYM")
    got2 = truth([entry2, cross(p2, at(date(2026, 8, 10)), Direction.EXIT, cp="KZ-RU-SYRYM")])
    assert [x.due_time for x in got2["UNREGISTERED_STAY"]] == [RULES.day_start(date(2026, 7, 31))]


def test_reregistration_after_a_cancellation() -> None:
    p = person("KGZ")
    entry = cross(p, at(date(2026, 7, 2)), Direction.ENTRY, cp="KZ-KG-KORDAI")
    first = reg(p, at(date(2026, 7, 3)), host=HostKind.SELF, address="MKR SAMAL 1 KV 2")
    cancel = reg(p, at(date(2026, 8, 5)), RegistrationAction.CANCELLED, first.registration_id, HostKind.SELF)
    leave = cross(p, at(date(2026, 8, 25)), Direction.EXIT, cp="KZ-KG-KORDAI")
    got = truth([entry, first, cancel, leave])
    assert [(x.anchor_event_id, x.due_time) for x in got["UNREGISTERED_STAY"]] == [
        (cancel.event_id, RULES.day_start(date(2026, 8, 13)))  # 5 working days after Wed 5 August
    ]
    again = reg(p, at(date(2026, 8, 6)), host=HostKind.PRIVATE_HOST, address="ABAI 7 KV 3")
    assert truth([entry, first, cancel, again, leave]) == {}


# --- Step 6: transit and watch lists ----------------------------------------------------------------------------


def test_transit_window_and_route() -> None:
    p = person("UZB")
    entry = cross(
        p, at(date(2026, 6, 1), 8), Direction.ENTRY, purpose=Purpose.TRANSIT, dest="RUS", planned="KZ-RU-SYRYM"
    )
    on_route = cross(p, entry.time + timedelta(hours=60), Direction.EXIT, cp="KZ-RU-KARAKOGA", purpose=Purpose.TRANSIT)
    assert truth([entry, on_route]) == {}  # a designated checkpoint for Russia, inside 120 h; no registration
    late = cross(p, entry.time + timedelta(hours=130), Direction.EXIT, cp="KZ-RU-SYRYM", purpose=Purpose.TRANSIT)
    got = truth([entry, late])
    assert set(got) == {"TRANSIT_OVERSTAY"} and got["TRANSIT_OVERSTAY"][0].due_time == entry.time + timedelta(hours=120)
    wrong = cross(p, entry.time + timedelta(hours=20), Direction.EXIT, cp="KZ-KG-KORDAI", purpose=Purpose.TRANSIT)
    got = truth([entry, wrong])
    assert set(got) == {"WRONG_ROUTE_EXIT"} and got["WRONG_ROUTE_EXIT"][0].anchor_event_id == wrong.event_id


def test_transit_overstayer_past_the_stay_limit_also_overstays() -> None:
    p = person("TJK")
    entry = cross(p, at(date(2026, 6, 1)), Direction.ENTRY, purpose=Purpose.TRANSIT, dest="RUS", planned="KZ-RU-SYRYM")
    leave = cross(p, at(date(2026, 7, 10)), Direction.EXIT, cp="KZ-RU-SYRYM", purpose=Purpose.TRANSIT)
    assert set(truth([entry, leave])) == {"TRANSIT_OVERSTAY", "IN_COUNTRY_OVERSTAY", "OUT_OF_COUNTRY_OVERSTAY"}


def test_exit_without_entry_and_the_exempt_bases() -> None:
    assert set(truth([cross(person("RUS"), at(date(2026, 6, 3)), Direction.EXIT, cp="KZ-RU-SYRYM")])) == {
        "EXIT_WITHOUT_ENTRY"
    }
    resident = EntryBasis(EntryBasisKind.RESIDENCE_PERMIT)
    assert truth([cross(person("RUS"), at(date(2026, 6, 3)), Direction.EXIT, basis=resident)]) == {}
    citizen = EntryBasis(EntryBasisKind.CITIZEN)
    assert truth([cross(person("KAZ"), at(date(2026, 6, 3)), Direction.EXIT, basis=citizen)]) == {}


@pytest.mark.parametrize(
    ("gap", "other_post", "why"),
    [
        (timedelta(minutes=5), False, "duplicate entry scan"),
        (timedelta(hours=2), False, "missing exit record (data gap)"),
        (timedelta(days=3), True, "missing exit record (data gap)"),
    ],
)
def test_double_entry_says_which_it_likely_is(gap: timedelta, other_post: bool, why: str) -> None:
    p = person("UZB")
    first = cross(p, at(date(2026, 6, 1)), Direction.ENTRY)
    second = cross(p, first.time + gap, Direction.ENTRY, cp="KZ-UZ-KAZYGURT" if other_post else "KZ-UZ-ZHIBEK-ZHOLY")
    got = truth(
        [first, second, reg(p, second.time + timedelta(hours=2)), cross(p, at(date(2026, 6, 10)), Direction.EXIT)]
    )
    assert set(got) == {"DOUBLE_ENTRY"}
    x = got["DOUBLE_ENTRY"][0]
    assert x.anchor_event_id == second.event_id and x.evidence_event_ids == [first.event_id, second.event_id]
    assert why in x.reason


def test_impossible_travel_uses_the_air_overhead_and_is_excluded_from_matching() -> None:
    p = person("RUS")
    entry = cross(p, at(date(2026, 6, 1), 9), Direction.ENTRY, cp="KZ-AIR-ALA")
    clone = cross(p, entry.time + timedelta(minutes=90), Direction.EXIT, cp="KZ-AIR-NQZ")  # ~970 km: 1.08 h + 1 h
    genuine_exit = cross(p, at(date(2026, 6, 8)), Direction.EXIT, cp="KZ-AIR-ALA")
    got = truth([entry, reg(p, at(date(2026, 6, 1), 14)), clone, genuine_exit])
    assert set(got) == {"IMPOSSIBLE_TRAVEL"}  # the clone's exit did not close the stay
    x = got["IMPOSSIBLE_TRAVEL"][0]
    assert x.anchor_event_id == clone.event_id and x.evidence_event_ids == [entry.event_id, clone.event_id]
    p2 = person("RUS")
    entry2 = cross(p2, at(date(2026, 6, 1), 9), Direction.ENTRY, cp="KZ-AIR-ALA")
    flown = cross(p2, entry2.time + timedelta(hours=3), Direction.EXIT, cp="KZ-AIR-NQZ")
    assert truth([entry2, flown]) == {}


def test_banned_entry_and_lost_documents() -> None:
    p = person("TJK")
    expelled = status(p, at(date(2026, 6, 1)), StatusChangeKind.EXPELLED, date(2026, 6, 1), date(2031, 6, 1))
    back = cross(p, at(date(2026, 6, 20)), Direction.ENTRY)
    got = truth([expelled, back, reg(p, at(date(2026, 6, 20), 18)), cross(p, at(date(2026, 6, 25)), Direction.EXIT)])
    assert set(got) == {"BANNED_ENTRY"} and got["BANNED_ENTRY"][0].evidence_event_ids == [
        expelled.event_id,
        back.event_id,
    ]

    citizen = EntryBasis(EntryBasisKind.CITIZEN)
    k = person("KAZ")
    stolen = status(k, at(date(2026, 6, 1)), StatusChangeKind.DOCUMENT_STOLEN)
    out = cross(k, at(date(2026, 6, 3)), Direction.EXIT, basis=citizen)
    back_in = cross(k, at(date(2026, 6, 6)), Direction.ENTRY, basis=citizen)
    assert [x.anchor_event_id for x in truth([stolen, out, back_in])["LOST_STOLEN_DOCUMENT"]] == [
        out.event_id,
        back_in.event_id,
    ]
    k2 = person("KAZ")
    lost = status(k2, at(date(2026, 6, 1)), StatusChangeKind.DOCUMENT_LOST)
    found = status(k2, at(date(2026, 6, 2)), StatusChangeKind.DOCUMENT_RECOVERED)
    assert truth([lost, found, cross(k2, at(date(2026, 6, 3)), Direction.EXIT, basis=citizen)]) == {}


# --- Step 7: address crowding -----------------------------------------------------------------------------------


def _guests(n: int, host: HostKind = HostKind.PRIVATE_HOST) -> list[PlannedRegistration]:
    start = at(date(2026, 6, 1), 9)
    return [
        reg(
            person("UZB"),
            start + timedelta(hours=i),
            host=host,
            address="DACHNY MASSIV 1 UCHASTOK 1",
            valid=(date(2026, 6, 1), date(2026, 6, 20)),
        )
        for i in range(n)
    ]


def test_fictitious_address_when_the_count_first_exceeds_the_threshold() -> None:
    threshold = RULES.address.threshold["PRIVATE_HOST"]
    regs = _guests(threshold + 3)
    got = address_truth(regs, rules=RULES, pseudonym_key=KEY, end=END)
    assert len(got) == 1
    x = got[0]
    r = regs[threshold]  # the (threshold + 1)-th guest
    subject = address_key("KZ-75", "DACHNY MASSIV 1 UCHASTOK 1", KEY)
    assert x.anchor_event_id == r.event_id and x.traveller_key == r.person.key
    assert x.alert_id == alert_id("FICTITIOUS_ADDRESS", subject, r.event_id)
    assert address_truth(_guests(threshold), rules=RULES, pseudonym_key=KEY, end=END) == []
    assert address_truth(_guests(threshold + 3, HostKind.HOTEL), rules=RULES, pseudonym_key=KEY, end=END) == []


def test_fictitious_address_counts_cancellations_and_rearms() -> None:
    threshold = RULES.address.threshold["PRIVATE_HOST"]
    regs = _guests(threshold + 1)
    last = regs[-1]
    cancel = reg(
        regs[0].person,
        last.time - timedelta(minutes=5),
        RegistrationAction.CANCELLED,
        regs[0].registration_id,
        HostKind.PRIVATE_HOST,
        "DACHNY MASSIV 1 UCHASTOK 1",
    )
    assert address_truth([*regs, cancel], rules=RULES, pseudonym_key=KEY, end=END) == []
    more = _guests(threshold + 1)  # same address: first alert at the 11th; none again while it stays above
    again = [
        reg(
            person("UZB"),
            more[-1].time + timedelta(hours=1 + i),
            host=HostKind.PRIVATE_HOST,
            address="DACHNY MASSIV 1 UCHASTOK 1",
            valid=(date(2026, 6, 1), date(2026, 6, 20)),
        )
        for i in range(3)
    ]
    assert len(address_truth([*more, *again], rules=RULES, pseudonym_key=KEY, end=END)) == 1
