"""Where foreigners are registered: hotels, private hosts, employers, own flats, station desks.

Private hosts and employers are checked for crowding (FICTITIOUS_ADDRESS), so normal traffic keeps every
such address at no more than half its threshold: each address remembers the validity periods of its
registrations and a new guest goes elsewhere when any day of the new stay would be too full. That bound
over-counts (it ignores cancellations and registration order), so the real count never reaches the threshold.
Addresses are written already normalised (capitals, single spaces, no punctuation), so any reasonable
address normalisation gives the same address key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from harness.simulator.catalogue import Pick
from schemas.records import HostKind
from shekara.rules import RuleBook

STREETS = (
    "ABAI",
    "DOSTYK",
    "TOLE BI",
    "SATPAYEV",
    "KABANBAY BATYR",
    "RESPUBLIKA",
    "SEIFULLIN",
    "ZHIBEK ZHOLY",
    "AUEZOV",
    "BAITURSYNULY",
    "KUNAYEV",
    "TAUKE KHAN",
    "MAMETOVA",
    "ZHAMBYL",
    "RAIYMBEK",
    "AL FARABI",
    "TURAN",
    "MANGILIK EL",
    "KENESARY",
    "BOGENBAY BATYR",
)
MICRODISTRICTS = ("SAMAL", "AKSAI", "ORBITA", "ZHETYSU", "NURSAT", "KULAGER", "SHUGYLA", "ASTANA", "KAZYBEK BI")
# Regions foreigners are registered in when not where they crossed: the three cities of republican status.
CITIES = ("KZ-75", "KZ-71", "KZ-79")
CITY_WEIGHTS = (0.45, 0.30, 0.25)
_CITY_PICK = Pick(CITIES, CITY_WEIGHTS)


@dataclass(frozen=True, slots=True)
class Host:
    kind: HostKind
    host_id: str
    region: str
    address: str


@dataclass(slots=True)
class _Tracked:
    host: Host
    periods: list[tuple[int, int]] = field(default_factory=list)  # (valid_from, valid_until) as ordinals


class Hosts:
    def __init__(self, rules: RuleBook, scale: float, shard: int = 0, shards: int = 1) -> None:
        self._shard, self._shards = shard, shards
        thresholds = rules.address.threshold
        # Half the threshold minus one: the over-counting bound above keeps the real count well clear.
        self.capacity = {
            HostKind.PRIVATE_HOST: max(1, thresholds.get("PRIVATE_HOST", 10) // 2 - 1),
            HostKind.EMPLOYER: max(1, thresholds.get("EMPLOYER", 60) // 2 - 1),
        }
        self._hotels_per_region = 20 + int(400 * scale)
        self._hotels: dict[str, list[Host]] = {}
        self._tracked: dict[tuple[HostKind, str], list[_Tracked]] = {}
        self._serial: dict[tuple[str, str], int] = {}
        self._today = 0

    def region_for(self, rng: random.Random, crossing_region: str) -> str:
        """Where a visitor stays: near the post they crossed at, or one of the big cities."""
        if rng.random() < 0.55:
            return crossing_region
        return str(_CITY_PICK(rng))

    def _next(self, prefix: str, region: str) -> int:
        k = self._serial.get((prefix, region), 0)
        self._serial[(prefix, region)] = k + 1
        return k * self._shards + self._shard  # each address belongs to one shard, which tracks its guests

    @staticmethod
    def _street_address(n: int, flat: bool) -> str:
        street = STREETS[n % len(STREETS)]
        house = 1 + (n // len(STREETS)) % 240
        if not flat:
            return f"{street} {house}"
        apt = 1 + n // (len(STREETS) * 240)
        return f"{street} {house} KV {apt}"

    def hotel(self, rng: random.Random, region: str) -> Host:
        hotels = self._hotels.get(region)
        if hotels is None:
            hotels = [
                Host(HostKind.HOTEL, f"HTL-{region}-{i:04d}", region, f"{self._street_address(i, False)} GOSTINITSA")
                for i in range(self._hotels_per_region)
            ]
            self._hotels[region] = hotels
        return hotels[int(rng.random() * len(hotels))]

    def station(self, region: str) -> Host:
        return Host(HostKind.STATION, f"KTZ-{region}", region, f"VOKZAL {region[3:]} 1")

    def own_flat(self, region: str) -> Host:
        """A rented flat for self-registration: one tenant per address."""
        n = self._next("SELF", region)
        mkr = MICRODISTRICTS[n % len(MICRODISTRICTS)]
        return Host(HostKind.SELF, "SELF", region, f"MKR {mkr} {1 + n // len(MICRODISTRICTS)} KV {1 + n % 97}")

    def fresh_private(self, region: str) -> Host:
        """A private-host address no normal guest will ever use (for the crowded-address anomaly)."""
        n = self._next("FLAT", region)
        return Host(
            HostKind.PRIVATE_HOST, f"PH-{region}-X{n:05d}", region, f"DACHNY MASSIV {n + 1} UCHASTOK {n % 50 + 1}"
        )

    def set_today(self, day: date) -> None:
        """Forget registration periods that ended before `day` (new ones never start earlier)."""
        self._today = day.toordinal()

    def tracked(self, rng: random.Random, kind: HostKind, region: str, valid_from: date, valid_until: date) -> Host:
        """A private host or employer that stays under half its crowding threshold with this guest added."""
        pool = self._tracked.setdefault((kind, region), [])
        lo, hi = valid_from.toordinal(), valid_until.toordinal()
        cap = self.capacity[kind]
        today = self._today
        for _ in range(3 if pool else 0):
            t = pool[int(rng.random() * len(pool))]
            if t.periods and t.periods[0][1] < today:
                t.periods = [p for p in t.periods if p[1] >= today]
            if sum(1 for a, b in t.periods if a <= hi and lo <= b) < cap:
                t.periods.append((lo, hi))
                return t.host
        n = self._next(kind.value, region)
        if kind == HostKind.EMPLOYER:
            host = Host(
                kind, f"BIN{(n * 7919 + 100_000_000_000) % 10**12:012d}", region, self._street_address(n, False)
            )
        else:
            host = Host(kind, f"PH-{region}-{n:06d}", region, self._street_address(n, True))
        pool.append(_Tracked(host, [(lo, hi)]))
        return host
