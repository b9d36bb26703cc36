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
from typing import Any, NamedTuple

import msgpack

from schemas.records import Alert, AlertAction, AlertType, Registration, RegistrationAction
from shekara.pseudonym import pseudonymise
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from streams.core.context import Context, context_for
from streams.core.model import (
    TYPE_CODE,
    TYPE_NAME,
    AlertCandidate,
    EmittedAlert,
    emitted_alert,
    named,
    next_revision,
    to_us,
)
from streams.core.records import alert_record

# format 2: an emitted alert carries its last record's revision; format 1 (without it) is still read
_FORMAT = 2
_READS = (1, 2)
_NO_CHECKPOINTS: Mapping[str, CheckpointInfo] = MappingProxyType({})
_PUNCT = re.compile(r"[\W_]+")
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


class AddressRegistration(NamedTuple):
    """A registration (or its cancellation) at the address, as the check needs it."""

    t: int  # event time, microseconds since the epoch
    event_id: str
    action: int  # REGISTERED or CANCELLED
    traveller: str  # traveller key of the registrant
    registration_id: str
    host_kind: str  # HostKind value
    valid_from: int  # day ordinal
    valid_until: int  # day ordinal
    nationality: str


class _Walk:
    """Registrations in force at the address and whether a new alert may be raised."""

    __slots__ = ("active", "armed")

    def __init__(self, active: dict[str, AddressRegistration] | None = None, armed: bool = True) -> None:
        self.active = active if active is not None else {}  # registration id -> compact REGISTERED event
        self.armed = armed  # False after an alert until a registration finds the count back within the limit

    def copy(self) -> _Walk:
        return _Walk(dict(self.active), self.armed)

    def pack(self) -> tuple[Any, ...]:
        return (self.active, self.armed)

    @classmethod
    def unpack(cls, data: tuple[Any, ...]) -> _Walk:
        active, armed = data
        return cls({k: named(AddressRegistration, r) for k, r in active.items()}, armed)


@dataclass(slots=True)
class AddressState:
    address_key: str
    history: tuple[AddressRegistration, ...] = ()
    cursor: _Walk = field(default_factory=_Walk)
    base: _Walk | None = None
    base_key: tuple[int, str] | None = None
    emitted: dict[str, EmittedAlert] = field(default_factory=dict)

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
        if fmt not in _READS:
            raise ValueError(f"address state format {fmt} is not one of {_READS}")
        return cls(
            key,
            tuple([named(AddressRegistration, e) for e in history]),
            _Walk.unpack(cursor),
            _Walk.unpack(base) if base is not None else None,
            base_key,
            {k: emitted_alert(e) for k, e in emitted.items()},
        )


