"""The rules file (`rules/kz.toml`) as typed, validated values.

Shared by the processors and the simulator (which must never import each other): both judge a stay by
the same rows, so a rule change moves the alerts and the ground truth together. Everything here is pure
data and lookups; the decisions themselves live in `streams.core`.
"""

from __future__ import annotations

import tomllib
from calendar import isleap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from shekara.codes import AlertType, EntryBasisKind, Purpose, Severity

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "kz.toml"
GENERAL = "GENERAL"
ANY = "*"


class RuleError(ValueError):
    """The rules file is inconsistent, or no rule covers a case it must cover."""


@dataclass(frozen=True, slots=True)
class Effective:
    effective_from: date
    effective_until: date | None  # inclusive; None = still in force

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_until is None or day <= self.effective_until)

    def overlaps(self, other: Effective) -> bool:
        a_end = self.effective_until or date.max
        b_end = other.effective_until or date.max
        return self.effective_from <= b_end and other.effective_from <= a_end


@dataclass(frozen=True, slots=True)
class StayLimit:
    """How long a stay may last: per entry and in a rolling window (e.g. 30 per entry, 90 in 180)."""

    id: str
    version: str
    group: str  # nationality group, GENERAL, or "*" (any nationality)
    bases: frozenset[EntryBasisKind]
    period: Effective
    per_entry_days: int | None = None
    per_entry_from: str | None = None  # "visa_expiry" or "permit_end": last day comes from a document
    window_days: int | None = None
    window_limit_days: int | None = None
    unlimited: bool = False

    @property
    def has_window(self) -> bool:
        return self.window_days is not None and self.window_limit_days is not None


@dataclass(frozen=True, slots=True)
class RegistrationRule:
    """When a foreigner must be registered at an address."""

    id: str
    version: str
    group: str
    period: Effective
    deadline_working_days: int | None = None
    exempt_days: int = 0
    deadline_calendar_day: int | None = None
    reregister_working_days: int | None = None


@dataclass(frozen=True, slots=True)
class TransitRule:
    id: str
    version: str
    period: Effective
    window_hours: int
    routes: Mapping[str, frozenset[str]]  # destination country -> designated exit checkpoint ids


@dataclass(frozen=True, slots=True)
class PermitRules:
    version: str
    extend_stay: frozenset[str]  # StatusChangeKind names that extend the allowed stay to valid_until
    revoke: Mapping[str, str]  # revoking kind -> the kind it revokes
    grace_days: int
    refugee_default_days: int


@dataclass(frozen=True, slots=True)
class ImpossibleTravelRule:
    id: str
    version: str
    ground_kmh: float
    air_kmh: float
    air_overhead_minutes: float


@dataclass(frozen=True, slots=True)
class AddressRule:
    id: str
    version: str
    threshold: Mapping[str, int]  # HostKind name -> max distinct foreigners on one day
    exempt_host_kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class BanRule:
    id: str
    version: str
    default_ban_years: int

    def last_day(self, start: date) -> date:
        """The last banned day of an order without an end date: `default_ban_years` whole years from `start`
        (day 1), i.e. the day before the anniversary; the anniversary of 29 February in a common year is 1 March,
        so such a ban ends on 28 February (docs/alerts.md, Step 6)."""
        year = start.year + self.default_ban_years
        anniversary = (
            date(year, 3, 1) if (start.month, start.day) == (2, 29) and not isleap(year) else start.replace(year=year)
        )
        return anniversary - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    severity: Severity
    immediate: bool  # fire on evidence, not when the watermark passes the due time


