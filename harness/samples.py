"""The one record factory: source records (and the outputs Stay, Alert) for tests, benchmarks and demo data.

Every builder takes keyword overrides over plausible defaults, so a caller names only what its case is about:
`crossing("c1", event_time=t, direction="EXIT")`. Enum fields take the enum or its string. Event ids default to
a fresh uuid4. `traffic` draws many crossings weighted like the real border.

Not here, on purpose: `producers.build` (the integrators' API: plain values, validated by `parse_record`,
every required field asked for), `schemas.convert` (wire dicts to records), the simulator's materialisation of
planned events (`harness.simulator`), and `tests/streams/core/factory.py`, which only says things in the core tests'
words (local Almaty times, checkpoints by id, a `Run` fed step by step) and builds its records here.

The traffic weights follow ../shared/domain.md: 2022 foreign
entries (Russia 2.9 M, Uzbekistan 2.3 M, Kyrgyzstan 0.73 M, Tajikistan 0.33 M, Turkey 0.09 M; ~90 % CIS),
busy posts Kordai and Zhibek Zholy; checkpoint weights are their daily capacity in rules/checkpoints.csv.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Final

from schemas.records import (
    Alert,
    AlertAction,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Conveyance,
    ConveyanceKind,
    Crossing,
    Direction,
    Document,
    DocumentType,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    Severity,
    Sex,
    StatusChange,
    StatusChangeKind,
    Stay,
    Traveller,
)
from shekara.reference import load_checkpoints

# Relative weights of nationalities among crossings (KAZ: citizens, about half of all crossings in 2023).
NATIONALITY_WEIGHTS: dict[str, float] = {
    "KAZ": 100.0,
    "RUS": 29.0,
    "UZB": 23.0,
    "KGZ": 7.3,
    "TJK": 3.3,
    "CHN": 1.6,
    "TUR": 0.9,
    "BLR": 0.5,
    "AZE": 0.5,
    "TKM": 0.4,
    "ARM": 0.3,
    "GEO": 0.3,
    "IND": 0.3,
    "KOR": 0.3,
    "DEU": 0.3,
    "USA": 0.2,
    "MNG": 0.2,
    "IRN": 0.15,
    "AFG": 0.1,
    "PAK": 0.1,
    "UKR": 0.2,
    "GBR": 0.1,
    "JPN": 0.1,
    "ARE": 0.1,
    "FRA": 0.08,
    "ITA": 0.06,
    "POL": 0.05,
    "ISR": 0.05,
    "VNM": 0.05,
    "THA": 0.04,
    "MDA": 0.04,
    "LTU": 0.03,
    "LVA": 0.03,
    "EST": 0.03,
    "NLD": 0.03,
    "ESP": 0.03,
    "CZE": 0.02,
    "CAN": 0.02,
    "AUS": 0.02,
    "EGY": 0.02,
    "SAU": 0.02,
    "MYS": 0.02,
    "IDN": 0.02,
    "PHL": 0.02,
    "BGD": 0.02,
    "NGA": 0.01,
    "SYR": 0.01,
    "IRQ": 0.01,
    "SRB": 0.01,
    "HUN": 0.01,
    "ROU": 0.01,
    "BGR": 0.01,
    "GRC": 0.01,
    "SWE": 0.01,
    "FIN": 0.01,
    "NOR": 0.01,
    "CHE": 0.01,
    "AUT": 0.01,
    "BEL": 0.01,
    "BRA": 0.01,
}


def checkpoint_weights() -> dict[str, float]:
    """Checkpoint id -> daily capacity (rules/checkpoints.csv), the share of traffic it gets."""
    return {cp.id: float(cp.daily_capacity) for cp in load_checkpoints().values()}


NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
BUS = Conveyance(ConveyanceKind.BUS, "01AB123")


class _Default(Enum):
    """Marks an argument left out, where None is a value the caller may mean (a status change without dates)."""

    TOKEN = 0


DEFAULT: Final = _Default.TOKEN


def traveller(
    number: str = "N1234567",
    nationality: str = "UZB",
    *,
    issuing_country: str | None = None,
    birth_date: date = date(1990, 5, 17),
    sex: Sex | str = Sex.M,
    document_type: DocumentType | str = DocumentType.PASSPORT,
) -> Traveller:
    """A traveller; the document's issuing country defaults to the nationality."""
    doc = Document(DocumentType(document_type), number, issuing_country or nationality)
    return Traveller(doc, nationality, birth_date, Sex(sex))


