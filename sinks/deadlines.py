"""Registration filing deadlines as a table, from the rules file: the data behind registration compliance.

The sink's SQL looks a registration's deadline up by (nationality group, arrival day) instead of encoding
the rule: a decree changes `rules/kz.toml`, the sink reloads this table, and no SQL changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from shekara.rules import GENERAL, RegistrationRule, RuleBook


@dataclass(frozen=True, slots=True)
class DeadlineRow:
    nationality_group: str
    arrival: date
    deadline: date | None  # None: no registration rule covers this arrival
    rule_id: str


def registration_rule(rules: RuleBook, group: str, arrival: date) -> RegistrationRule | None:
    """The rule for an arrival of this nationality group: the group's own row first, then the general one."""
    rows = [r for r in rules.registrations if r.period.covers(arrival)]
    for wanted in (group, GENERAL) if group != GENERAL else (GENERAL,):
        for row in rows:
            if row.group == wanted:
                return row
    return None


def registration_deadline(rules: RuleBook, rule: RegistrationRule, arrival: date) -> date:
    """Last day to register for an arrival on `arrival` (the day of arrival is day 1 of the stay).

    A calendar-day rule ("by day 30") counts from the arrival day; a working-day rule counts working days
    after the arrival, or after the last exempt day when the rule has an exemption period (EAEU: 30 days).
    """
    if rule.deadline_calendar_day is not None:
        return arrival + timedelta(days=rule.deadline_calendar_day - 1)
    if rule.deadline_working_days is None:
        raise ValueError(f"registration rule {rule.id} has neither a calendar-day nor a working-day deadline")
    start = arrival + timedelta(days=rule.exempt_days - 1) if rule.exempt_days else arrival
    return rules.calendar.nth_working_day_after(start, rule.deadline_working_days)


def nationality_groups(rules: RuleBook) -> list[tuple[str, str]]:
    """(nationality, group) for every nationality the rules name, one group each; the rest are GENERAL."""
    named = {nat for members in rules.groups.values() for nat in members}
    return sorted((nat, rules.group_of(nat)) for nat in named)


def deadline_rows(rules: RuleBook, first: date, last: date) -> Iterator[DeadlineRow]:
    """A row per nationality group and arrival day in [first, last]."""
    groups = sorted({GENERAL, *rules.groups})
    day = first
    while day <= last:
        for group in groups:
            rule = registration_rule(rules, group, day)
            if rule is None:
                yield DeadlineRow(group, day, None, "")
            else:
                yield DeadlineRow(group, day, registration_deadline(rules, rule, day), rule.id)
        day += timedelta(days=1)
