"""Validation of source events and parsing of plain JSON values: each problem names its field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import hypothesis
import pytest

from harness import samples
from schemas.ids import alert_id, source_event_id, stay_id
from schemas.records import Crossing, Document, EntryBasis, EntryBasisKind, Purpose, StatusChangeKind, Traveller
from schemas.validation import (
    HIDDEN_REASON,
    NOT_LATIN_REASON,
    ValidationError,
    _plain_crossing,
    from_json,
    validate,
    validation_errors,
)
from shekara.reference import load_catalogue
from shekara.settings import Limits
from tests.schemas.test_serde import NOW, sample_crossing, sample_registration, sample_status_change
from tests.sinks.test_sink_parity import Case as ParityCase
from tests.sinks.test_sink_parity import cases as parity_cases

SKEW = 300


def errors(record: Any, now: datetime = NOW + timedelta(hours=1)) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in validation_errors(record, now=now, max_future_skew_s=SKEW)]


def with_document(record: Any, **kw: Any) -> Any:
    doc = dataclasses.replace(record.traveller.document, **kw)
    return dataclasses.replace(record, traveller=dataclasses.replace(record.traveller, document=doc))


def with_traveller(record: Any, **kw: Any) -> Any:
    return dataclasses.replace(record, traveller=dataclasses.replace(record.traveller, **kw))


@pytest.mark.parametrize(
    "record",
    [
        sample_crossing(),
        sample_registration(),
        sample_status_change(),
        sample_status_change(valid_until=None),  # an expulsion without end: the rules' default ban applies
        sample_status_change(valid_from=None, valid_until=None),
    ],
)
def test_valid_events_pass(record: Any) -> None:
    assert errors(record) == []
    validate(record, now=NOW + timedelta(hours=1), max_future_skew_s=SKEW)


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (sample_crossing(event_id=""), "event_id", "non-empty"),
        (sample_crossing(event_time=NOW.replace(tzinfo=None)), "event_time", "timezone-aware"),
        (sample_crossing(received_time=NOW.replace(tzinfo=None)), "received_time", "timezone-aware"),
        (
            sample_crossing(event_time=NOW + timedelta(hours=2), received_time=NOW + timedelta(hours=2)),
            "event_time",
            "in the future",
        ),
        (sample_crossing(received_time=NOW - timedelta(hours=1)), "received_time", "earlier than event_time"),
        (with_document(sample_crossing(), number="AB1"), "traveller.document.number", "5-20 letters or digits"),
        (with_document(sample_crossing(), number="AB#12345"), "traveller.document.number", "other symbols"),
        (with_document(sample_crossing(), issuing_country="UZ"), "traveller.document.issuing_country", "alpha-3"),
        (with_traveller(sample_crossing(), nationality="uzb"), "traveller.nationality", "alpha-3"),
        (with_traveller(sample_crossing(), birth_date=date(2030, 1, 1)), "traveller.birth_date", "in the future"),
        (with_traveller(sample_crossing(), birth_date=date(1890, 1, 1)), "traveller.birth_date", "over 125"),
        (with_traveller(sample_crossing(), sex="Q"), "traveller.sex", "one of F, M, X"),
        (sample_crossing(direction="SIDEWAYS"), "direction", "one of ENTRY, EXIT"),
        (sample_crossing(entry_basis=EntryBasis(EntryBasisKind.VISA)), "entry_basis.visa_expiry", "required"),
        (sample_crossing(declared_destination=None), "declared_destination", "required when purpose is TRANSIT"),
        (sample_crossing(declared_destination="Russia"), "declared_destination", "alpha-3"),
        (sample_crossing(source_system=" "), "source_system", "non-empty"),
        (sample_registration(valid_until=date(2025, 5, 1)), "valid_until", "before valid_from"),
        (sample_registration(region="Almaty"), "region", "ISO 3166-2:KZ"),
        (sample_registration(host_kind="HOSTEL"), "host_kind", "one of"),
        (sample_status_change(kind="DEPORTED"), "kind", "one of"),
    ],
)
def test_each_rule_names_the_field(record: Any, field: str, message: str) -> None:
    found = errors(record)
    assert [f for f, _ in found] == [field], found
    assert message in found[0][1]
    with pytest.raises(ValidationError) as info:
        validate(record, now=NOW + timedelta(hours=1), max_future_skew_s=SKEW)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_document_number_is_checked_after_normalisation() -> None:
    assert errors(with_document(sample_crossing(), number="ab 123-456/7")) == []


def test_skew_allows_small_clock_differences() -> None:
    now = NOW
    ahead = sample_crossing(event_time=now + timedelta(seconds=SKEW - 5), received_time=now)
    assert errors(ahead, now=now) == []


def test_validate_raises_first_of_several_problems() -> None:
    bad = with_document(sample_crossing(event_id=""), number="x")
    assert [f for f, _ in errors(bad)] == ["event_id", "traveller.document.number"]
    with pytest.raises(ValidationError) as info:
        validate(bad, now=NOW, max_future_skew_s=SKEW)
    assert info.value.field == "event_id"


def test_messages_never_echo_the_document_number() -> None:
    bad = with_document(sample_crossing(), number="SECRET#9")
    assert all("SECRET" not in m for _, m in errors(bad))


def test_only_source_events_are_validated() -> None:
    with pytest.raises(TypeError):
        validate(object(), now=NOW, max_future_skew_s=SKEW)


# --- JSON parsing ------------------------------------------------------------------------------------------


def crossing_json(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "record_type": "Crossing",
        "event_id": "c-9",
        "event_time": "2025-06-01T08:30:00+05:00",
        "received_time": "2025-06-01T03:31:00Z",
        "checkpoint": {"id": "KZ-AIR-ALA", "kind": "AIR"},
        "direction": "ENTRY",
        "traveller": {
            "document": {"type": "PASSPORT", "number": "N7654321", "issuing_country": "TUR"},
            "nationality": "TUR",
            "birth_date": "1985-02-03",
            "sex": "F",
        },
        "purpose": "TOURISM",
        "entry_basis": {"kind": "VISA_FREE"},
        "source_system": "ala-airport",
        "conveyance": {"kind": "FLIGHT", "identifier": "TK350"},
    }
    obj.update(kw)
    return obj


def test_from_json_builds_the_record() -> None:
    record = from_json("Crossing", crossing_json())
    assert isinstance(record, Crossing)
    assert record.event_time == datetime(2025, 6, 1, 3, 30, tzinfo=UTC)
    assert record.traveller == Traveller(Document("PASSPORT", "N7654321", "TUR"), "TUR", date(1985, 2, 3), "F")
    assert record.purpose is Purpose.TOURISM and record.checkpoint.border_country is None
    assert errors(record) == []


@pytest.mark.parametrize(
    ("obj", "field", "message"),
    [
        ({k: v for k, v in crossing_json().items() if k != "direction"}, "direction", "is required"),
        (crossing_json(direction="IN"), "direction", "must be one of ENTRY, EXIT; got 'IN'"),
        (crossing_json(event_time="2025-06-01T08:30:00"), "event_time", "must include a timezone"),
        (crossing_json(event_time="yesterday"), "event_time", "ISO-8601"),
        (crossing_json(colour="red"), "colour", "is not a field of Crossing"),
        (
            crossing_json(traveller={**crossing_json()["traveller"], "birth_date": "03.02.1985"}),
            "traveller.birth_date",
            "YYYY-MM-DD",
        ),
        (crossing_json(checkpoint={"id": "X", "kind": 3}), "checkpoint.kind", "must be one of"),
        (crossing_json(checkpoint="KZ-AIR-ALA"), "checkpoint", "must be an object"),
        (crossing_json(migration_card_number=123), "migration_card_number", "must be a string"),
    ],
)
def test_from_json_errors_name_the_field(obj: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_json("Crossing", obj)
    assert info.value.field == field
    assert message in info.value.message


def test_from_json_derives_a_stable_event_id_and_received_time() -> None:
    obj = crossing_json(source_record_id="BK-1")
    del obj["event_id"], obj["received_time"]
    now = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
    a, b = from_json("Crossing", obj, now=now), from_json("Crossing", obj, now=now)
    assert a.event_id == b.event_id == source_event_id("ala-airport", "BK-1")
    assert a.received_time == now
    del obj["source_record_id"]
    with pytest.raises(ValidationError, match="event_id: is required"):
        from_json("Crossing", obj, now=now)


def test_from_json_unknown_record_type() -> None:
    with pytest.raises(ValidationError) as info:
        from_json("Visa", {})
    assert info.value.field == "record_type"


def test_from_json_registration_and_status_change() -> None:
    reg = from_json(
        "Registration",
        {
            "event_id": "r-2",
            "event_time": "2025-06-01T10:00:00Z",
            "received_time": "2025-06-01T10:00:05Z",
            "action": "CANCELLED",
            "registration_id": "EQ-1",
            "traveller": crossing_json()["traveller"],
            "host_kind": "PRIVATE_HOST",
            "host_id": "IIN-1",
            "region": "KZ-71",
            "address": "Kenesary 4",
            "valid_from": "2025-06-01",
            "valid_until": "2025-06-10",
            "source_system": "egov",
        },
    )
    assert reg.valid_until == date(2025, 6, 10)
    sc = from_json(
        "StatusChange",
        {
            "event_id": "s-2",
            "event_time": "2025-06-01T10:00:00Z",
            "received_time": "2025-06-01T10:00:00Z",
            "kind": "DOCUMENT_STOLEN",
            "traveller": crossing_json()["traveller"],
            "authority": "police",
            "source_system": "mvd",
        },
    )
    assert sc.kind is StatusChangeKind.DOCUMENT_STOLEN and sc.valid_until is None


# --- ids ---------------------------------------------------------------------------------------------------


def test_ids_are_stable_and_distinct() -> None:
    import hashlib

    assert alert_id("IN_COUNTRY_OVERSTAY", "k1", "e1") == hashlib.sha256(b"IN_COUNTRY_OVERSTAY|k1|e1").hexdigest()[:32]
    assert stay_id("k1", "e1") == hashlib.sha256(b"stay|k1|e1").hexdigest()[:32]
    assert alert_id("A", "k1", "e1") != alert_id("A", "k1", "e2")
    assert source_event_id("berkut", "1") == source_event_id("berkut", "1") != source_event_id("other", "1")
    assert source_event_id("berkut", None) != source_event_id("berkut", None)  # no source id: random


def test_traveller_facts_are_judged_at_the_event_not_at_now():
    # Born the week after the crossing: wrong whenever the message is read, even years later (replays, the sink).
    born_after = with_traveller(sample_crossing(), birth_date=(NOW + timedelta(days=7)).date())
    years_later = NOW + timedelta(days=3 * 365)
    assert ("traveller.birth_date", "is in the future (after the day of the event)") in errors(born_after, years_later)
    assert errors(born_after, NOW + timedelta(hours=1)) == errors(born_after, years_later)


# --- limits (settings.limits): dates, sizes, hidden characters, document letters ------------------------------

TIGHT = Limits(max_id_chars=24, max_text_chars=40, earliest_date=date(1950, 1, 1), latest_date=date(2100, 12, 31))


def limited(record: Any, limits: Limits = TIGHT) -> list[tuple[str, str]]:
    found = validation_errors(record, now=NOW + timedelta(hours=1), max_future_skew_s=SKEW, limits=limits)
    return [(e.field, e.message) for e in found]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (sample_crossing(entry_basis=EntryBasis(EntryBasisKind.VISA, date(9999, 12, 31))), "entry_basis.visa_expiry"),
        (sample_registration(valid_from=date(1949, 12, 31)), "valid_from"),
        (sample_registration(valid_until=date(2101, 1, 1)), "valid_until"),
        (sample_status_change(valid_until=date(9999, 12, 31)), "valid_until"),
        (sample_status_change(valid_from=date(1, 1, 1)), "valid_from"),
        (sample_crossing(event_time=datetime(1949, 12, 31, 23, tzinfo=UTC)), "event_time"),
        (sample_crossing(received_time=datetime(2101, 1, 1, tzinfo=UTC)), "received_time"),
        (with_traveller(sample_crossing(), birth_date=date(1949, 12, 31)), "traveller.birth_date"),
    ],
)
def test_every_date_field_is_held_to_the_horizon(record: Any, field: str) -> None:
    assert limited(record)[:1] == [  # the first problem: an event in 1949 makes a 1990 birth "future" too
        (field, f"is outside the accepted dates 1950-01-01..2100-12-31; got {_day(record, field)}")
    ]


def _day(record: Any, field: str) -> str:
    value: Any = record
    for part in field.split("."):
        value = getattr(value, part)
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def test_a_time_is_judged_on_its_utc_day() -> None:
    # 2100-12-31 20:00 at UTC-05:00 is 2101-01-01 01:00 UTC: beyond the horizon.
    late = datetime(2100, 12, 31, 20, tzinfo=timezone(timedelta(hours=-5)))
    assert [f for f, _ in limited(sample_crossing(received_time=late))] == ["received_time"]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (sample_crossing(event_id="e" * 25), "event_id"),
        (sample_crossing(source_system="s" * 41), "source_system"),
        (sample_crossing(source_record_id="r" * 25), "source_record_id"),
        (sample_crossing(migration_card_number="m" * 25), "migration_card_number"),
        (sample_registration(address="\u0416" * 41), "address"),
        (sample_registration(host_id="h" * 25), "host_id"),
        (sample_status_change(reference="r" * 25), "reference"),
        (with_document(sample_crossing(), number="AB123" + " " * 20), "traveller.document.number"),
    ],
)
def test_text_fields_are_held_to_their_length_in_characters(record: Any, field: str) -> None:
    [(got, message)] = limited(record)
    assert got == field and message.endswith(
        "characters long, more than the limit of " + ("40" if field in {"source_system", "address"} else "24")
    )


@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\x7f", "\x85", "\u202a", "\u202e", "\u2066", "\u2069"])
def test_control_characters_and_bidi_overrides_are_refused_in_text(char: str) -> None:
    assert limited(sample_registration(address=f"Abay{char}1")) == [("address", HIDDEN_REASON)]
    assert limited(sample_crossing(event_id=f"e{char}")) == [("event_id", HIDDEN_REASON)]


def test_other_format_characters_are_allowed() -> None:
    assert limited(sample_registration(address="Abay\u200d\u200e 1\u00a0")) == []


@pytest.mark.parametrize("number", ["ß12345", "\uff21\uff22123", "N\u0131234567", "\u0416123456"])
def test_document_numbers_with_letters_outside_a_z_are_refused_not_folded(number: str) -> None:
    assert limited(with_document(sample_crossing(), number=number)) == [("traveller.document.number", NOT_LATIN_REASON)]


def test_default_limits_accept_the_samples_and_refuse_9999() -> None:
    assert limited(sample_crossing(), Limits()) == []
    far = sample_crossing(entry_basis=EntryBasis(EntryBasisKind.VISA, date(9999, 12, 31)))
    assert [f for f, _ in errors(far)] == ["entry_basis.visa_expiry"]  # validate's default: Limits()


# --- the all-clear of a plain crossing (schemas.validation._plain_crossing) --------------------------------------


@hypothesis.settings(max_examples=400, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(case=parity_cases())
def test_the_plain_crossing_shortcut_never_clears_a_crossing_with_a_problem(case: ParityCase) -> None:
    """validate() skips the full checks for a crossing _plain_crossing clears: it must clear only valid ones, and
    validate must raise what validation_errors finds first, whichever way it went (the sink parity's hostile cases)."""
    record = case.record
    now = record.event_time if case.timestamp is None else datetime.fromtimestamp(case.timestamp / 1000.0, UTC)
    limits, catalogue = Limits(), load_catalogue()
    found = validation_errors(record, now=now, max_future_skew_s=SKEW, limits=limits, catalogue=catalogue)
    if isinstance(record, Crossing) and _plain_crossing(record, now, SKEW, limits, catalogue):
        assert found == []
    try:
        validate(record, now=now, max_future_skew_s=SKEW, limits=limits, catalogue=catalogue)
    except ValidationError as raised:
        assert found and (raised.field, raised.message) == (found[0].field, found[0].message)
    else:
        assert found == []


def test_simulated_crossings_take_the_plain_shortcut() -> None:
    """The shortcut is what the processors' rate rests on: the simulator's ordinary traffic must all take it."""
    now = datetime.now(UTC)
    crossings = list(samples.traffic(2_000, start=now - timedelta(days=1)))
    limits, catalogue = Limits(), load_catalogue()
    plain = [c for c in crossings if _plain_crossing(c, now, SKEW, limits, catalogue)]
    assert len(plain) == len(crossings)
    # and a separator in the number, a lower-case country, an unprintable text each take the long way
    c = crossings[0]
    for odd in (
        with_document(c, number="AB-12345"),
        with_traveller(c, nationality="kaz"),
        dataclasses.replace(c, event_id="e\u202e1"),
    ):
        assert not _plain_crossing(odd, now, SKEW, limits, catalogue)


def _shift_years(d: date, years: int) -> date:
    return d.replace(year=d.year + years, day=min(d.day, 28))


@pytest.mark.parametrize(
    "change",
    [
        lambda c, today: with_traveller(c, birth_date=_shift_years(today, -126)),  # age 126
        lambda c, today: with_traveller(c, birth_date=today + timedelta(days=1)),
        lambda c, today: with_traveller(c, birth_date=Limits().earliest_date - timedelta(days=1)),
        lambda c, today: with_document(c, number="AB1"),
        lambda c, today: with_document(c, number="A" * 21),
        lambda c, today: with_document(c, issuing_country="KA"),
        lambda c, today: dataclasses.replace(c, event_id=" "),
        lambda c, today: dataclasses.replace(c, source_system="s" * (Limits().max_text_chars + 1)),
        lambda c, today: dataclasses.replace(c, migration_card_number="m" * (Limits().max_id_chars + 1)),
        lambda c, today: dataclasses.replace(c, planned_exit_checkpoint="NOT-A-POST"),
        lambda c, today: dataclasses.replace(c, checkpoint=dataclasses.replace(c.checkpoint, id="NOT-A-POST")),
        lambda c, today: dataclasses.replace(c, declared_destination="kaz"),
        lambda c, today: dataclasses.replace(c, purpose=Purpose.TRANSIT, declared_destination=None),
        lambda c, today: dataclasses.replace(c, entry_basis=EntryBasis(EntryBasisKind.VISA, None)),
        lambda c, today: dataclasses.replace(c, entry_basis=EntryBasis(EntryBasisKind.VISA, date(9999, 12, 31))),
        lambda c, today: dataclasses.replace(c, event_time=c.event_time + timedelta(days=3)),  # in the future
        lambda c, today: dataclasses.replace(c, received_time=c.event_time - timedelta(hours=1)),
        lambda c, today: dataclasses.replace(c, direction=None),
    ],
)
def test_the_plain_crossing_shortcut_refuses_each_problem(change: Any) -> None:
    """Each problem at its edge: the shortcut leaves the record to the full checks, which find it."""
    now = datetime.now(UTC)
    c = next(iter(samples.traffic(1, start=now - timedelta(hours=1))))
    limits, catalogue = Limits(), load_catalogue()
    odd = change(c, c.event_time.date())
    assert validation_errors(odd, now=now, max_future_skew_s=SKEW, limits=limits, catalogue=catalogue)
    assert not _plain_crossing(odd, now, SKEW, limits, catalogue)
