"""`step()`: one traveller's new events (or a deadline tick) in, the alerts and stays to emit now out.

Decisions are a pure function of the ordered history and the watermark (docs/alerts.md):
- the history is kept ordered by (event time, event id), duplicates dropped;
- in-order arrivals continue the walk from the saved cursor (the fast path); an event that sorts before
  the last one known replays the retained history from the base snapshot (the cursor at the oldest retained
  point), so late data corrects earlier decisions;
- what the walk implies is diffed against what was already emitted: new alerts are RAISED (immediately or
  once the watermark reaches their due time), ended ones RESOLVED, ones late data disproved RETRACTED; closed
  stays are emitted, and re-emitted with the next revision when late data changes them; an open stay is
  emitted once it passes its last allowed day (so the warehouse sees in-country overstayers), again whenever
  it changes after that, and its close is its next revision.
History older than the reorder horizon is folded into the base snapshot, so the state stays small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import msgpack

from schemas.records import Alert, AlertAction, AlertType, Stay
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from streams.core.context import Context, context_for
from streams.core.model import (
    AlertCandidate,
    Compact,
    EmittedAlert,
    EmittedStay,
    Event,
    StayCandidate,
    StoredEvent,
    compact,
    emitted_alert,
    events_from,
    from_us,
    id_of,
    key_of,
    named,
    next_revision,
    time_of,
    to_us,
)
from streams.core.outcome import open_stay
from streams.core.records import alert_record, stay_record, void_stay_record
from streams.core.walk import Cursor, Findings, advance, open_alerts

# format 2: an emitted alert carries its last record's revision; format 1 (without it) is still read.
# format 3: format 2 and an 11th field, the link of a retired state (`successor`). Only a retired state is written
# so: every other state keeps format 2's bytes (its readers and the format-2 fixture are unchanged).
_FORMAT = 2
_LINKED = 3
_READS = (1, 2, 3)
_LINKED_HEAD = bytes((0x9B, _LINKED))  # msgpack: an array of 11, then the format
RAISED, RESOLVED, RETRACTED = AlertAction.RAISED.value, AlertAction.RESOLVED.value, AlertAction.RETRACTED.value
Key = tuple[int, str]
# The alert of a booklet, not of its holder (a crossing on a document reported lost or stolen): judged on the
# document's own key even once the person's state has moved on to a renewed document (streams.core.identity).
BOOKLET_ALERT = AlertType.LOST_STOLEN_DOCUMENT.value


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a traveller keeps for re-ordering late events.

    Events up to `reorder_seconds` older than the traveller's latest event are re-ordered exactly; an event
    older than everything retained is rejected (StepResult.rejected), never silently dropped. History is
    folded into the base snapshot when a new event comes more than the horizon after the last one, or when
    more than `max_events` are retained.
    """

    reorder_seconds: int = 7 * 24 * 3600
    max_events: int = 16


DEFAULT_RETENTION = Retention()


class Successor(NamedTuple):
    """A retired state's link to the document that replaced it (`streams.core.identity.retired`)."""

    link_id: str  # the DOCUMENT_REPLACED event's id
    new_key: str  # the new document's partition key: where the person's state lives now
    at: int  # the renewal's event time (µs)
    outbox: tuple[StoredEvent, ...] = ()  # events taken since the last forward, for the shell to pass on


def is_linked(data: bytes) -> bool:
    """Whether stored state bytes are a retired state's (format 3), without decoding them."""
    return data[:2] == _LINKED_HEAD


