"""The shared context journeys are planned in: rules, checkpoints, people, hosts, ids, calendar helpers.

Also the constructors of planned events, so behaviours and anomalies describe journeys in the domain's
words (cross, register, change status) and never build records themselves.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from harness.simulator.catalogue import Catalogue, Post
from harness.simulator.config import SimulationConfig
from harness.simulator.hosts import Host, Hosts
from harness.simulator.plan import Person, Planned, PlannedCrossing, PlannedRegistration, PlannedStatus
from harness.simulator.population import People, Volume
from harness.simulator.rand import pick
from schemas.records import (
    CheckpointKind,
    Conveyance,
    ConveyanceKind,
    Direction,
    EntryBasis,
    EntryBasisKind,
    Purpose,
    RegistrationAction,
    StatusChangeKind,
)
from shekara.rules import RuleBook, StayLimit, load_rules

ONE_DAY = timedelta(days=1)
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # odd: multiplying by it permutes 64-bit integers
CARRIERS = ("KC", "KC", "KC", "DV", "FS", "FS", "TK", "SU", "HY", "CZ", "FZ", "PC", "LH", "QR", "J2")
VESSELS = ("ANTARES", "BERKARAR", "PROFESSOR GUL", "AKTAU", "KURYK", "MERKURIY", "BALTIYSK")
LETTERS = "ABCDEFGHKLMNPRSTUX"
VISA_FREE = EntryBasis(EntryBasisKind.VISA_FREE)
CITIZEN = EntryBasis(EntryBasisKind.CITIZEN)
RESIDENT = EntryBasis(EntryBasisKind.RESIDENCE_PERMIT)
DIPLOMAT = EntryBasis(EntryBasisKind.DIPLOMATIC)
_ON_FOOT = Conveyance(ConveyanceKind.FOOT)
SOURCE_OF_HOST = {
    "HOTEL": "eqonaq",
    "PRIVATE_HOST": "egov-migration",
    "SELF": "egov-migration",
    "EMPLOYER": "enbek",
    "STATION": "ktz-migration-desk",
}


class EventIds:
    """Deterministic, unique event ids in UUID form: a seed-derived half and a permuted counter."""

    def __init__(self, seed: int, shard: int = 0) -> None:
        digest = hashlib.sha256(f"shekara-simulator:{seed}:{shard}".encode()).digest()
        hi = digest[:8].hex()
        self._prefix = f"{hi[:8]}-{hi[8:12]}-{hi[12:16]}-"
        self._offset = int.from_bytes(digest[8:16], "big")
        self._n = 0

    def next(self) -> str:
        self._n += 1
        lo = f"{(self._n * _GOLDEN + self._offset) & _MASK64:016x}"
        return f"{self._prefix}{lo[:4]}-{lo[4:]}"

    @property
    def issued(self) -> int:
        return self._n


@dataclass(slots=True)
class Journey:
    """A traveller's planned events in time order; `anomaly` names the injected anomaly, if any.

    Once the engine takes it over, `events` is reversed and consumed from the end, so emitted events are
    released at once (memory follows what is still to come).
    """

    events: list[Planned]
    anomaly: str | None = None


class World:
    """The context of one shard: a share 1/shards of the population with its own ids, documents and hosts."""

    def __init__(self, config: SimulationConfig, shard: int = 0) -> None:
        self.config = config
        self.shard, shards = shard, config.shards
        self.rules: RuleBook = load_rules(config.rules_path)
        self.catalogue = Catalogue(config.checkpoints_path, self.rules.impossible_travel)
        self.people = People(config.seed, config.start, config.pseudonym_key, shard, shards)
        self.hosts = Hosts(self.rules, config.scale, shard, shards)
        self.volume = Volume(self.rules, config.scale / shards, config.start)
        self.ids = EventIds(config.seed, shard)
        self._step = shards
        self.start = config.start
        self.last_day = config.start + timedelta(days=config.days - 1)
        self._day_start: dict[date, datetime] = {}
        self.begin = self.day_start(config.start)
        self.end = self.day_start(config.start + timedelta(days=config.days))  # exclusive
        self._starts = [self.day_start(config.start + timedelta(days=i)) for i in range(config.days + 1)]
        self._days = [config.start + timedelta(days=i) for i in range(config.days + 1)]
        self._limits: dict[tuple[str, EntryBasisKind, date], StayLimit] = {}
        self._dues: dict[tuple[str, EntryBasisKind, Purpose, date], datetime | None] = {}
        self._record_serial = shard  # source record numbers: shard + k * shards, unique across shards
        # Vehicles, trains, flights and ships in use: drawn once per run, shared by many travellers.
        r = random.Random(f"{config.seed}:vehicles")
        plates = [
            f"{r.randrange(100, 1000)}{r.choice(LETTERS)}{r.choice(LETTERS)}{r.randrange(1, 20):02d}"
            for _ in range(6000)
        ]
        self._cars = [Conveyance(ConveyanceKind.CAR, p) for p in plates[:3000]]
        self._buses = [Conveyance(ConveyanceKind.BUS, p) for p in plates[3000:5000]]
        self._trucks = [Conveyance(ConveyanceKind.TRUCK, p) for p in plates[5000:]]
        self._flights = [Conveyance(ConveyanceKind.FLIGHT, f"{c} {n}") for c in CARRIERS for n in range(101, 400, 3)]
        self._trains = [Conveyance(ConveyanceKind.TRAIN, f"{n:03d}") for n in range(1, 400)]
        self._ships = [Conveyance(ConveyanceKind.SHIP, v) for v in VESSELS]

    # --- time ---------------------------------------------------------------------------------------------
    def day_start(self, d: date) -> datetime:
        t = self._day_start.get(d)
        if t is None:
            t = self.rules.day_start(d)
            self._day_start[d] = t
        return t

    def at(self, d: date, second: float) -> datetime:
        """Local day `d` plus `second` seconds after its local midnight (may run into the next day)."""
        return self.day_start(d) + timedelta(seconds=second)

    def local(self, t: datetime) -> date:
        """Local (Asia/Almaty) day of an instant: from the period's day starts when inside it, else via the zone."""
        if self.begin <= t < self.end:
            return self._days[self.day_index(t)]
        return self.rules.local_date(t)

    def day_index(self, t: datetime) -> int:
        """Local day of an instant inside the period as an index from the start (0 = first day); fast."""
        starts = self._starts
        i = int((t - self.begin).total_seconds() // 86400)
        i = min(max(i, 0), len(starts) - 2)
        while i > 0 and t < starts[i]:
            i -= 1
        while i + 1 < len(starts) and t >= starts[i + 1]:
            i += 1
        return i

    # --- rules --------------------------------------------------------------------------------------------
    def stay_limit(self, nationality: str, basis: EntryBasisKind, day: date) -> StayLimit:
        """`rules.stay_limit`, remembered (the same few questions are asked for every visitor)."""
        k = (nationality, basis, day)
        row = self._limits.get(k)
        if row is None:
            row = self._limits[k] = self.rules.stay_limit(nationality, basis, day)
        return row

    def visa_free_basis(self, nationality: str, day: date, rng: random.Random, days: int = 30) -> EntryBasis:
        """VISA_FREE, or a visa valid `days` days for nationals who need one."""
        if nationality in self.rules.groups.get("VISA_REQUIRED", frozenset()):
            return EntryBasis(EntryBasisKind.VISA, day + timedelta(days=days - 1), f"V{rng.randrange(10**8):08d}")
        return VISA_FREE

    def last_allowed_day(self, nationality: str, basis: EntryBasis, entry_day: date) -> date | None:
        """Step 3's L before any extension (None: no limit)."""
        row = self.stay_limit(nationality, basis.kind, entry_day)
        if row.unlimited:
            return None
        if row.per_entry_from == "visa_expiry" and basis.visa_expiry is not None:
            return basis.visa_expiry
        return entry_day + timedelta(days=(row.per_entry_days or 1) - 1)

    def registration_due(
        self, nationality: str, basis: EntryBasis, purpose: Purpose, entry: datetime
    ) -> datetime | None:
        """Step 5's due time for a stay entered at `entry` (None: exempt)."""
        e = self.local(entry)
        k = (nationality, basis.kind, purpose, e)
        if k in self._dues:
            return self._dues[k]
        rule = self.rules.registration_rule(nationality, basis.kind, purpose, e)
        due: datetime | None = None
        if rule is not None:
            if rule.deadline_working_days is not None:
                base = e + timedelta(days=rule.exempt_days - 1) if rule.exempt_days > 0 else e
                r = self.rules.calendar.nth_working_day_after(base, rule.deadline_working_days)
            else:
                assert rule.deadline_calendar_day is not None
                r = e + timedelta(days=rule.deadline_calendar_day - 1)
            due = self.day_start(r + ONE_DAY)
        self._dues[k] = due
        return due

    # --- planned events -----------------------------------------------------------------------------------
    def conveyance(self, rng: random.Random, post: Post) -> Conveyance:
        kind = post.info.kind
        if kind == CheckpointKind.AIR:
            return pick(rng, self._flights)
        if kind == CheckpointKind.RAIL:
            return pick(rng, self._trains)
        if kind == CheckpointKind.SEA:
            return pick(rng, self._ships)
        u = rng.random()
        if u < 0.15:
            return _ON_FOOT
        return pick(rng, self._cars if u < 0.60 else self._buses if u < 0.90 else self._trucks)

    def cross(
        self,
        t: datetime,
        person: Person,
        post: Post,
        direction: Direction,
        purpose: Purpose,
        basis: EntryBasis,
        conveyance: Conveyance | None = None,
        *,
        destination: str | None = None,
        planned_exit: str | None = None,
        card: bool = False,
    ) -> PlannedCrossing:
        self._record_serial += self._step
        return PlannedCrossing(
            t,
            self.ids.next(),
            person,
            post.info,
            direction,
            purpose,
            basis,
            destination,
            planned_exit,
            f"MC{self._record_serial:010d}" if card else None,
            conveyance,
            f"BRK{self._record_serial:011d}",
        )

    def register(
        self,
        t: datetime,
        person: Person,
        host: Host,
        valid_from: date,
        valid_until: date,
        *,
        action: RegistrationAction = RegistrationAction.REGISTERED,
        registration_id: str | None = None,
    ) -> PlannedRegistration:
        self._record_serial += self._step
        return PlannedRegistration(
            t,
            self.ids.next(),
            person,
            action,
            registration_id or f"REG{self._record_serial:011d}",
            host.kind,
            host.host_id,
            host.region,
            host.address,
            valid_from,
            valid_until,
            SOURCE_OF_HOST[host.kind.value],
            f"R{self._record_serial:011d}",
        )

    def cancel(self, t: datetime, reg: PlannedRegistration) -> PlannedRegistration:
        """Cancellation of `reg` (same registration id, address and validity)."""
        self._record_serial += self._step
        return PlannedRegistration(
            t,
            self.ids.next(),
            reg.person,
            RegistrationAction.CANCELLED,
            reg.registration_id,
            reg.host_kind,
            reg.host_id,
            reg.region,
            reg.address,
            reg.valid_from,
            reg.valid_until,
            reg.source_system,
            f"R{self._record_serial:011d}",
        )

    def status(
        self,
        t: datetime,
        person: Person,
        kind: StatusChangeKind,
        *,
        valid_from: date | None = None,
        valid_until: date | None = None,
        new_person: Person | None = None,
    ) -> PlannedStatus:
        self._record_serial += self._step
        authority, source = _AUTHORITY[kind]
        return PlannedStatus(
            t,
            self.ids.next(),
            person,
            kind,
            authority,
            source,
            valid_from,
            valid_until,
            f"{kind.value[:3]}-{self._record_serial:09d}",
            f"S{self._record_serial:011d}",
            new_person,
        )


_MIGRATION = ("Migration Service of the MVD", "mvd-migration")
_AUTHORITY: dict[StatusChangeKind, tuple[str, str]] = {
    StatusChangeKind.VISA_EXTENDED: _MIGRATION,
    StatusChangeKind.WORK_PERMIT_ISSUED: ("Ministry of Labour (Enbek)", "enbek"),
    StatusChangeKind.WORK_PERMIT_REVOKED: ("Ministry of Labour (Enbek)", "enbek"),
    StatusChangeKind.RESIDENCE_PERMIT_ISSUED: _MIGRATION,
    StatusChangeKind.RESIDENCE_PERMIT_REVOKED: _MIGRATION,
    StatusChangeKind.REFUGEE_GRANTED: _MIGRATION,
    StatusChangeKind.REFUGEE_ENDED: _MIGRATION,
    StatusChangeKind.EXPELLED: ("Court / Migration Service of the MVD", "mvd-migration"),
    StatusChangeKind.DOCUMENT_LOST: ("Police (MVD)", "mvd-police"),
    StatusChangeKind.DOCUMENT_STOLEN: ("Police (MVD)", "mvd-police"),
    StatusChangeKind.DOCUMENT_RECOVERED: ("Police (MVD)", "mvd-police"),
    StatusChangeKind.DOCUMENT_REPLACED: ("Passport authority of the issuing state", "passport-office"),
}