def checkpoint_of(cp: Checkpoint | str = "KZ-UZ-ZHIBEK-ZHOLY") -> Checkpoint:
    """A checkpoint by id, with its kind and neighbour from the catalogue (an unknown id: a road post)."""
    if isinstance(cp, Checkpoint):
        return cp
    info = load_checkpoints().get(cp)
    if info is None:
        return Checkpoint(cp, CheckpointKind.ROAD, None)
    return Checkpoint(cp, info.kind, info.border_country)


def _who(who: Traveller | None, number: str, nationality: str) -> Traveller:
    return who if who is not None else traveller(number, nationality)


def crossing(
    event_id: str | None = None,
    *,
    event_time: datetime = NOW,
    received_time: datetime | None = None,
    checkpoint: Checkpoint | str = "KZ-UZ-ZHIBEK-ZHOLY",
    direction: Direction | str = Direction.ENTRY,
    traveller: Traveller | None = None,
    number: str = "N1234567",
    nationality: str = "UZB",
    purpose: Purpose | str = Purpose.WORK,
    entry_basis: EntryBasis | EntryBasisKind | str = EntryBasisKind.VISA_FREE,
    source_system: str = "berkut",
    conveyance: Conveyance | None = BUS,
    **fields: Any,
) -> Crossing:
    """A crossing. `received_time` defaults to 3 s after the event; `fields` sets the optional ones
    (declared_destination, planned_exit_checkpoint, migration_card_number, source_record_id)."""
    basis = entry_basis if isinstance(entry_basis, EntryBasis) else EntryBasis(EntryBasisKind(entry_basis))
    return Crossing(
        event_id=event_id or str(uuid.uuid4()),
        event_time=event_time,
        received_time=received_time or event_time + timedelta(seconds=3),
        checkpoint=checkpoint_of(checkpoint),
        direction=Direction(direction),
        traveller=_who(traveller, number, nationality),
        purpose=Purpose(purpose),
        entry_basis=basis,
        source_system=source_system,
        conveyance=conveyance,
        **fields,
    )


def registration(
    event_id: str | None = None,
    *,
    event_time: datetime = NOW,
    received_time: datetime | None = None,
    action: RegistrationAction | str = RegistrationAction.REGISTERED,
    registration_id: str | None = None,
    traveller: Traveller | None = None,
    number: str = "N1234567",
    nationality: str = "UZB",
    host_kind: HostKind | str = HostKind.HOTEL,
    host_id: str = "hotel-42",
    region: str = "KZ-75",
    address: str = "Almaty, Abay ave 1",
    valid_from: date | None = None,
    valid_until: date | None = None,
    source_system: str = "eqonaq",
    **fields: Any,
) -> Registration:
    """A registration at an address: from the event's (UTC) day for 14 days, received 5 s after the event."""
    start = valid_from or event_time.date()
    return Registration(
        event_id=event_id or str(uuid.uuid4()),
        event_time=event_time,
        received_time=received_time or event_time + timedelta(seconds=5),
        action=RegistrationAction(action),
        registration_id=registration_id or str(uuid.uuid4()),
        traveller=_who(traveller, number, nationality),
        host_kind=HostKind(host_kind),
        host_id=host_id,
        region=region,
        address=address,
        valid_from=start,
        valid_until=valid_until or start + timedelta(days=14),
        source_system=source_system,
        **fields,
    )


def status_change(
    event_id: str | None = None,
    *,
    event_time: datetime = NOW,
    received_time: datetime | None = None,
    kind: StatusChangeKind | str = StatusChangeKind.WORK_PERMIT_ISSUED,
    traveller: Traveller | None = None,
    number: str = "N1234567",
    nationality: str = "UZB",
    authority: str = "labour-ministry",
    source_system: str = "e-migration",
    valid_from: date | _Default | None = DEFAULT,
    valid_until: date | _Default | None = DEFAULT,
    reference: str | None = "WP-2026-0001",
    **fields: Any,
) -> StatusChange:
    """A status change, by default a work permit from the event's day for 180 days (pass None for no dates)."""
    day = event_time.date()
    return StatusChange(
        event_id=event_id or str(uuid.uuid4()),
        event_time=event_time,
        received_time=received_time or event_time + timedelta(seconds=5),
        kind=StatusChangeKind(kind),
        traveller=_who(traveller, number, nationality),
        authority=authority,
        source_system=source_system,
        valid_from=day if valid_from is _Default.TOKEN else valid_from,
        valid_until=day + timedelta(days=180) if valid_until is _Default.TOKEN else valid_until,
        reference=reference,
        **fields,
    )