@dataclass(slots=True)
class TravellerState:
    """Everything the shell stores per traveller key (serialise with to_bytes / from_bytes)."""

    traveller_key: str
    history: tuple[StoredEvent, ...] = ()  # retained events, ordered (as stored: named only to walk them)
    cursor: Cursor = field(default_factory=Cursor)  # the walk after `history`
    base: Cursor | None = None  # the walk before `history` (None: history starts at the beginning)
    base_key: Key | None = None  # last event folded into `base`
    pending: dict[str, AlertCandidate] = field(default_factory=dict)  # implied alerts not yet due
    emitted: dict[str, EmittedAlert] = field(default_factory=dict)  # alert id -> (last action, as emitted)
    stays_pending: dict[str, StayCandidate] = field(default_factory=dict)  # closed stays waiting for the watermark
    stays_emitted: dict[str, EmittedStay] = field(default_factory=dict)
    successor: Successor | None = None  # set once the document is replaced and the state handed off

    @classmethod
    def empty(cls, traveller_key: str) -> TravellerState:
        return cls(traveller_key)

    @property
    def last_key(self) -> Key | None:
        return key_of(self.history[-1]) if self.history else self.base_key

    def to_bytes(self) -> bytes:
        fields = (
            _FORMAT if self.successor is None else _LINKED,
            self.traveller_key,
            self.history,
            self.cursor.pack(),
            self.base.pack() if self.base is not None else None,
            self.base_key,
            self.pending,
            self.emitted,
            self.stays_pending,
            self.stays_emitted,
        )
        return msgpack.packb(fields if self.successor is None else (*fields, tuple(self.successor)))

    @classmethod
    def from_bytes(cls, data: bytes) -> TravellerState:
        fields = msgpack.unpackb(data, use_list=False)
        fmt = fields[0]
        if fmt not in _READS:
            raise ValueError(f"traveller state format {fmt} is not one of {_READS}")
        _, key, history, cursor, base, base_key, pending, emitted, stays_pending, stays_emitted = fields[:10]
        return cls(
            key,
            history,
            Cursor.unpack(cursor),
            Cursor.unpack(base) if base is not None else None,
            base_key,
            {k: named(AlertCandidate, c) for k, c in pending.items()} if pending else {},
            {k: emitted_alert(e) for k, e in emitted.items()} if emitted else {},
            {k: named(StayCandidate, s) for k, s in stays_pending.items()} if stays_pending else {},
            {k: named(EmittedStay, e) for k, e in stays_emitted.items()} if stays_emitted else {},
            Successor(*fields[10]) if fmt == _LINKED else None,
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    state: TravellerState
    alerts: list[Alert]  # RAISED / RESOLVED / RETRACTED records to emit now
    stays: list[Stay]  # new or revised closed stays to emit now
    next_due: datetime | None  # earliest pending deadline not yet reached (for the shell's time index)
    rejected: list[tuple[Event, str]] = field(default_factory=list)  # events that could not be applied, and why


def step(
    state: TravellerState,
    events: Sequence[Event],
    *,
    watermark: datetime,
    emitted_time: datetime,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
    retention: Retention = DEFAULT_RETENTION,
    replay: bool = False,
) -> StepResult:
    """Apply `events` (any order, duplicates allowed; empty for a deadline tick) at `watermark`.

    `replay`: walk the retained history again from the base even if nothing sorts early (a state merged from two
    documents' states, `streams.core.identity.merge_states`, whose saved cursor is no walk of its history).
    Pure: the given state is not modified; use the returned one.
    """
    if state.successor is not None:
        return _retired_step(state, events, watermark, emitted_time, rules, checkpoints, retention)
    ctx = context_for(rules, checkpoints)
    key = state.traveller_key
    wm = to_us(watermark)
    if (
        not events
        and not replay
        and (not state.pending or all(c.due > wm for c in state.pending.values()))
        and (not state.stays_pending or all(s.close_t > wm for s in state.stays_pending.values()))
    ):
        return StepResult(state, [], [], earliest_due(state.pending, state.stays_pending))  # nothing due: no change
    new, rejected = _admit(state, events, rules)

    history = state.history
    base, base_key = state.base, state.base_key
    pending, emitted = state.pending, state.emitted
    stays_pending, stays_emitted = state.stays_pending, state.stays_emitted
    found = Findings()
    last = state.last_key
    full = False
    old_open: str | None = None  # the open stay the walk started from (its alerts may change)
    if not new and not replay:
        cursor = state.cursor
    elif not replay and (last is None or (new[0].t, new[0].event_id) > last):
        # fast path: continue the walk from the saved cursor
        horizon = retention.reorder_seconds * 1_000_000
        if history and new[0].t - time_of(history[-1]) > horizon:
            # a long gap: the whole retained history is past the horizon, so the cursor becomes the base
            base, base_key, history = state.cursor, last, ()
            emitted, stays_emitted = _forget(pending, emitted, stays_pending, stays_emitted, base, base_key)
        cursor = state.cursor.copy()
        old_open = cursor.open.entry.event_id if cursor.open is not None else None
        advance(ctx, key, cursor, new, found)
        history = (*history, *new)
        if found.open_touched:
            found.alerts.extend(open_alerts(ctx, cursor))
            _open_stay(ctx, cursor, found)
    else:
        # an event sorts before the last one known: replay the retained history from the base snapshot
        full = True
        walked = events_from(sorted((*history, *new)))
        history = tuple(walked)
        cursor = base.copy() if base is not None else Cursor()
        old_open = base.open.entry.event_id if base is not None and base.open is not None else None
        advance(ctx, key, cursor, walked, found)
        found.alerts.extend(open_alerts(ctx, cursor))
        _open_stay(ctx, cursor, found)

    alerts: list[Alert] = []
    stay_scope = old_open if not full and found.open_touched else None
    if found.alerts or full or stay_scope is not None or (pending and any(c.due <= wm for c in pending.values())):
        pending, emitted = _settle_alerts(
            ctx, key, found.alerts, pending, emitted, full, base_key, old_open, stay_scope, wm, emitted_time, alerts
        )
    stays: list[Stay] = []
    if found.stays or full or (stays_pending and any(s.close_t <= wm for s in stays_pending.values())):
        stays_pending, stays_emitted = _settle_stays(
            ctx, key, found.stays, stays_pending, stays_emitted, base_key if full else None, full, old_open, wm, stays
        )

    if (new or replay) and len(history) > retention.max_events:
        history, base, base_key, emitted, stays_emitted = _fold(
            ctx, key, history, base, base_key, pending, emitted, stays_pending, stays_emitted, retention
        )
    out = TravellerState(key, history, cursor, base, base_key, pending, emitted, stays_pending, stays_emitted)
    return StepResult(out, alerts, stays, earliest_due(pending, stays_pending), rejected)


def _retired_step(
    state: TravellerState,
    events: Sequence[Event],
    watermark: datetime,
    emitted_time: datetime,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
    retention: Retention,
) -> StepResult:
    """`step` on a retired state: the person's state lives under the new document's key, so the events are not
    judged here (alerts and stays would be raised twice, from two partitions) but kept and queued for the shell to
    forward there (`pass_on`). Only the booklet's own watch list is judged here (a crossing on the old passport
    reported lost or stolen: LOST_STOLEN_DOCUMENT), as before the renewal: its reports do not follow the person."""
    assert state.successor is not None
    fresh, rejected = _admit(state, events, rules)
    if not fresh:
        return StepResult(state, [], [], None, rejected)
    result = step(
        replace(state, successor=None),
        events,
        watermark=watermark,
        emitted_time=emitted_time,
        rules=rules,
        checkpoints=checkpoints,
        retention=retention,
    )
    walked = result.state
    watch = [(a, c) for a, c in walked.pending.items() if c.type == BOOKLET_ALERT]
    pending = dict(watch)
    # The walk's other findings are the person's and stay unsaid: what this side emitted before the renewal is kept
    # as it was, and the records made now are only the watch list's.
    emitted = {a: e for a, e in state.emitted.items() if e.alert.type != BOOKLET_ALERT}
    emitted.update((a, e) for a, e in walked.emitted.items() if e.alert.type == BOOKLET_ALERT)
    link = state.successor
    kept = replace(
        walked,
        pending=pending,
        emitted=emitted,
        stays_pending={},
        stays_emitted=state.stays_emitted,
        successor=link._replace(outbox=tuple(sorted((*link.outbox, *fresh), key=key_of))),
    )
    alerts = [a for a in result.alerts if a.type.value == BOOKLET_ALERT]
    return StepResult(kept, alerts, [], earliest_due(pending, {}), rejected)


def pass_on(state: TravellerState, events: Sequence[StoredEvent]) -> TravellerState:
    """A retired state with `events` kept in its history (a redelivery is then known) and queued in its outbox for
    the successor; events it already holds are left out."""
    assert state.successor is not None
    known = set(map(id_of, state.history))
    fresh = {id_of(e): e for e in events if id_of(e) not in known}
    if not fresh:
        return state
    link = state.successor
    return replace(
        state,
        history=tuple(sorted((*state.history, *fresh.values()), key=key_of)),
        successor=link._replace(outbox=tuple(sorted((*link.outbox, *fresh.values()), key=key_of))),
    )


def _open_stay(ctx: Context, cursor: Cursor, found: Findings) -> None:
    """The open stay's record as it stands (after open_alerts, whose memo holds its allowed stay)."""
    if cursor.open is not None:
        s = open_stay(ctx, cursor.open)
        if s is not None:
            found.stays.append(s)


def _admit(state: TravellerState, events: Sequence[Event], rules: RuleBook) -> tuple[list[Compact], list[Any]]:
    """New events in history order: duplicates (same event id) dropped, events older than the base rejected."""
    if not events:
        return [], []
    floor = state.base_key
    if len(events) == 1:  # the common case, without the bookkeeping for many
        ev = events[0]
        eid = ev.event_id
        for e in state.history:
            if id_of(e) == eid:
                return [], []
        c = compact(ev, rules)
        if floor is None or (c.t, c.event_id) > floor:
            return [c], []
        return [], [(ev, _too_late(ev, floor))]
    known = set(map(id_of, state.history))
    fresh: dict[str, Compact] = {}
    rejected: list[tuple[Event, str]] = []
    for ev in events:
        if ev.event_id in known or ev.event_id in fresh:
            continue
        c = compact(ev, rules)
        if floor is not None and (c.t, c.event_id) <= floor:
            rejected.append((ev, _too_late(ev, floor)))
            continue
        fresh[ev.event_id] = c
    return sorted(fresh.values()), rejected


def _settle_alerts(
    ctx: Context,
    key: str,
    found: list[AlertCandidate],
    pending: dict[str, AlertCandidate],
    emitted: dict[str, EmittedAlert],
    replay: bool,
    base_key: Key | None,
    base_open: str | None,
    stay_scope: str | None,
    wm: int,
    emitted_time: datetime,
    out: list[Alert],
) -> tuple[dict[str, AlertCandidate], dict[str, EmittedAlert]]:
    """Diff what the walk implies against what was emitted. Known alerts the walk re-derived but did not
    find are disproved: after a replay, all anchored after the base (and the base's open stay's); after a
    change to an open stay, that stay's (`stay_scope`)."""
    pending, emitted = dict(pending), dict(emitted)
    produced = {c.id: c for c in found}
    if replay or stay_scope is not None:
        known = (*pending.items(), *((a, e.alert) for a, e in emitted.items()))
        if replay:
            gone = [a for a, c in known if alert_in_scope(c, base_key, base_open)]
        else:
            gone = [a for a, c in known if c.stay == stay_scope]
        for aid in gone:
            if aid in produced:
                continue
            pending.pop(aid, None)
            prior = emitted.get(aid)
            if prior is not None and prior.action != RETRACTED:
                rev = prior.revision + 1
                out.append(alert_record(ctx, key, prior.alert, AlertAction.RETRACTED, emitted_time, revision=rev))
                emitted[aid] = named(EmittedAlert, (RETRACTED, prior.alert, rev))
    for aid, c in produced.items():
        _offer(ctx, key, aid, c, wm, pending, emitted, out, emitted_time)
    for aid, c in list(pending.items()):
        if c.due <= wm:
            _offer(ctx, key, aid, c, wm, pending, emitted, out, emitted_time)
    return pending, emitted


def _settle_stays(
    ctx: Context,
    key: str,
    found: list[StayCandidate],
    pending: dict[str, StayCandidate],
    emitted: dict[str, EmittedStay],
    base_key: Key | None,
    full: bool,
    base_open: str | None,
    wm: int,
    out: list[Stay],
) -> tuple[dict[str, StayCandidate], dict[str, EmittedStay]]:
    """Emit new and changed stays (closed, or open and overdue); after a replay, void the ones late data showed
    never existed."""
    pending, emitted = dict(pending), dict(emitted)
    made = {s.id: s for s in found}
    if full:
        known = [(sid, s.anchor_t) for sid, s in pending.items()] + [(sid, e.anchor_t) for sid, e in emitted.items()]
        for sid, anchor_t in known:
            if sid in made or not stay_in_scope(anchor_t, sid, base_key, base_open):
                continue
            pending.pop(sid, None)
            prior = emitted.get(sid)
            if prior is not None and prior.live:
                out.append(void_stay_record(ctx, key, sid, prior.revision + 1, prior))
                emitted[sid] = prior._replace(revision=prior.revision + 1, fingerprint=0, live=0)
    for sid, s in made.items():
        _offer_stay(key, sid, s, wm, pending, emitted, out)
    for sid, s in list(pending.items()):
        if s.close_t <= wm:
            _offer_stay(key, sid, s, wm, pending, emitted, out)
    return pending, emitted


def _too_late(ev: Event, floor: Key) -> str:
    return (
        f"event_time {ev.event_time.isoformat()} is older than the traveller's retained history "
        f"(folded up to {from_us(floor[0]).isoformat()}): a duplicate or too late to re-order"
    )


def earliest_due(pending: dict[str, AlertCandidate], stays_pending: dict[str, StayCandidate]) -> datetime | None:
    """When the state next needs a step: the earliest due alert or stay close, if any."""
    if not pending and not stays_pending:
        return None
    due = [c.due for c in pending.values()] + [s.close_t for s in stays_pending.values()]
    return from_us(min(due))


def _offer(
    ctx: Context,
    key: str,
    aid: str,
    c: AlertCandidate,
    wm: int,
    pending: dict[str, AlertCandidate],
    emitted: dict[str, EmittedAlert],
    out: list[Alert],
    emitted_time: datetime,
) -> None:
    """Emit what `c` calls for given what was emitted before; otherwise keep it pending until due."""
    due_now = ctx.immediate[c.type] or c.due <= wm
    prior = emitted.get(aid)
    rev = next_revision(prior)
    if prior is None or prior.action == RETRACTED:
        if not due_now:
            pending[aid] = c
            return
        pending.pop(aid, None)
        out.append(alert_record(ctx, key, c, AlertAction.RAISED, emitted_time, revision=rev))
        action = RAISED
        if c.resolved:
            rev += 1
            out.append(alert_record(ctx, key, c, AlertAction.RESOLVED, emitted_time, revision=rev))
            action = RESOLVED
        emitted[aid] = named(EmittedAlert, (action, c, rev))
        return
    last_action, old = prior.action, prior.alert
    if old.due != c.due and not due_now:
        # late data moved the deadline past the watermark: not due after all, until the new due time
        out.append(alert_record(ctx, key, old, AlertAction.RETRACTED, emitted_time, revision=rev))
        emitted[aid] = named(EmittedAlert, (RETRACTED, old, rev))
        pending[aid] = c
        return
    pending.pop(aid, None)
    want = RESOLVED if c.resolved else RAISED
    if want != last_action or c != old:
        out.append(alert_record(ctx, key, c, AlertAction(want), emitted_time, revision=rev))
        emitted[aid] = named(EmittedAlert, (want, c, rev))


def _offer_stay(
    key: str,
    sid: str,
    s: StayCandidate,
    wm: int,
    pending: dict[str, StayCandidate],
    emitted: dict[str, EmittedStay],
    out: list[Stay],
) -> None:
    prior = emitted.get(sid)
    # a stay already in the warehouse (an open stay, overdue) is revised at once when it changes (an extension
    # moved its last allowed day, a new entry superseded it): its old revision must not go on counting as an
    # overstay while the IN_COUNTRY_OVERSTAY alert it agrees with is already resolved
    if s.gated and s.close_t > wm and (prior is None or not prior.live):
        pending[sid] = s
        return
    pending.pop(sid, None)
    fp = _fingerprint(s)
    if prior is None or not prior.live or prior.fingerprint != fp:
        rev = 0 if prior is None else prior.revision + 1
        out.append(stay_record(key, s, rev))
        emitted[sid] = EmittedStay(rev, fp, 1, s.anchor_t, s.nationality, s.basis, s.purpose)


def _fingerprint(s: StayCandidate) -> int:
    """A stable 64-bit digest of a stay's fields (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(msgpack.packb(s), digest_size=8).digest(), "big")


def alert_in_scope(c: AlertCandidate, base_key: Key | None, base_open: str | None) -> bool:
    """Could a replay from the base re-derive this alert? (Otherwise it is final and must be kept.)"""
    return base_key is None or (c.anchor_t, c.anchor) > base_key or (base_open is not None and c.stay == base_open)


def stay_in_scope(anchor_t: int, anchor: str, base_key: Key | None, base_open: str | None) -> bool:
    """Could a replay from the base re-derive this stay? (`alert_in_scope` for stays.)"""
    return base_key is None or (anchor_t, anchor) > base_key or anchor == base_open


def _forget(
    pending: dict[str, AlertCandidate],
    emitted: dict[str, EmittedAlert],
    stays_pending: dict[str, StayCandidate],
    stays_emitted: dict[str, EmittedStay],
    base: Cursor,
    base_key: Key | None,
) -> tuple[dict[str, EmittedAlert], dict[str, EmittedStay]]:
    """Drop what was emitted for events no replay can reach any more - unless a revision of it is still
    pending (it needs the last one emitted: its action, its revision number)."""
    base_open = base.open.entry.event_id if base.open is not None else None
    kept = {a: e for a, e in emitted.items() if a in pending or alert_in_scope(e.alert, base_key, base_open)}
    kept_stays = {
        i: e
        for i, e in stays_emitted.items()
        if i in stays_pending or stay_in_scope(e.anchor_t, i, base_key, base_open)
    }
    return kept, kept_stays


def _fold(
    ctx: Context,
    key: str,
    history: tuple[StoredEvent, ...],
    base: Cursor | None,
    base_key: Key | None,
    pending: dict[str, AlertCandidate],
    emitted: dict[str, EmittedAlert],
    stays_pending: dict[str, StayCandidate],
    stays_emitted: dict[str, EmittedStay],
    retention: Retention,
) -> tuple[tuple[StoredEvent, ...], Cursor | None, Key | None, dict[str, EmittedAlert], dict[str, EmittedStay]]:
    """Move the base forward over events older than the reorder horizon (a silent re-walk of those events)."""
    horizon = time_of(history[-1]) - retention.reorder_seconds * 1_000_000
    n = 0
    while n < len(history) and time_of(history[n]) < horizon:
        n += 1
    if n == 0:
        return history, base, base_key, emitted, stays_emitted
    folded = base.copy() if base is not None else Cursor()
    advance(ctx, key, folded, events_from(history[:n]), Findings())
    new_key = key_of(history[n - 1])
    emitted, stays_emitted = _forget(pending, emitted, stays_pending, stays_emitted, folded, new_key)
    return history[n:], folded, new_key, emitted, stays_emitted
