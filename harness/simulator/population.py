"""Who travels and how many: volumes, daily and seasonal profiles, nationality mix, and traveller identities.

Calibrated to ../shared/domain.md: about 190,000 crossings a day at scale 1.0 (yearly mean), about half of
them by citizens of Kazakhstan and about 90 % of foreigners from CIS countries; 2022 foreign entries Russia
2.9 M, Uzbekistan 2.3 M, Kyrgyzstan 0.73 M, Tajikistan 0.33 M, Turkey 0.09 M; summer peaks, a southern
labour season, holiday peaks on the Uzbek and Kyrgyz borders; hotel guests 69 % male, labour migrants 86 %.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from harness.simulator.catalogue import Pick
from harness.simulator.plan import Person, new_person
from schemas.records import DocumentType, Sex
from shekara.rules import RuleBook

BASE_CROSSINGS_PER_DAY = 190_000
CITIZEN_SHARE = 0.52  # "about 190 k people a day (about 90 k foreigners)"

# Share of foreigners' crossings by behaviour.
FOREIGN_CATEGORIES: dict[str, float] = {
    "day_trader": 0.22,
    "land_visitor": 0.40,
    "air_visitor": 0.16,
    "transit": 0.09,
    "seasonal_worker": 0.05,
    "resident": 0.07,
    "repatriate": 0.01,
}

# Nationality mix within each behaviour (shares sum to 1). Chosen so the overall foreign mix follows the
# 2022 entry figures and about 90 % comes from CIS countries.
NATIONALITIES: dict[str, dict[str, float]] = {
    "day_trader": {"UZB": 0.62, "KGZ": 0.38},
    "land_visitor": {
        "RUS": 0.555,
        "UZB": 0.18,
        "KGZ": 0.07,
        "TJK": 0.05,
        "CHN": 0.035,
        "AZE": 0.02,
        "TKM": 0.02,
        "BLR": 0.01,
        "ARM": 0.01,
        "MDA": 0.005,
        "TUR": 0.01,
        "MNG": 0.01,
        "GEO": 0.005,
        "UKR": 0.005,
        "AFG": 0.005,
        "IRN": 0.01,
    },
    "air_visitor": {
        "RUS": 0.32,
        "UZB": 0.10,
        "KGZ": 0.04,
        "AZE": 0.04,
        "BLR": 0.03,
        "ARM": 0.02,
        "TJK": 0.02,
        "TUR": 0.09,
        "CHN": 0.06,
        "DEU": 0.04,
        "USA": 0.04,
        "KOR": 0.04,
        "IND": 0.04,
        "ARE": 0.03,
        "GBR": 0.02,
        "FRA": 0.01,
        "ITA": 0.01,
        "JPN": 0.01,
        "IRN": 0.01,
        "GEO": 0.01,
        "PAK": 0.01,
        "EGY": 0.005,
        "NGA": 0.005,
    },
    "transit": {"UZB": 0.50, "TJK": 0.35, "KGZ": 0.10, "TKM": 0.03, "AFG": 0.02},
    "seasonal_worker": {"UZB": 0.80, "TJK": 0.10, "KGZ": 0.10},
    "resident": {
        "RUS": 0.40,
        "UZB": 0.30,
        "KGZ": 0.11,
        "CHN": 0.04,
        "MNG": 0.04,
        "UKR": 0.03,
        "TUR": 0.03,
        "KOR": 0.03,
        "DEU": 0.02,
    },
    "repatriate": {"UZB": 0.35, "CHN": 0.25, "MNG": 0.20, "TKM": 0.10, "RUS": 0.10},
}
# Members of the Commonwealth of Independent States, with Turkmenistan (associate member).
CIS = frozenset({"RUS", "BLR", "ARM", "KGZ", "UZB", "TJK", "AZE", "MDA", "TKM"})

# Monthly factors (January first): summer peak, New Year bump. Normalised over the year by `Volume`.
SEASON = (0.85, 0.80, 0.92, 0.95, 1.00, 1.12, 1.20, 1.18, 1.02, 0.95, 0.88, 1.00)
# Seasonal labour in the south: arrivals from spring to early autumn (cotton, melons, vegetables).
LABOUR_SEASON = (0.25, 0.55, 1.40, 1.80, 1.60, 1.25, 1.05, 1.00, 1.10, 0.60, 0.30, 0.20)
WEEKDAY = (0.95, 0.93, 0.95, 0.98, 1.08, 1.08, 1.03)  # Monday first
TRADER_WEEKDAY = (1.1, 1.1, 1.1, 1.1, 1.2, 1.3, 0.1)  # bazaar days; almost no trade on Sunday
HOLIDAY_CITIZENS = 1.20  # on public holidays and the days either side
HOLIDAY_SOUTH = 1.45  # holiday peaks on the Uzbek and Kyrgyz borders

# Local-hour profiles (24 weights, 00:00 first).
HOURS_LAND = (2, 1.5, 1, 1, 1, 1.5, 3, 5, 7, 8, 8, 7.5, 7, 7, 7, 7, 7, 6.5, 6, 5, 4.5, 4, 3, 2.5)
HOURS_AIR = (5, 6, 6, 4, 2, 2, 3, 5, 6, 5, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 5)
HOURS_TRADER_IN = (0, 0, 0, 0, 0, 0, 3, 6, 5, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
HOURS_TRADER_OUT = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 5, 6, 4, 2, 1, 0, 0, 0)
HOURS_OFFICE = (0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 6, 6, 4, 5, 6, 6, 5, 3, 1, 0, 0, 0, 0, 0)


class HourPick:
    """Second of the local day drawn from an hourly profile."""

    __slots__ = ("_pick",)

    def __init__(self, weights: tuple[float, ...]) -> None:
        self._pick = Pick(list(range(24)), weights)

    def __call__(self, rng: random.Random) -> int:
        return int(self._pick(rng)) * 3600 + int(rng.random() * 3600)


@dataclass(frozen=True, slots=True)
class DayVolume:
    """How many crossings each behaviour should produce on one day (scaled)."""

    day: date
    citizens: float
    foreign: dict[str, float]

    @property
    def total(self) -> float:
        return self.citizens + sum(self.foreign.values())


class Volume:
    """Daily crossing targets: base volume x scale x season x weekday x holiday, yearly mean = base x scale."""

    def __init__(self, rules: RuleBook, scale: float, start: date) -> None:
        self.rules = rules
        self.scale = scale
        self._holiday_cache: dict[date, bool] = {}
        year = [start + timedelta(days=i) for i in range(365)]
        self._norm = sum(self._raw_total(d) for d in year) / len(year)

    def is_holiday_period(self, d: date) -> bool:
        """A public holiday (a weekday off) or the day either side of one: travel peaks then."""
        hit = self._holiday_cache.get(d)
        if hit is None:
            cal = self.rules.calendar
            hit = any((x := d + timedelta(days=k)).weekday() < 5 and not cal.is_working_day(x) for k in (-1, 0, 1))
            self._holiday_cache[d] = hit
        return hit

    def _factors(self, d: date) -> tuple[float, dict[str, float]]:
        season = SEASON[d.month - 1]
        wd = WEEKDAY[d.weekday()]
        holiday = self.is_holiday_period(d)
        citizens = CITIZEN_SHARE * season * wd * (HOLIDAY_CITIZENS if holiday else 1.0)
        foreign: dict[str, float] = {}
        for cat, share in FOREIGN_CATEGORIES.items():
            f = season * wd
            if cat == "day_trader":
                f = season * TRADER_WEEKDAY[d.weekday()] * (HOLIDAY_SOUTH if holiday else 1.0)
            elif cat == "seasonal_worker":
                f = LABOUR_SEASON[d.month - 1]
            elif cat == "land_visitor" and holiday:
                f *= 1.0 + (HOLIDAY_SOUTH - 1.0) * 0.45  # the southern part of land visitors
            foreign[cat] = (1.0 - CITIZEN_SHARE) * share * f
        return citizens, foreign

    def _raw_total(self, d: date) -> float:
        citizens, foreign = self._factors(d)
        return citizens + sum(foreign.values())

    def on(self, d: date) -> DayVolume:
        """Target crossings on local day `d`, by behaviour."""
        citizens, foreign = self._factors(d)
        k = BASE_CROSSINGS_PER_DAY * self.scale / self._norm
        return DayVolume(d, citizens * k, {c: v * k for c, v in foreign.items()})


def foreign_nationality_shares() -> dict[str, float]:
    """The configured share of each nationality in foreigners' crossings (for calibration checks)."""
    out: dict[str, float] = {}
    for cat, share in FOREIGN_CATEGORIES.items():
        for nat, s in NATIONALITIES[cat].items():
            out[nat] = out.get(nat, 0.0) + share * s
    return out


