"""Step 7 of docs/alerts.md: too many foreigners registered at one address (FICTITIOUS_ADDRESS).

Keyed by the pseudonymised address, not the traveller: the shell re-keys registrations to this key. The
same pattern as the traveller step: ordered history, an incremental walk for in-order arrivals, a replay
from the base snapshot for out-of-order ones, and a diff against what was already emitted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import msgpack

from schemas.records import Alert, AlertAction, AlertType, Registration, RegistrationAction
from shekara.pseudonym import pseudonymise
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from streams.core.context import Context, context_for
from streams.core.model import C_ANCHOR, C_ANCHOR_T, C_ID, TYPE_CODE, TYPE_NAME, Candidate, to_us
from streams.core.records import alert_record

_FORMAT = 1
_NO_CHECKPOINTS: Mapping[str, CheckpointInfo] = MappingProxyType({})
_PUNCT = re.compile(r"[\W_]+")
# compact address registration: (t, event id, action, traveller key, registration id, host kind, valid from,
# valid until, nationality)
A_T, A_ID, A_ACTION, A_WHO, A_REG, A_HOST, A_FROM, A_UNTIL, A_NAT = range(9)
REGISTERED, CANCELLED = 0, 1
# Registrations whose validity ended this many days before the address's latest event are forgotten: a new
# registration is not expected to start that far in the past.
FORGET_AFTER_DAYS = 60
# events this much older than the latest one are re-ordered exactly; older ones are rejected
REORDER_SECONDS = 7 * 24 * 3600
MAX_EVENTS = 64


def normalise_address(address: str) -> str:
    """Upper case, runs of whitespace and punctuation collapsed to one space, trimmed."""
    return _PUNCT.sub(" ", address.upper()).strip()


def address_key(region: str, address: str, key: bytes) -> str:
    """Pseudonymous key of an address: region + "|" + normalised address, keyed hash (docs/alerts.md, Step 7)."""
    return pseudonymise(f"{region}|{normalise_address(address)}", key, "address")


class _Walk:
    """Registrations in force at the address and whether a new alert may be raised."""

    __slots__ = ("active", "armed")

    def __init__(self, active: dict[str, tuple[Any, ...]] | None = None, armed: bool = True) -> None:
        self.active = active if active is not None else {}  # registration id -> compact REGISTERED event
        self.armed = armed  # False after an alert until a registration finds the count back within the limit

    def copy(self) -> _Walk:
        return _Walk(dict(self.active), self.armed)

    def pack(self) -> tuple[Any, ...]:
        return (self.active, self.armed)


@dataclass(slots=True)
class AddressState:
    address_key: str
    history: tuple[tuple[Any, ...], ...] = ()
    cursor: _Walk = field(default_factory=_Walk)
    base: _Walk | None = None
    base_key: tuple[int, str] | None = None
    emitted: dict[str, tuple[str, Candidate]] = field(default_factory=dict)

    @classmethod
    def empty(cls, address_key: str) -> AddressState:
        return cls(address_key)

    def to_bytes(self) -> bytes:
        return msgpack.packb(
            (
                _FORMAT,
                self.address_key,
                self.history,
                self.cursor.pack(),
                self.base.pack() if self.base is not None else None,
                self.base_key,
                self.emitted,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AddressState:
        fmt, key, history, cursor, base, base_key, emitted = msgpack.unpackb(data, use_list=False)
        if fmt != _FORMAT:
            raise ValueError(f"address state format {fmt} is not {_FORMAT}")
        return cls(
            key,
            history,
            _Walk(dict(cursor[0]), cursor[1]),
            _Walk(dict(base[0]), base[1]) if base is not None else None,
            base_key,
            emitted,
        )


def _compact(r: Registration, who: str) -> tuple[Any, ...]:
    return (
        to_us(r.event_time),
        r.event_id,
        REGISTERED if r.action == RegistrationAction.REGISTERED else CANCELLED,
        who,
        r.registration_id,
        r.host_kind.value,
        r.valid_from.toordinal(),
        r.valid_until.toordinal(),
        r.traveller.nationality,
    )


def _advance(ctx: Context, subject: str, walk: _Walk, events: Sequence[tuple[Any, ...]], out: list[Candidate]) -> None:
    rule = ctx.rules.address
    for e in events:
        if e[A_ACTION] == CANCELLED:
            walk.active.pop(e[A_REG], None)
            continue
        day = e[A_FROM]
        horizon = day - FORGET_AFTER_DAYS
        for rid in [rid for rid, r in walk.active.items() if r[A_UNTIL] < horizon]:
            del walk.active[rid]
        walk.active[e[A_REG]] = e
        limit = rule.threshold.get(e[A_HOST])
        if limit is None:
            continue
        valid = [r for r in walk.active.values() if r[A_FROM] <= day <= r[A_UNTIL]]
        travellers = {r[A_WHO] for r in valid}
        if len(travellers) <= limit:
            walk.armed = True
            continue
        if not walk.armed:
            continue
        walk.armed = False
        evidence = sorted((r[A_T], r[A_ID]) for r in valid)
        out.append(
            (
                TYPE_CODE[AlertType.FICTITIOUS_ADDRESS] + e[A_ID],
                TYPE_NAME[AlertType.FICTITIOUS_ADDRESS],
                e[A_T],
                e[A_ID],
                e[A_T],
                0,
                tuple(i for _, i in evidence),
                None,
                e[A_NAT],
                rule.id,
                rule.version,
                None,
                None,
                {
                    "count": len(travellers),
                    "threshold": limit,
                    "host_kind": e[A_HOST],
                    "day": day,
                    "address_key": subject,
                    "registrant": e[A_WHO],
                },
            )
        )


def address_step(
    state: AddressState,
    registrations: Sequence[Registration],
    *,
    traveller_key_of: Callable[[Registration], str],
    emitted_time: datetime,
    rules: RuleBook,
) -> tuple[AddressState, list[Alert]]:
    """Apply registrations at one address; returns the new state and the FICTITIOUS_ADDRESS records to emit.

    Registrations at exempt host kinds (hotels, station desks) are ignored. Pure: `state` is not modified.
    Registrations older than the retained history cannot be re-ordered and are ignored for this check
    (at most REORDER_SECONDS late; the traveller step still applies them).
    """
    ctx = context_for(rules, _NO_CHECKPOINTS)  # the address check measures no distances
    exempt = rules.address.exempt_host_kinds
    known = {e[A_ID] for e in state.history}
    fresh: dict[str, tuple[Any, ...]] = {}
    for r in registrations:
        if r.host_kind.value in exempt or r.event_id in known or r.event_id in fresh:
            continue
        c = _compact(r, traveller_key_of(r))
        if state.base_key is not None and (c[A_T], c[A_ID]) <= state.base_key:
            continue
        fresh[r.event_id] = c
    if not fresh:
        return state, []
    new = sorted(fresh.values())
    subject = state.address_key
    found: list[Candidate] = []
    last = (state.history[-1][A_T], state.history[-1][A_ID]) if state.history else state.base_key
    if last is None or (new[0][A_T], new[0][A_ID]) > last:
        cursor = state.cursor.copy()
        _advance(ctx, subject, cursor, new, found)
        history = (*state.history, *new)
        full = False
    else:
        history = tuple(sorted((*state.history, *new)))
        cursor = state.base.copy() if state.base is not None else _Walk()
        _advance(ctx, subject, cursor, history, found)
        full = True

    emitted = dict(state.emitted)
    alerts: list[Alert] = []
    produced = {c[C_ID]: c for c in found}
    if full:
        for aid, (action, c) in list(emitted.items()):
            in_scope = state.base_key is None or (c[C_ANCHOR_T], c[C_ANCHOR]) > state.base_key
            if in_scope and aid not in produced and action != AlertAction.RETRACTED.value:
                alerts.append(alert_record(ctx, subject_traveller(c), c, AlertAction.RETRACTED, emitted_time, subject))
                emitted[aid] = (AlertAction.RETRACTED.value, c)
    for aid, c in produced.items():
        prior = emitted.get(aid)
        if prior is None or prior[0] == AlertAction.RETRACTED.value or prior[1] != c:
            alerts.append(alert_record(ctx, subject_traveller(c), c, AlertAction.RAISED, emitted_time, subject))
            emitted[aid] = (AlertAction.RAISED.value, c)

    base, base_key = state.base, state.base_key
    if len(history) > MAX_EVENTS:
        horizon = history[-1][A_T] - REORDER_SECONDS * 1_000_000
        n = 0
        while n < len(history) and history[n][A_T] < horizon:
            n += 1
        if n:
            base = base.copy() if base is not None else _Walk()
            _advance(ctx, subject, base, history[:n], [])
            base_key = (history[n - 1][A_T], history[n - 1][A_ID])
            history = history[n:]
            emitted = {a: e for a, e in emitted.items() if (e[1][C_ANCHOR_T], e[1][C_ANCHOR]) > base_key}
    return AddressState(subject, history, cursor, base, base_key, emitted), alerts


def subject_traveller(c: Candidate) -> str:
    """The registrant whose registration tipped the address over the threshold."""
    return str(c[-1]["registrant"])
