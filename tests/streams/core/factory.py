"""Building events for core tests in the words of the domain: local Almaty times, checkpoints by id.

The records themselves come from the one factory, `harness.samples`; this module only fixes the core tests'
vocabulary and defaults (times read as local Almaty wall clock, received at once, readable sequential ids,
registrations for 30 local days) and feeds them through `step` (`Run`), which the factory has no business doing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from harness import samples
from harness.scoring import final_alerts
from schemas.records import (
    Alert,
    Crossing,
    Direction,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    StatusChange,
    StatusChangeKind,
    Stay,
    Traveller,
)
from shekara.pseudonym import traveller_key
from shekara.reference import load_checkpoints
from shekara.rules import load_rules
from streams.core import Event, StepResult, TravellerState, step

ALMATY = ZoneInfo("Asia/Almaty")
KEY = b"test-pseudonym-key"
RULES = load_rules()
CHECKPOINTS = load_checkpoints()
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # wall clock for emitted_time
_ids = itertools.count(1)

# catalogue checkpoints used in tests
ZHAISAN = "KZ-RU-ZHAISAN"  # road, Russian border (west)
SYRYM = "KZ-RU-SYRYM"  # road, Russian border (west), ~380 km from Zhaisan
KHORGOS = "KZ-CN-KHORGOS"  # road, Chinese border
ALA = "KZ-AIR-ALA"  # Almaty airport
NQZ = "KZ-AIR-NQZ"  # Astana airport


def at(local: str) -> datetime:
    """'2026-03-01 10:00' in Asia/Almaty, as a UTC instant."""
    return datetime.fromisoformat(local).replace(tzinfo=ALMATY).astimezone(UTC)


def next_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids):06d}"


def person(nationality: str = "UZB", number: str = "N1234567", issuing: str | None = None) -> Traveller:
    return samples.traveller(number, nationality, issuing_country=issuing)


def key_of(t: Traveller) -> str:
    return traveller_key(t.document.issuing_country, t.document.number, KEY)


def crossing(
    when: datetime | str,
    direction: Direction | str,
    cp: str = ZHAISAN,
    *,
    who: Traveller | None = None,
    basis: EntryBasisKind = EntryBasisKind.VISA_FREE,
    purpose: Purpose = Purpose.TOURISM,
    visa_expiry: date | None = None,
    dest: str | None = None,
    planned: str | None = None,
    eid: str | None = None,
) -> Crossing:
    t = at(when) if isinstance(when, str) else when
    return samples.crossing(
        eid or next_id("x"),
        event_time=t,
        received_time=t,
        checkpoint=cp,
        direction=direction,
        traveller=who or person(),
        purpose=purpose,
        entry_basis=EntryBasis(basis, visa_expiry=visa_expiry),
        source_system="test",
        conveyance=None,
        declared_destination=dest,
        planned_exit_checkpoint=planned,
    )


def entry(when: datetime | str, cp: str = ZHAISAN, **kw: object) -> Crossing:
    return crossing(when, Direction.ENTRY, cp, **kw)  # type: ignore[arg-type]


def exit_(when: datetime | str, cp: str = ZHAISAN, **kw: object) -> Crossing:
    return crossing(when, Direction.EXIT, cp, **kw)  # type: ignore[arg-type]


def registration(
    when: datetime | str,
    action: RegistrationAction = RegistrationAction.REGISTERED,
    *,
    reg_id: str = "REG-1",
    who: Traveller | None = None,
    host: HostKind = HostKind.HOTEL,
    host_id: str = "H-1",
    region: str = "KZ-75",
    address: str = "Abai ave 10, apt 5",
    valid_from: date | None = None,
    valid_until: date | None = None,
    eid: str | None = None,
) -> Registration:
    t = at(when) if isinstance(when, str) else when
    start = valid_from or t.astimezone(ALMATY).date()  # the local day, as the registration office writes it
    return samples.registration(
        eid or next_id("r"),
        event_time=t,
        received_time=t,
        action=action,
        registration_id=reg_id,
        traveller=who or person(),
        host_kind=host,
        host_id=host_id,
        region=region,
        address=address,
        valid_from=start,
        valid_until=valid_until or start + timedelta(days=29),
        source_system="test",
    )


def status(
    when: datetime | str,
    kind: StatusChangeKind,
    *,
    who: Traveller | None = None,
    valid_from: date | None = None,
    valid_until: date | None = None,
    eid: str | None = None,
) -> StatusChange:
    t = at(when) if isinstance(when, str) else when
    return samples.status_change(
        eid or next_id("s"),
        event_time=t,
        received_time=t,
        kind=kind,
        traveller=who or person(),
        authority="test",
        source_system="test",
        valid_from=valid_from,
        valid_until=valid_until,
        reference=None,
    )


@dataclass
class Run:
    """A traveller fed step by step; keeps every record emitted, as a downstream consumer would."""

    key: str = field(default_factory=lambda: key_of(person()))
    state: TravellerState | None = None
    alerts: list[Alert] = field(default_factory=list)
    stays: list[Stay] = field(default_factory=list)
    last: StepResult | None = None

    def feed(self, events: Sequence[Event], watermark: datetime | str = FAR_FUTURE) -> StepResult:
        wm = at(watermark) if isinstance(watermark, str) else watermark
        state = self.state or TravellerState.empty(self.key)
        result = step(state, events, watermark=wm, emitted_time=NOW, rules=RULES, checkpoints=CHECKPOINTS)
        self.state = result.state
        self.alerts.extend(result.alerts)
        self.stays.extend(result.stays)
        self.last = result
        return result

    def tick(self, watermark: datetime | str) -> StepResult:
        return self.feed([], watermark)

    def final_alerts(self) -> dict[str, Alert]:
        """Alert id -> latest record, for ids RAISED and not later RETRACTED (the evaluation's final set)."""
        return final_alerts(self.alerts)

    def types(self) -> list[str]:
        return sorted(a.type.value for a in self.final_alerts().values())

    def final_stays(self) -> dict[str, Stay]:
        return final_stays(self.stays)


def final_stays(records: Iterable[Stay]) -> dict[str, Stay]:
    latest: dict[str, Stay] = {}
    for s in records:
        if s.stay_id not in latest or s.revision >= latest[s.stay_id].revision:
            latest[s.stay_id] = s
    return {i: s for i, s in latest.items() if s.rule_id != "void"}


def run(events: Sequence[Event], watermark: datetime | str | None = None) -> Run:
    """Feed `events` as one batch; the watermark defaults to the latest event time (everything seen)."""
    r = Run()
    r.feed(events, watermark if watermark is not None else max(e.event_time for e in events))
    return r