def _compact(r: Registration, who: str) -> AddressRegistration:
    return AddressRegistration(
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


def _advance(
    ctx: Context, subject: str, walk: _Walk, events: Sequence[AddressRegistration], out: list[AlertCandidate]
) -> None:
    """Walk registrations in history order: an alert when the distinct registrants valid on a registration's
    first day go over the host kind's threshold, then none until the count is back within it."""
    rule = ctx.rules.address
    for e in events:
        if e.action == CANCELLED:
            walk.active.pop(e.registration_id, None)
            continue
        day = e.valid_from
        horizon = day - FORGET_AFTER_DAYS
        for rid in [rid for rid, r in walk.active.items() if r.valid_until < horizon]:
            del walk.active[rid]
        walk.active[e.registration_id] = e
        limit = rule.threshold.get(e.host_kind)
        if limit is None:
            continue
        valid = [r for r in walk.active.values() if r.valid_from <= day <= r.valid_until]
        travellers = {r.traveller for r in valid}
        if len(travellers) <= limit:
            walk.armed = True
            continue
        if not walk.armed:
            continue
        walk.armed = False
        evidence = sorted((r.t, r.event_id) for r in valid)
        out.append(
            AlertCandidate(
                id=TYPE_CODE[AlertType.FICTITIOUS_ADDRESS] + e.event_id,
                type=TYPE_NAME[AlertType.FICTITIOUS_ADDRESS],
                anchor_t=e.t,
                anchor=e.event_id,
                due=e.t,
                resolved=0,
                evidence=tuple(i for _, i in evidence),
                checkpoint=None,
                nationality=e.nationality,
                rule_id=rule.id,
                rule_version=rule.version,
                days_overstayed=None,
                stay=None,
                params={
                    "count": len(travellers),
                    "threshold": limit,
                    "host_kind": e.host_kind,
                    "day": day,
                    "address_key": subject,
                    "registrant": e.traveller,
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
    new = _admit(state, registrations, traveller_key_of, rules.address.exempt_host_kinds)
    if not new:
        return state, []
    subject = state.address_key
    found: list[AlertCandidate] = []
    last = (state.history[-1].t, state.history[-1].event_id) if state.history else state.base_key
    if last is None or (new[0].t, new[0].event_id) > last:
        cursor = state.cursor.copy()
        _advance(ctx, subject, cursor, new, found)
        history = (*state.history, *new)
        full = False
    else:  # a registration sorts before the last one known: replay from the base
        history = tuple(sorted((*state.history, *new)))
        cursor = state.base.copy() if state.base is not None else _Walk()
        _advance(ctx, subject, cursor, history, found)
        full = True
    alerts: list[Alert] = []
    emitted = _settle(ctx, subject, found, state.emitted, full, state.base_key, emitted_time, alerts)
    out = AddressState(subject, history, cursor, state.base, state.base_key, emitted)
    return _fold(ctx, out) if len(history) > MAX_EVENTS else out, alerts


def _admit(
    state: AddressState,
    registrations: Sequence[Registration],
    traveller_key_of: Callable[[Registration], str],
    exempt: frozenset[str],
) -> list[AddressRegistration]:
    """New registrations in history order: exempt hosts, duplicates and ones older than the base left out."""
    known = {e.event_id for e in state.history}
    fresh: dict[str, AddressRegistration] = {}
    for r in registrations:
        if r.host_kind.value in exempt or r.event_id in known or r.event_id in fresh:
            continue
        c = _compact(r, traveller_key_of(r))
        if state.base_key is not None and (c.t, c.event_id) <= state.base_key:
            continue
        fresh[r.event_id] = c
    return sorted(fresh.values())


def _settle(
    ctx: Context,
    subject: str,
    found: list[AlertCandidate],
    emitted: dict[str, EmittedAlert],
    replay: bool,
    base_key: tuple[int, str] | None,
    emitted_time: datetime,
    out: list[Alert],
) -> dict[str, EmittedAlert]:
    """RAISE new or changed alerts; after a replay from the base, RETRACT the ones anchored after it that the
    replay did not find again."""
    emitted = dict(emitted)
    produced = {c.id: c for c in found}
    if replay:
        for aid, (action, c, rev) in list(emitted.items()):
            in_scope = base_key is None or (c.anchor_t, c.anchor) > base_key
            if in_scope and aid not in produced and action != AlertAction.RETRACTED.value:
                record = alert_record(
                    ctx, subject_traveller(c), c, AlertAction.RETRACTED, emitted_time, subject, revision=rev + 1
                )
                out.append(record)
                emitted[aid] = EmittedAlert(AlertAction.RETRACTED.value, c, rev + 1)
    for aid, c in produced.items():
        prior = emitted.get(aid)
        if prior is None or prior.action == AlertAction.RETRACTED.value or prior.alert != c:
            rev = next_revision(prior)
            out.append(
                alert_record(ctx, subject_traveller(c), c, AlertAction.RAISED, emitted_time, subject, revision=rev)
            )
            emitted[aid] = EmittedAlert(AlertAction.RAISED.value, c, rev)
    return emitted


def _fold(ctx: Context, state: AddressState) -> AddressState:
    """Move the base over registrations older than the reorder horizon; forget alerts anchored before it."""
    history = state.history
    horizon = history[-1].t - REORDER_SECONDS * 1_000_000
    n = 0
    while n < len(history) and history[n].t < horizon:
        n += 1
    if not n:
        return state
    base = state.base.copy() if state.base is not None else _Walk()
    _advance(ctx, state.address_key, base, history[:n], [])
    base_key = (history[n - 1].t, history[n - 1].event_id)
    emitted = {a: e for a, e in state.emitted.items() if (e.alert.anchor_t, e.alert.anchor) > base_key}
    return AddressState(state.address_key, history[n:], state.cursor, base, base_key, emitted)


def subject_traveller(c: AlertCandidate) -> str:
    """The registrant whose registration tipped the address over the threshold."""
    return str(c.params["registrant"])
