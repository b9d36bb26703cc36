"""Memoised rule lookups for one (rules, checkpoints) pair.

The rule book's lookups are cheap but not free (a stay-limit scan, a working-day walk over the holiday
calendar, a haversine), and the processors ask the same questions for every traveller. The answers depend
only on the rules file and the catalogue, so they are cached here, per rules object.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple

from schemas.records import AlertType, CheckpointKind, EntryBasisKind, Purpose
from shekara.reference import CheckpointInfo, distance_km
from shekara.rules import RegistrationRule, RuleBook, RuleError, StayLimit, TransitRule
from streams.core.model import HOUR_US, to_us

_MAX_CONTEXTS = 16  # a few rule books (tests, a reload) - never one per call


class ImpossibleTravel(NamedTuple):
    """Why going from one checkpoint to another in the time elapsed is impossible."""

    km: float
    hours: float
    limit_kmh: float
    air: bool  # either end is an airport: the air speed limit applied


class Context:
    """The rule answers the core needs, memoised. Only ever built through `context_for`."""

    def __init__(self, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> None:
        self.rules = rules
        self.checkpoints = checkpoints
        self.version = rules.version
        self.rows: dict[str, StayLimit] = {r.id: r for r in rules.stay_limits}
        self.max_window_days = max((r.window_days or 0 for r in rules.stay_limits), default=0)
        self.immediate = {t.value: rules.policy(t).immediate for t in AlertType}
        self.severity = {t.value: rules.policy(t).severity for t in AlertType}
        p = rules.permits
        self.extend_kinds = frozenset(p.extend_stay)
        self.revoke = dict(p.revoke)
        self.grace_days = p.grace_days
        self.refugee_default_days = p.refugee_default_days
        it = rules.impossible_travel
        self.ground_kmh = it.ground_kmh
        self.air_kmh = it.air_kmh
        self.air_overhead_us = int(it.air_overhead_minutes * 60_000_000)
        self._limits: dict[tuple[str, str, int], StayLimit | None] = {}
        self._registration: dict[tuple[str, str, str, int], tuple[RegistrationRule, int] | None] = {}
        self._working: dict[tuple[int, int], int] = {}
        self._day_start: dict[int, int] = {}
        self._transit: dict[int, TransitRule | None] = {}
        self._distance: dict[tuple[str, str], tuple[float, bool] | None] = {}

    # --- time -------------------------------------------------------------------------------------
    def day_start_us(self, day: int) -> int:
        """Microseconds at which local day `day` (ordinal) begins in Asia/Almaty."""
        us = self._day_start.get(day)
        if us is None:
            us = self._day_start[day] = to_us(self.rules.day_start(date.fromordinal(day)))
        return us

    def nth_working_day_after(self, day: int, n: int) -> int:
        key = (day, n)
        d = self._working.get(key)
        if d is None:
            d = self._working[key] = self.rules.calendar.nth_working_day_after(date.fromordinal(day), n).toordinal()
        return d

    # --- rules --------------------------------------------------------------------------------------
    def stay_limit(self, nationality: str, basis: str, day: int) -> StayLimit | None:
        """The stay-limit row in force on `day`, or None when no row covers the case (reported as rule "none")."""
        key = (nationality, basis, day)
        if key in self._limits:
            return self._limits[key]
        try:
            row: StayLimit | None = self.rules.stay_limit(nationality, EntryBasisKind(basis), date.fromordinal(day))
        except RuleError:
            row = None
        self._limits[key] = row
        return row

    def registration(self, nationality: str, basis: str, purpose: str, day: int) -> tuple[RegistrationRule, int] | None:
        """(rule, deadline day R) for an arrival on local day `day`, or None when exempt."""
        key = (nationality, basis, purpose, day)
        if key in self._registration:
            return self._registration[key]
        rule = self.rules.registration_rule(nationality, EntryBasisKind(basis), Purpose(purpose), date.fromordinal(day))
        out: tuple[RegistrationRule, int] | None = None
        if rule is not None:
            if rule.deadline_calendar_day is not None:
                out = (rule, day + rule.deadline_calendar_day - 1)
            elif rule.deadline_working_days is not None:
                start = day + rule.exempt_days - 1 if rule.exempt_days > 0 else day
                out = (rule, self.nth_working_day_after(start, rule.deadline_working_days))
        self._registration[key] = out
        return out

    def transit(self, day: int) -> TransitRule | None:
        if day not in self._transit:
            self._transit[day] = self.rules.transit_rule(date.fromordinal(day))
        return self._transit[day]

    # --- geometry -----------------------------------------------------------------------------------
    def route(self, a: str, b: str) -> tuple[float, bool] | None:
        """(distance km, either end is an airport) between two checkpoints; None if one is not catalogued."""
        key = (a, b)
        if key in self._distance:
            return self._distance[key]
        ca, cb = self.checkpoints.get(a), self.checkpoints.get(b)
        out = None
        if ca is not None and cb is not None:
            out = (distance_km(ca, cb), CheckpointKind.AIR in (ca.kind, cb.kind))
        self._distance[key] = out
        return out

    def impossible(self, a: str, b: str, elapsed_us: int) -> ImpossibleTravel | None:
        """Why going from checkpoint a to b in `elapsed_us` is impossible, or None when it is possible."""
        r = self.route(a, b)
        if r is None:
            return None
        km, air = r
        if air:
            hours = (elapsed_us - self.air_overhead_us) / HOUR_US
            limit = self.air_kmh
            if hours <= 0 or km / hours > limit:
                return ImpossibleTravel(km, elapsed_us / HOUR_US, limit, True)
            return None
        hours = elapsed_us / HOUR_US
        limit = self.ground_kmh
        if km > 0 and (hours <= 0 or km / hours > limit):
            return ImpossibleTravel(km, hours, limit, False)
        return None


_CONTEXTS: dict[tuple[int, int], tuple[Any, Any, Context]] = {}


def context_for(rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo]) -> Context:
    """The memo for this rule book and catalogue (kept alive with them, so an id is never reused)."""
    key = (id(rules), id(checkpoints))
    hit = _CONTEXTS.get(key)
    if hit is not None and hit[0] is rules and hit[1] is checkpoints:
        return hit[2]
    if len(_CONTEXTS) >= _MAX_CONTEXTS:
        _CONTEXTS.clear()
    ctx = Context(rules, checkpoints)
    _CONTEXTS[key] = (rules, checkpoints, ctx)
    return ctx
