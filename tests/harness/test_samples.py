"""The one record factory (harness/samples.py): defaults a caller can rely on, and overrides that take."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from harness import samples
from schemas.records import (
    Checkpoint,
    CheckpointKind,
    Direction,
    EntryBasis,
    EntryBasisKind,
    Purpose,
    RegistrationAction,
    StatusChangeKind,
)
from schemas.validation import validation_errors

T = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)


def test_defaults_make_valid_records_received_a_few_seconds_later_with_fresh_ids() -> None:
    c, r, s = samples.crossing(event_time=T), samples.registration(event_time=T), samples.status_change(event_time=T)
    for record in (c, r, s):
        assert validation_errors(record, now=T + timedelta(minutes=1), max_future_skew_s=60) == []
    assert c.received_time == T + timedelta(seconds=3)
    assert (r.received_time, s.received_time) == (T + timedelta(seconds=5), T + timedelta(seconds=5))
    assert samples.crossing().event_id != samples.crossing().event_id
    assert (r.valid_from, r.valid_until) == (T.date(), T.date() + timedelta(days=14))
    assert (s.valid_from, s.valid_until) == (T.date(), T.date() + timedelta(days=180))


def test_a_checkpoint_id_takes_its_kind_and_neighbour_from_the_catalogue() -> None:
    assert samples.crossing(checkpoint="KZ-AIR-ALA").checkpoint == Checkpoint("KZ-AIR-ALA", CheckpointKind.AIR, None)
    assert samples.checkpoint_of("KZ-RU-ZHAISAN").border_country == "RUS"
    assert samples.checkpoint_of("KZ-XX-NOWHERE") == Checkpoint("KZ-XX-NOWHERE", CheckpointKind.ROAD, None)
    own = Checkpoint("KZ-RU-UBE", CheckpointKind.ROAD, "UZB")
    assert samples.crossing(checkpoint=own).checkpoint is own


def test_overrides_take_enum_strings_and_optional_fields() -> None:
    c = samples.crossing(
        "c1",
        direction="EXIT",
        purpose="TRANSIT",
        entry_basis="VISA",
        number="K1234567",
        nationality="KGZ",
        declared_destination="RUS",
        conveyance=None,
    )
    assert (c.event_id, c.direction, c.purpose) == ("c1", Direction.EXIT, Purpose.TRANSIT)
    assert c.entry_basis == EntryBasis(EntryBasisKind.VISA)
    assert (c.traveller.document.number, c.traveller.document.issuing_country) == ("K1234567", "KGZ")
    assert (c.declared_destination, c.conveyance) == ("RUS", None)
    r = samples.registration(action="CANCELLED", registration_id="REG-9")
    assert (r.action, r.registration_id) == (RegistrationAction.CANCELLED, "REG-9")


def test_a_status_change_may_have_no_dates_and_a_traveller_another_issuer() -> None:
    who = samples.traveller("N7654321", "TJK", issuing_country="RUS", birth_date=date(1991, 5, 4), sex="F")
    s = samples.status_change(
        kind=StatusChangeKind.DOCUMENT_LOST, traveller=who, valid_from=None, valid_until=None, reference=None
    )
    assert (s.valid_from, s.valid_until, s.reference) == (None, None, None)
    assert (s.traveller.nationality, s.traveller.document.issuing_country) == ("TJK", "RUS")