class WorkCalendar:
    """Working days in Kazakhstan: Mon-Fri minus public holidays, with transfer decrees applied."""

    def __init__(self, extra_days_off: Iterable[date] = (), extra_working_days: Iterable[date] = ()) -> None:
        self._holidays = holidays.country_holidays("KZ")
        for d in extra_days_off:
            self._holidays[d] = "Day off (rules file)"
        self._extra_working = frozenset(extra_working_days)

    def is_working_day(self, day: date) -> bool:
        if day in self._extra_working:
            return True
        return bool(self._holidays.is_working_day(day))

    def nth_working_day_after(self, day: date, n: int) -> date:
        """The n-th working day strictly after `day` (n >= 1)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        d = day
        while n:
            d += timedelta(days=1)
            if self.is_working_day(d):
                n -= 1
        return d


@dataclass(frozen=True)
class RuleBook:
    version: str
    timezone: ZoneInfo
    groups: Mapping[str, frozenset[str]]
    stay_limits: tuple[StayLimit, ...]
    registrations: tuple[RegistrationRule, ...]
    registration_exempt_bases: frozenset[EntryBasisKind]
    registration_exempt_purposes: frozenset[Purpose]
    transits: tuple[TransitRule, ...]
    permits: PermitRules
    impossible_travel: ImpossibleTravelRule
    address: AddressRule
    ban: BanRule
    alerts: Mapping[AlertType, AlertPolicy]
    calendar: WorkCalendar = field(compare=False)
    _group_of: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # --- time -------------------------------------------------------------------------------------
    def local_date(self, moment: datetime) -> date:
        """Calendar day of an instant in Kazakhstan: day boundaries are Asia/Almaty."""
        return moment.astimezone(self.timezone).date()

    def day_start(self, day: date) -> datetime:
        """The instant (UTC) at which `day` begins in Asia/Almaty."""
        return datetime.combine(day, time(0), self.timezone).astimezone(ZoneInfo("UTC"))

    # --- lookups ----------------------------------------------------------------------------------
    def group_of(self, nationality: str) -> str:
        return self._group_of.get(nationality, GENERAL)

    def stay_limit(self, nationality: str, basis: EntryBasisKind, on: date) -> StayLimit:
        """The stay-limit row for this nationality and entry basis in force on `on` (the entry day)."""
        group = self.group_of(nationality)
        candidates = [r for r in self.stay_limits if basis in r.bases and r.period.covers(on)]
        for wanted in (group, GENERAL, ANY) if group != GENERAL else (GENERAL, ANY):
            for row in candidates:
                if row.group == wanted:
                    return row
        raise RuleError(f"no stay limit for nationality {nationality} ({group}) with basis {basis} on {on}")

    def registration_rule(
        self, nationality: str, basis: EntryBasisKind, purpose: Purpose, on: date
    ) -> RegistrationRule | None:
        """The registration rule for an arrival on `on`, or None when the person is exempt."""
        if basis in self.registration_exempt_bases or purpose in self.registration_exempt_purposes:
            return None
        group = self.group_of(nationality)
        rows = [r for r in self.registrations if r.period.covers(on)]
        for wanted in (group, GENERAL) if group != GENERAL else (GENERAL,):
            for row in rows:
                if row.group == wanted:
                    return row
        return None

    def transit_rule(self, on: date) -> TransitRule | None:
        for row in self.transits:
            if row.period.covers(on):
                return row
        return None

    def policy(self, alert_type: AlertType) -> AlertPolicy:
        return self.alerts[alert_type]


# --- loading --------------------------------------------------------------------------------------


def _as_date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise RuleError(f"{where}: expected a TOML date (YYYY-MM-DD), got {value!r}")


def _period(row: Mapping[str, Any], where: str) -> Effective:
    start = _as_date(row.get("effective_from"), f"{where}.effective_from")
    end = row.get("effective_until")
    until = _as_date(end, f"{where}.effective_until") if end is not None else None
    if until is not None and until < start:
        raise RuleError(f"{where}: effective_until {until} is before effective_from {start}")
    return Effective(start, until)


def _bases(value: Any, where: str) -> frozenset[EntryBasisKind]:
    names = [value] if isinstance(value, str) else list(value)
    try:
        return frozenset(EntryBasisKind(n) for n in names)
    except ValueError as exc:
        raise RuleError(f"{where}.basis: {exc}") from exc


def _check_group(group: str, groups: Mapping[str, frozenset[str]], where: str) -> str:
    if group not in groups and group not in (GENERAL, ANY):
        raise RuleError(f"{where}.group: unknown nationality group {group!r}")
    return group


def parse_rules(doc: Mapping[str, Any]) -> RuleBook:
    """Build and validate a RuleBook from the parsed TOML document."""
    meta = doc["meta"]
    groups = {name: frozenset(members) for name, members in doc.get("groups", {}).items()}
    group_of: dict[str, str] = {}
    for name, members in groups.items():
        for nat in members:
            if nat in group_of:
                raise RuleError(f"groups: {nat} is in both {group_of[nat]} and {name}")
            group_of[nat] = name

    limits = []
    for i, row in enumerate(doc.get("stay_limit", [])):
        where = f"stay_limit[{i}] ({row.get('id')})"
        limits.append(
            StayLimit(
                id=row["id"],
                version=str(row["version"]),
                group=_check_group(row["group"], groups, where),
                bases=_bases(row["basis"], where),
                period=_period(row, where),
                per_entry_days=row.get("per_entry_days"),
                per_entry_from=row.get("per_entry_from"),
                window_days=row.get("window_days"),
                window_limit_days=row.get("window_limit_days"),
                unlimited=bool(row.get("unlimited", False)),
            )
        )
    for a_i, a in enumerate(limits):
        if not (a.unlimited or a.per_entry_days or a.per_entry_from):
            raise RuleError(f"stay_limit {a.id}: needs per_entry_days, per_entry_from or unlimited = true")
        if (a.window_days is None) != (a.window_limit_days is None):
            raise RuleError(f"stay_limit {a.id}: window_days and window_limit_days go together")
        for b in limits[a_i + 1 :]:
            if a.group == b.group and a.bases & b.bases and a.period.overlaps(b.period):
                raise RuleError(f"stay_limit {a.id} and {b.id} overlap for group {a.group}")

    registrations = []
    for i, row in enumerate(doc.get("registration", [])):
        where = f"registration[{i}] ({row.get('id')})"
        reg = RegistrationRule(
            id=row["id"],
            version=str(row["version"]),
            group=_check_group(row["group"], groups, where),
            period=_period(row, where),
            deadline_working_days=row.get("deadline_working_days"),
            exempt_days=int(row.get("exempt_days", 0)),
            deadline_calendar_day=row.get("deadline_calendar_day"),
            reregister_working_days=row.get("reregister_working_days"),
        )
        if (reg.deadline_working_days is None) == (reg.deadline_calendar_day is None):
            raise RuleError(f"{where}: exactly one of deadline_working_days and deadline_calendar_day")
        registrations.append(reg)
    for a_i, ra in enumerate(registrations):
        for rb in registrations[a_i + 1 :]:
            if ra.group == rb.group and ra.period.overlaps(rb.period):
                raise RuleError(f"registration {ra.id} and {rb.id} overlap for group {ra.group}")

    exempt = doc.get("registration_exemptions", {})
    transits = []
    for i, row in enumerate(doc.get("transit", [])):
        where = f"transit[{i}] ({row.get('id')})"
        transits.append(
            TransitRule(
                id=row["id"],
                version=str(row["version"]),
                period=_period(row, where),
                window_hours=int(row["window_hours"]),
                routes={k: frozenset(v) for k, v in row.get("routes", {}).items()},
            )
        )

    p = doc["permits"]
    permits = PermitRules(
        version=str(p["version"]),
        extend_stay=frozenset(p["extend_stay"]),
        revoke=dict(p["revoke"]),
        grace_days=int(p["grace_days"]),
        refugee_default_days=int(p["refugee_default_days"]),
    )
    it = doc["impossible_travel"]
    a = doc["address"]
    b = doc["ban"]
    alerts: dict[AlertType, AlertPolicy] = {}
    for name, row in doc.get("alerts", {}).items():
        try:
            alerts[AlertType(name)] = AlertPolicy(Severity(row["severity"]), bool(row["immediate"]))
        except ValueError as exc:
            raise RuleError(f"alerts.{name}: {exc}") from exc
    missing = set(AlertType) - set(alerts)
    if missing:
        raise RuleError(f"alerts: no policy for {sorted(missing)}")

    return RuleBook(
        version=str(meta["version"]),
        timezone=ZoneInfo(meta["timezone"]),
        groups=groups,
        stay_limits=tuple(limits),
        registrations=tuple(registrations),
        registration_exempt_bases=_bases(exempt.get("bases", []), "registration_exemptions"),
        registration_exempt_purposes=frozenset(Purpose(x) for x in exempt.get("purposes", [])),
        transits=tuple(transits),
        permits=permits,
        impossible_travel=ImpossibleTravelRule(
            it["id"],
            str(it["version"]),
            float(it["ground_kmh"]),
            float(it["air_kmh"]),
            float(it["air_overhead_minutes"]),
        ),
        address=AddressRule(
            a["id"], str(a["version"]), dict(a["threshold"]), frozenset(a.get("exempt_host_kinds", []))
        ),
        ban=BanRule(b["id"], str(b["version"]), int(b["default_ban_years"])),
        alerts=alerts,
        calendar=WorkCalendar(
            [_as_date(d, "meta.extra_days_off") for d in meta.get("extra_days_off", [])],
            [_as_date(d, "meta.extra_working_days") for d in meta.get("extra_working_days", [])],
        ),
        _group_of=group_of,
    )


@lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> RuleBook:
    with path.open("rb") as f:
        return parse_rules(tomllib.load(f))


def load_rules(path: Path | None = None) -> RuleBook:
    """Load and validate a rules file (default `rules/kz.toml`); cached until the file changes."""
    p = (path or DEFAULT_RULES).resolve()
    try:
        return _load_cached(p, p.stat().st_mtime_ns)
    except (KeyError, TypeError) as exc:
        raise RuleError(f"{p}: missing or malformed entry: {exc}") from exc
