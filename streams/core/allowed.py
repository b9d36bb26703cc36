"""Step 3 of docs/alerts.md: the last allowed day L of one stay, under the law in force at entry.

L starts from the stay-limit row (per-entry days, the visa expiry, or the permit), then moves with the
status changes that belong to the stay, in history order: visa extensions, permits that extend the stay,
and revocations that cut those extensions short (never before the original L).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import EntryBasisKind, StatusChangeKind
from shekara.rules import StayLimit
from streams.core.context import Context
from streams.core.model import OpenStay, StatusEvent

_VISA = EntryBasisKind.VISA.value
_VISA_EXTENDED = StatusChangeKind.VISA_EXTENDED.value
_REFUGEE_GRANTED = StatusChangeKind.REFUGEE_GRANTED.value
_WORK_PERMIT_ISSUED = StatusChangeKind.WORK_PERMIT_ISSUED.value
NO_RULE = "none"  # rule id reported when no stay-limit row covers a case


@dataclass(frozen=True, slots=True)
class Allowed:
    row: StayLimit | None
    last_day: int | None  # L as a day ordinal; None = no limit applies
    covered: tuple[tuple[int, int], ...]  # local days covered by permit extensions (first, last), inclusive

    @property
    def rule_id(self) -> str:
        return self.row.id if self.row is not None else NO_RULE

    def rule_version(self, rules_version: str) -> str:
        return self.row.version if self.row is not None else rules_version


def _extension_end(ctx: Context, s: StatusEvent) -> int | None:
    until = s.valid_until
    if until is not None:
        return int(until)
    if s.change == _REFUGEE_GRANTED:
        start = s.valid_from if s.valid_from is not None else s.day
        return int(start) + ctx.refugee_default_days - 1
    return None  # a permit with no end date extends nothing


def _start(s: StatusEvent, first: int) -> int:
    """First day a permit covers: its valid_from (its event's day when absent), never before the entry day."""
    return max(first, int(s.valid_from if s.valid_from is not None else s.day))


def allowed_stay(ctx: Context, stay: OpenStay, close_t: int | None) -> Allowed:
    """L for `stay`, counting the status changes that happened before `close_t` (None: still open)."""
    row = ctx.rows.get(stay.row_id) if stay.row_id is not None else None
    if row is None or row.unlimited:
        return Allowed(row, None, ())
    entry = stay.entry
    first = entry.day
    # permit extensions, as parallel lists: the kind that granted it, first covered day, last day
    kinds: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    if row.per_entry_from == "visa_expiry":
        visa = entry.visa_expiry
        if visa is None and row.per_entry_days is None:
            return Allowed(row, None, ())  # validation requires a visa expiry; without one there is nothing to judge
        original: int = visa if visa is not None else first + (row.per_entry_days or 1) - 1
    else:
        original = first + (row.per_entry_days or 1) - 1
        if row.per_entry_from == "permit_end" and stay.permit is not None:
            end = _extension_end(ctx, stay.permit)
            if end is not None:
                kinds.append(_WORK_PERMIT_ISSUED)
                starts.append(_start(stay.permit, first))
                ends.append(end)
    last = max(original, *ends) if ends else original
    basis = entry.basis
    for s in stay.statuses:
        if close_t is not None and s.t >= close_t:
            break
        kind = s.change
        if kind == _VISA_EXTENDED:
            if basis == _VISA and s.valid_until is not None and s.t <= ctx.day_start_us(last + 1):
                original = int(s.valid_until)
                last = max(original, *ends) if ends else original
        elif kind in ctx.extend_kinds:
            if s.t <= ctx.day_start_us(last + 1):
                end = _extension_end(ctx, s)
                if end is not None:
                    kinds.append(kind)
                    starts.append(_start(s, first))
                    ends.append(end)
                    last = max(last, end)
        elif kind in ctx.revoke:
            target, cut = ctx.revoke[kind], int(s.day) + ctx.grace_days
            for i, k in enumerate(kinds):
                if k == target and ends[i] > cut:
                    ends[i] = cut
            last = max(original, *ends) if ends else original
    covered = tuple((a, b) for a, b in zip(starts, ends, strict=True) if b >= a)
    return Allowed(row, last, covered)
