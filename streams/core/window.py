"""Step 4 of docs/alerts.md: the rolling window ("90 days in any 180"), over local-day ordinals.

Days present are kept as counted intervals (first, last, anchor of the stay) of the traveller's earlier
windowed stays; the current stay adds its own days minus those covered by a permit. Most stays cannot breach
(an upper bound on the days present is within the limit), so the day-by-day count only runs for the few
travellers who come close: visa runners.

A breach is one continuing violation for as long as the count stays above the limit (an episode): a stay that
begins inside an episode an earlier stay was already part of raises no new alert (`continues_episode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Interval(NamedTuple):
    """Days present during one stay that count towards its rolling window (stored in the cursor)."""

    first: int  # day ordinal, inclusive
    last: int  # day ordinal, inclusive
    anchor: str  # entry event id of the stay


class Breach(NamedTuple):
    """The first day a rolling window is exceeded."""

    day: int
    days_present: int  # in the window ending that day
    anchors: list[str]  # entry event ids of the stays that contributed days


def counted_segments(first: int, last: int, covered: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Days [first, last] minus the days covered by permits, as maximal runs."""
    if not covered:
        return [(first, last)] if first <= last else []
    out: list[tuple[int, int]] = []
    start = first
    for a, b in sorted(covered):
        if b < start or a > last:
            continue
        if a > start:
            out.append((start, a - 1))
        start = max(start, b + 1)
    if start <= last:
        out.append((start, last))
    return out


def first_breach(
    *,
    window_days: int,
    limit_days: int,
    first: int,
    last_present: int,
    last_allowed: int,
    covered: Sequence[tuple[int, int]],
    past: Sequence[Interval],
    anchor: str,
) -> Breach | None:
    """The first day D of this stay (D <= L) with more than `limit_days` present in [D - W + 1, D], or None."""
    top = min(last_present, last_allowed)
    if top < first:
        return None
    lo = first - window_days + 1
    past_days = 0
    for a, b, _ in past:  # a plain loop: this bound is computed for every stay of a frequent traveller
        if b >= lo and a <= top:
            past_days += (b if b < top else top) - (a if a > lo else lo) + 1
    if past_days + (top - first + 1) <= limit_days:
        return None  # cannot exceed the limit even if every day counted
    present = bytearray(top - lo + 1)
    for a, b, _ in past:
        for d in range(max(a, lo), min(b, top) + 1):
            present[d - lo] = 1
    for a, b in counted_segments(first, top, covered):
        for d in range(a, b + 1):
            present[d - lo] = 1
    count = sum(present[: window_days - 1])  # days lo .. first - 1
    for day in range(first, top + 1):
        count += present[day - lo]
        leaving = day - window_days
        if leaving >= lo:
            count -= present[leaving - lo]
        if count > limit_days:
            start = day - window_days + 1
            anchors: list[str] = []
            for a, b, who in past:
                if a <= day and b >= start and who not in anchors:
                    anchors.append(who)
            if anchor not in anchors:
                anchors.append(anchor)
            return Breach(day, count, anchors)
    return None


def _count_past(window_days: int, day: int, past: Sequence[Interval]) -> int:
    """Distinct days of `past` in [day - W + 1, day] (a same-day exit and re-entry share a day)."""
    lo = day - window_days + 1
    days: set[int] = set()
    for a, b, _ in past:
        if b >= lo and a <= day:
            days.update(range(max(a, lo), min(b, day) + 1))
    return len(days)


def continues_episode(*, window_days: int, limit_days: int, first: int, past: Sequence[Interval]) -> bool:
    """Whether a stay entered on day `first` begins inside a breach episode an earlier stay was part of.

    An episode is a run of consecutive days on each of which the count exceeds the limit. Away from the country
    the count can only fall (days leave the window, none join), so the run reaches back to the last day present
    before `first` exactly when the day before `first` is over the limit; or an earlier stay was present on
    `first` itself (left and came back that day) with that day over the limit."""
    if _count_past(window_days, first - 1, past) > limit_days:
        return True
    same_day = any(a <= first <= b for a, b, _ in past)
    return same_day and _count_past(window_days, first, past) > limit_days
