"""Sample records and traffic shapes for the sink's tests, demo data and benchmarks.

Builders take keyword overrides over plausible defaults. The weights follow ../shared/domain.md: 2022 foreign
entries (Russia 2.9 M, Uzbekistan 2.3 M, Kyrgyzstan 0.73 M, Tajikistan 0.33 M, Turkey 0.09 M; ~90 % CIS),
busy posts Kordai and Zhibek Zholy; checkpoint weights are their daily capacity in rules/checkpoints.csv.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

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


def traveller(number: str = "N1234567", nationality: str = "UZB", **over: Any) -> Traveller:
    doc = Document(DocumentType.PASSPORT, number, over.pop("issuing_country", nationality))
    return Traveller(doc, nationality, over.pop("birth_date", date(1990, 5, 17)), over.pop("sex", Sex.M))


def crossing(event_id: str | None = None, **over: Any) -> Crossing:
    t = over.pop("event_time", NOW)
    cp = over.pop("checkpoint", None) or Checkpoint(
        over.pop("checkpoint_id", "KZ-UZ-ZHIBEK-ZHOLY"), over.pop("checkpoint_kind", CheckpointKind.ROAD), "UZB"
    )
    tr = over.pop("traveller", None) or traveller(over.pop("number", "N1234567"), over.pop("nationality", "UZB"))
    base = Crossing(
        event_id=event_id or str(uuid.uuid4()),
        event_time=t,
        received_time=over.pop("received_time", t + timedelta(seconds=3)),
        checkpoint=cp,
        direction=Direction(over.pop("direction", Direction.ENTRY)),
        traveller=tr,
        purpose=Purpose(over.pop("purpose", Purpose.WORK)),
        entry_basis=over.pop("entry_basis", EntryBasis(EntryBasisKind.VISA_FREE)),
        source_system="berkut",
        conveyance=over.pop("conveyance", Conveyance(ConveyanceKind.BUS, "01AB123")),
    )
    return replace(base, **over)


def registration(event_id: str | None = None, **over: Any) -> Registration:
    t = over.pop("event_time", NOW)
    valid_from = over.pop("valid_from", t.date())
    tr = over.pop("traveller", None) or traveller(over.pop("number", "N1234567"), over.pop("nationality", "UZB"))
    base = Registration(
        event_id=event_id or str(uuid.uuid4()),
        event_time=t,
        received_time=t + timedelta(seconds=5),
        action=RegistrationAction(over.pop("action", RegistrationAction.REGISTERED)),
        registration_id=over.pop("registration_id", str(uuid.uuid4())),
        traveller=tr,
        host_kind=HostKind(over.pop("host_kind", HostKind.HOTEL)),
        host_id=over.pop("host_id", "hotel-42"),
        region=over.pop("region", "KZ-75"),
        address=over.pop("address", "Almaty, Abay ave 1"),
        valid_from=valid_from,
        valid_until=over.pop("valid_until", valid_from + timedelta(days=14)),
        source_system="eqonaq",
    )
    return replace(base, **over)


def status_change(event_id: str | None = None, **over: Any) -> StatusChange:
    t = over.pop("event_time", NOW)
    tr = over.pop("traveller", None) or traveller(over.pop("number", "N1234567"), over.pop("nationality", "UZB"))
    base = StatusChange(
        event_id=event_id or str(uuid.uuid4()),
        event_time=t,
        received_time=t + timedelta(seconds=5),
        kind=StatusChangeKind(over.pop("kind", StatusChangeKind.WORK_PERMIT_ISSUED)),
        traveller=tr,
        authority="labour-ministry",
        source_system="e-migration",
        valid_from=t.date(),
        valid_until=t.date() + timedelta(days=180),
        reference="WP-2026-0001",
    )
    return replace(base, **over)


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
        yield Crossing(
            event_id=f"bench-{seed}-{i}",
            event_time=t,
            received_time=t + timedelta(seconds=rng.randint(1, 90)),
            checkpoint=Checkpoint(cp.id, cp.kind, cp.border_country),
            direction=Direction.ENTRY if rng.random() < 0.505 else Direction.EXIT,
            traveller=Traveller(
                Document(DocumentType.PASSPORT, f"N{rng.randrange(10**8):08d}", nat),
                nat,
                date(1950, 1, 1) + timedelta(days=rng.randrange(25_000)),
                Sex.M if rng.random() < 0.69 else Sex.F,
            ),
            purpose=rng.choice((Purpose.WORK, Purpose.PRIVATE, Purpose.TOURISM, Purpose.BUSINESS)),
            entry_basis=EntryBasis(EntryBasisKind.CITIZEN if nat == "KAZ" else EntryBasisKind.VISA_FREE),
            source_system="berkut",
            conveyance=Conveyance(kind, f"KC{rng.randrange(1000)}" if kind == ConveyanceKind.FLIGHT else None),
        )