def stay(stay_id: str, revision: int = 0, **over: Any) -> Stay:
    entry = over.pop("entry_time", NOW)
    base = Stay(
        stay_id=stay_id,
        revision=revision,
        traveller_key=over.pop("traveller_key", "k" * 32),
        nationality=over.pop("nationality", "UZB"),
        entry_basis=EntryBasisKind.VISA_FREE,
        purpose=Purpose.WORK,
        entry_event_id="entry-" + stay_id,
        exit_event_id=None,
        entry_time=entry,
        exit_time=None,
        entry_checkpoint=over.pop("entry_checkpoint", "KZ-UZ-ZHIBEK-ZHOLY"),
        exit_checkpoint=None,
        days=1,
        allowed_days=30,
        days_over=0,
        rule_id="visa-free-general",
        rule_version="2023-01-27",
        anchor_time=entry,
    )
    return replace(base, **over)


def alert(alert_id: str, action: AlertAction = AlertAction.RAISED, **over: Any) -> Alert:
    base = Alert(
        alert_id=alert_id,
        action=action,
        type=AlertType(over.pop("type", AlertType.IN_COUNTRY_OVERSTAY)),
        severity=Severity(over.pop("severity", Severity.HIGH)),
        traveller_key="k" * 32,
        nationality=over.pop("nationality", "UZB"),
        checkpoint_id="KZ-UZ-ZHIBEK-ZHOLY",
        evidence_event_ids=["e1"],
        rule_id="visa-free-general",
        rule_version="2023-01-27",
        reason="stayed past the allowed 30 days",
        due_time=over.pop("due_time", NOW),
        emitted_time=over.pop("emitted_time", NOW + timedelta(minutes=1)),
        days_overstayed=None,
        details={},
    )
    return replace(base, **over)


def traffic(n: int, *, seed: int = 7, start: datetime = NOW, hours: float = 24.0) -> Iterator[Crossing]:
    """`n` crossings spread over `hours` from `start`, weighted like Kazakhstan's border traffic."""
    rng = random.Random(seed)
    cps = load_checkpoints()
    cp_ids = list(cps)
    cp_w = [cps[c].daily_capacity for c in cp_ids]
    nats, nat_w = list(NATIONALITY_WEIGHTS), list(NATIONALITY_WEIGHTS.values())
    span = hours * 3600
    for i in range(n):
        cp = cps[rng.choices(cp_ids, cp_w)[0]]
        nat = rng.choices(nats, nat_w)[0]
        t = start + timedelta(seconds=span * i / max(n, 1))
        kind = {"AIR": ConveyanceKind.FLIGHT, "RAIL": ConveyanceKind.TRAIN, "SEA": ConveyanceKind.SHIP}.get(
            cp.kind, rng.choice((ConveyanceKind.CAR, ConveyanceKind.BUS, ConveyanceKind.FOOT, ConveyanceKind.TRUCK))
        )
        yield crossing(
            f"bench-{seed}-{i}",
            event_time=t,
            received_time=t + timedelta(seconds=rng.randint(1, 90)),
            checkpoint=Checkpoint(cp.id, cp.kind, cp.border_country),
            direction=Direction.ENTRY if rng.random() < 0.505 else Direction.EXIT,
            traveller=traveller(
                f"N{rng.randrange(10**8):08d}",
                nat,
                birth_date=date(1950, 1, 1) + timedelta(days=rng.randrange(25_000)),
                sex=Sex.M if rng.random() < 0.69 else Sex.F,
            ),
            purpose=rng.choice((Purpose.WORK, Purpose.PRIVATE, Purpose.TOURISM, Purpose.BUSINESS)),
            entry_basis=EntryBasisKind.CITIZEN if nat == "KAZ" else EntryBasisKind.VISA_FREE,
            conveyance=Conveyance(kind, f"KC{rng.randrange(1000)}" if kind == ConveyanceKind.FLIGHT else None),
        )