# --- identities ---------------------------------------------------------------------------------------------

# Document number formats by issuing country: fixed prefix, letters, digits. The serial is a bijection of a
# per-country counter, so no two travellers of one run share a document (which would merge their histories).
_FORMATS: dict[str, tuple[str, int, int]] = {
    "KAZ": ("N", 0, 8),
    "RUS": ("", 0, 9),
    "UZB": ("", 2, 7),
    "KGZ": ("", 2, 7),
    "TJK": ("", 0, 9),
    "CHN": ("E", 0, 8),
    "TUR": ("U", 0, 8),
    "USA": ("", 0, 9),
}
_DEFAULT_FORMAT = ("", 2, 7)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class DocumentNumbers:
    """Unique, realistic-looking document numbers per issuing country, drawn without collisions."""

    def __init__(self, seed: int, shard: int = 0, shards: int = 1) -> None:
        self._seed = seed
        self._shard, self._shards = shard, shards
        self._next: dict[str, int] = {}
        self._perm: dict[str, tuple[int, int, int]] = {}

    def _params(self, country: str) -> tuple[int, int, int]:
        p = self._perm.get(country)
        if p is None:
            _, letters, digits = _FORMATS.get(country, _DEFAULT_FORMAT)
            space = 26**letters * 10**digits
            rng = random.Random(f"docs:{self._seed}:{country}")
            mult = rng.randrange(space // 3, space)
            while _gcd(mult, space) != 1:
                mult += 1
            p = (space, mult, rng.randrange(space))
            self._perm[country] = p
        return p

    def next(self, country: str) -> str:
        k = self._next.get(country, 0)
        self._next[country] = k + 1
        n = k * self._shards + self._shard  # shards draw from disjoint parts of the same numbering
        space, mult, offset = self._params(country)
        if n >= space:
            raise OverflowError(f"document numbers of {country} exhausted")
        v = (n * mult + offset) % space
        prefix, letters, digits = _FORMATS.get(country, _DEFAULT_FORMAT)
        body = str(v % 10**digits).zfill(digits)
        v //= 10**digits
        head = ""
        for _ in range(letters):
            head = _LETTERS[v % 26] + head
            v //= 26
        return prefix + head + body


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@dataclass(frozen=True, slots=True)
class Profile:
    """Age range and share of men of a behaviour's travellers."""

    min_age: int
    max_age: int
    male: float


PROFILES: dict[str, Profile] = {
    "citizen": Profile(1, 80, 0.52),
    "day_trader": Profile(22, 65, 0.45),
    "land_visitor": Profile(3, 75, 0.60),
    "air_visitor": Profile(18, 75, 0.69),
    "transit": Profile(19, 55, 0.85),
    "seasonal_worker": Profile(19, 55, 0.86),
    "resident": Profile(18, 80, 0.50),
    "repatriate": Profile(1, 80, 0.50),
    "diplomat": Profile(28, 65, 0.70),
}


class People:
    """Makes travellers (document, nationality, birth date, sex) and their pseudonymous keys."""

    def __init__(self, seed: int, start: date, pseudonym_key: bytes, shard: int = 0, shards: int = 1) -> None:
        self.numbers = DocumentNumbers(seed, shard, shards)
        self.start = start
        self.key = pseudonym_key
        self._nat_picks = {cat: Pick(list(m), list(m.values())) for cat, m in NATIONALITIES.items()}

    def nationality(self, rng: random.Random, category: str) -> str:
        return str(self._nat_picks[category](rng))

    def renewed(self, person: Person) -> Person:
        """The same holder on a new document of the same type and issuing state (a renewed passport)."""
        a, d = person.avro, person.avro["document"]
        issuer = d["issuing_country"]
        number = self.numbers.next(issuer)
        return new_person(d["type"], number, issuer, a["nationality"], a["birth_date"], a["sex"], self.key)

    def make(
        self, rng: random.Random, nationality: str, profile: str, doc_type: DocumentType = DocumentType.PASSPORT
    ) -> Person:
        p = PROFILES[profile]
        age_days = p.min_age * 365 + 30 + int(rng.random() * ((p.max_age - p.min_age) * 365 + 270))
        born = self.start - timedelta(days=age_days)
        sex = Sex.M if rng.random() < p.male else Sex.F
        return new_person(doc_type, self.numbers.next(nationality), nationality, nationality, born, sex, self.key)
