"""Identity continuity across a renewed document (DOCUMENT_REPLACED; docs/alerts.md, "Renewed documents").

A traveller's state is kept under the partition key of the document presented, and a renewed passport hashes to
another key. A DOCUMENT_REPLACED status change from the passport authority (keyed by the OLD document, schema v3)
names the new document. The link logic, pure:

* `link_of(change)`: the link old document -> new document a status change makes, if any.
* `LinkBook`: the links known; `canonical(key)` follows renewals back to the person's first document
  (A -> B -> C: C's canonical key is A's), and `add` refuses a link that would give a document two pasts or close
  a loop (one line saying which).
* `continued_history(old_events, new_events, link)`: one person's history as the new document's traveller goes on
  with it: the old document's events re-addressed to the new document and merged with the new one's, so
  `streams.core.step` counts the 90/180 days and matches a stay opened on the old document across the renewal.
  The old document's own watch-list changes (lost, stolen, recovered) stay behind: they concern that booklet,
  not the person, and a crossing on the new passport is not one on a lost passport.
* `merge_states(old, new)`: the old document's stored state, handed off after the renewal, merged with the new
  document's (if any), to be walked again with `step(..., replay=True)`; `hand_over(old, new, ...)`: what the
  processors do across partitions (`streams.handoff`), that merge and walk with the new document's own records
  moved to the person's key; `retired(old, link)`: the old document's state once handed off (it owes no deadline
  and keeps the link).
* After the handoff, an event of the old document (a late upload of an earlier crossing) reaches the retired state:
  `step` does not judge it there but keeps it in the state's outbox (`streams.core.traveller.pass_on`);
  `outgoing(retired)` takes it out for the shell to forward to the new key, where `take_late` merges it into the
  person's state and walks it again, as if it had been handed off with the rest. Along a chain (A -> B -> C) a
  retired B passes on what reaches it the same way. The old booklet's watch list (LOST_STOLEN_DOCUMENT) is still
  judged on the old key: it is the booklet's, not the person's, and does not move with the merge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from schemas.records import Alert, AlertAction, Document, StatusChange, StatusChangeKind, Stay
from shekara.pseudonym import partition_key
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from streams.core.context import context_for
from streams.core.model import STATUS, Event, StoredEvent, id_of, key_of, to_us
from streams.core.records import alert_record, void_stay_record
from streams.core.traveller import (
    BOOKLET_ALERT,
    RETRACTED,
    Key,
    StepResult,
    Successor,
    TravellerState,
    alert_in_scope,
    earliest_due,
    stay_in_scope,
    step,
)
from streams.core.walk import Cursor

# Changes that concern one booklet, not its holder: they do not follow the person to a new document.
DOCUMENT_SCOPED = frozenset(
    {StatusChangeKind.DOCUMENT_LOST, StatusChangeKind.DOCUMENT_STOLEN, StatusChangeKind.DOCUMENT_RECOVERED}
)
_SCOPED_VALUES = frozenset(k.value for k in DOCUMENT_SCOPED)  # as a stored StatusEvent names its change


@dataclass(frozen=True, slots=True)
class Link:
    """The old document (its partition key) was replaced by the new one, by the status change `event_id`."""

    old_key: str
    new_key: str
    new_document: Document
    event_id: str
    at: datetime


def link_of(change: StatusChange) -> Link | None:
    """The link a DOCUMENT_REPLACED status change makes (None for other kinds or without a new document)."""
    if change.kind != StatusChangeKind.DOCUMENT_REPLACED:
        return None
    number, country = change.new_document_number, change.new_document_issuing_country
    if number is None or country is None:
        return None  # validation refuses it; nothing to link
    old = change.traveller.document
    new = Document(old.type, number, country)  # a renewal is a document of the same type
    return Link(
        partition_key(old.issuing_country, old.number),
        partition_key(country, number),
        new,
        change.event_id,
        change.event_time,
    )


@dataclass(frozen=True)
class LinkBook:
    """Known renewals: each new document's key -> the key of the document it replaced (its one past)."""

    previous: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def canonical(self, key: str) -> str:
        """The key of the person's first known document: `key` followed back through its renewals."""
        seen = {key}
        while (before := self.previous.get(key)) is not None and before not in seen:  # `add` keeps it loop-free
            seen.add(before)
            key = before
        return key

    def problem(self, link: Link) -> str | None:
        """Why `link` cannot be added (a second past for the new document, or a loop), or None."""
        if link.old_key == link.new_key:
            return "a document cannot replace itself"
        known = self.previous.get(link.new_key)
        if known is not None and known != link.old_key:
            return "the new document already replaces another document (a second renewal into it is refused)"
        # A document with no past that is an ancestor of the old one is the old one's first document.
        if self.canonical(link.old_key) == link.new_key:
            return "the new document is an earlier document of the same person (the link would close a loop)"
        return None

    def add(self, link: Link) -> LinkBook:
        """The book with `link`; ValueError (one line) if `problem` refuses it. Adding a known link changes nothing."""
        why = self.problem(link)
        if why is not None:
            raise ValueError(f"link {link.event_id}: {why}")
        return LinkBook(MappingProxyType({**self.previous, link.new_key: link.old_key}))

    @classmethod
    def of(cls, links: Iterable[Link]) -> LinkBook:
        book = cls()
        for link in links:
            book = book.add(link)
        return book


def continued_history(old_events: Sequence[Event], new_events: Sequence[Event], link: Link) -> list[Event]:
    """The new document's traveller's events, preceded by the old document's (re-addressed to the new document).

    Duplicates by event id keep one copy; `step` orders the history itself. Document-scoped changes of the old
    document (DOCUMENT_SCOPED) are left behind.
    """
    out: dict[str, Event] = {}
    for ev in old_events:
        if isinstance(ev, StatusChange) and ev.kind in DOCUMENT_SCOPED:
            continue
        doc = ev.traveller.document
        if partition_key(doc.issuing_country, doc.number) != link.old_key:
            raise ValueError(f"event {ev.event_id} is not on the replaced document of link {link.event_id}")
        out.setdefault(ev.event_id, replace(ev, traveller=replace(ev.traveller, document=link.new_document)))
    for ev in new_events:
        out.setdefault(ev.event_id, ev)
    return list(out.values())


def merge_states(old: TravellerState, new: TravellerState | None) -> TravellerState:
    """One person's state from the replaced document's (`old`, after the renewal) and the new document's (`new`,
    None if it has no state yet), to be walked again with `step(..., replay=True)`.

    Order-insensitive: the new document's events may have been stepped before or after the handoff arrives; the
    replay walks both documents' retained events in time order from the earlier folded walk and settles what was
    emitted by either (alerts the merged history no longer implies are retracted). Idempotent: a second copy of
    the same handoff adds no event (ids already known or folded past) and no counted day (intervals are a set).
    The merged state keeps the OLD state's traveller key, so the person's alerts and stays keep their ids across
    the renewal (an overstay raised on the old document is resolved by the exit on the new one; chains A -> B -> C
    keep A's key). Booklet-scoped changes (lost, stolen, recovered) of the old document stay behind, and so do its
    LOST_STOLEN_DOCUMENT alerts (the retired old state goes on judging its booklet's watch list).
    """
    if new is None or (not new.history and new.base is None and not new.emitted and not new.stays_emitted):
        new = TravellerState.empty(old.traveller_key)
    base, base_key = _merged_base(old, new)
    floor = new.base_key  # events the new state already folded into its base must not be walked again
    kept_old = [
        e
        for e in old.history
        if not (e[2] == STATUS and e[4] in _SCOPED_VALUES) and (floor is None or key_of(e) > floor)
    ]
    by_id = {id_of(e): e for e in (*kept_old, *new.history)}
    history = tuple(sorted(by_id.values(), key=key_of))
    return TravellerState(
        old.traveller_key,
        history,
        base.copy() if base is not None else Cursor(),  # replaced by the replay's walk
        base,
        base_key,
        # The old booklet's watch-list alerts stay with it (its retired state still judges them): carried over,
        # the replay, which leaves the booklet's reports behind, would retract them.
        {**{a: c for a, c in old.pending.items() if c.type != BOOKLET_ALERT}, **new.pending},
        {**{a: e for a, e in old.emitted.items() if e.alert.type != BOOKLET_ALERT}, **new.emitted},
        {**old.stays_pending, **new.stays_pending},
        {**old.stays_emitted, **new.stays_emitted},
    )


def hand_over(
    old: TravellerState,
    new: TravellerState | None,
    *,
    watermark: datetime,
    emitted_time: datetime,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
) -> StepResult:
    """The new document's state once the old one's (`old`, handed off) is merged into it: `merge_states`, walked
    again with `step(..., replay=True)`, whichever of the two came first.

    What the new document emitted before the handoff arrived (e.g. an EXIT_WITHOUT_ENTRY for an exit on the new
    passport judged alone) carries the new document's traveller key, in its alert and stay ids; the merged state
    keeps the person's (old) key, so the replay's RETRACTED record (or its next revision) would name an id that was
    never raised, and the record raised alone would stand. Those records are therefore settled under the key they
    were emitted with first: each alert retracted, each stay voided, for every one a replay from the merged base
    can derive again; the replay then raises under the person's key whatever the merged history still implies.
    A candidate still pending is left pending: it is offered under the person's key when due. Records no replay
    reaches any more (folded) are final and kept. Idempotent: once merged, the state has the person's key, so a
    redelivered handoff finds nothing under another key.
    """
    ctx = context_for(rules, checkpoints)
    alerts: list[Alert] = []
    stays: list[Stay] = []
    if new is not None and new.traveller_key != old.traveller_key and (new.emitted or new.stays_emitted):
        own = new.traveller_key
        base, base_key = _merged_base(old, new)  # the base the replay will walk from
        base_open = base.open.entry.event_id if base is not None and base.open is not None else None
        emitted = dict(new.emitted)
        for aid, (action, c, rev) in new.emitted.items():
            if not alert_in_scope(c, base_key, base_open):
                continue  # folded: final, no replay will change it
            if action != RETRACTED:
                alerts.append(alert_record(ctx, own, c, AlertAction.RETRACTED, emitted_time, revision=rev + 1))
            del emitted[aid]
        stays_emitted = dict(new.stays_emitted)
        for sid, e in new.stays_emitted.items():
            if not stay_in_scope(e.anchor_t, sid, base_key, base_open):
                continue
            if e.live:
                stays.append(void_stay_record(ctx, own, sid, e.revision + 1, e))
            del stays_emitted[sid]
        new = replace(new, emitted=emitted, stays_emitted=stays_emitted)
    result = step(
        merge_states(old, new),
        [],
        watermark=watermark,
        emitted_time=emitted_time,
        rules=rules,
        checkpoints=checkpoints,
        replay=True,
    )
    return replace(result, alerts=alerts + result.alerts, stays=stays + result.stays)


def retired(state: TravellerState, link: Link) -> TravellerState:
    """The replaced document's state once handed off: it keeps its history (a late event of the old document
    is still recognised) but owes no deadline any more, the new document's partition carries them; it keeps the
    link, so `step` passes on what still reaches it (an outbox not yet forwarded is kept)."""
    outbox = state.successor.outbox if state.successor is not None else ()
    return replace(
        state, pending={}, stays_pending={}, successor=Successor(link.event_id, link.new_key, to_us(link.at), outbox)
    )


def outgoing(state: TravellerState) -> tuple[tuple[StoredEvent, ...], TravellerState]:
    """A retired state's events to forward to its successor's key, and the state without them (to store with the
    forward, in one batch: a replayed batch queues and forwards them again, and `take_late` merges them once)."""
    if state.successor is None or not state.successor.outbox:
        return (), state
    return state.successor.outbox, replace(state, successor=state.successor._replace(outbox=()))


def take_late(
    state: TravellerState,
    events: Sequence[StoredEvent],
    *,
    watermark: datetime,
    emitted_time: datetime,
    rules: RuleBook,
    checkpoints: Mapping[str, CheckpointInfo],
) -> tuple[StepResult, list[str]]:
    """The person's state (under the new document's key) with late events of a replaced document forwarded from
    its retired state (`outgoing`), walked again from the base as any late event is (`step`'s replay), under the
    person's key; and the ids of those too old to re-order (at or before the folded base, unless known: a
    forward delivered again after its events were folded is among them too).

    Idempotent: events already in the history are skipped. The old document's booklet-scoped changes (lost, stolen,
    recovered) stay behind, as in `merge_states`.
    """
    if state.successor is not None:
        raise ValueError("a retired state passes late events on (pass_on), it does not take them")
    floor = state.base_key
    known = set(map(id_of, state.history))
    fresh: dict[str, StoredEvent] = {}
    too_old: list[str] = []
    for e in events:
        eid = id_of(e)
        if eid in known or eid in fresh or (e[2] == STATUS and e[4] in _SCOPED_VALUES):
            continue
        if floor is not None and key_of(e) <= floor:
            too_old.append(eid)
            continue
        fresh[eid] = e
    if not fresh:
        return StepResult(state, [], [], earliest_due(state.pending, state.stays_pending)), too_old
    history = tuple(sorted((*state.history, *fresh.values()), key=key_of))
    result = step(
        replace(state, history=history),
        [],
        watermark=watermark,
        emitted_time=emitted_time,
        rules=rules,
        checkpoints=checkpoints,
        replay=True,
    )
    return result, too_old


def _merged_base(old: TravellerState, new: TravellerState) -> tuple[Cursor | None, Key | None]:
    """The folded walk the merged history starts from: the one side's, or (both folded) the later one with the
    other's counted days added (the open stay, ban and permit of the later one stand)."""
    if old.base is None and new.base is None:
        return None, None
    if new.base is None or old.base is None:
        base, base_key = (old.base, old.base_key) if new.base is None else (new.base, new.base_key)
        assert base is not None
        cursor = base.copy()
    else:
        first, later = sorted(((old.base_key, old.base), (new.base_key, new.base)), key=lambda b: b[0] or (0, ""))
        base_key = later[0]
        cursor = later[1].copy()
        cursor.past = tuple(sorted(set(cursor.past) | set(first[1].past)))
    cursor.lost = None  # a lost or stolen booklet is not the person
    return cursor, base_key


def person_keys(events: Iterable[Event]) -> Callable[[str], str]:
    """Partition key of a document -> that of the person's first document, from the renewals among `events` (for
    judging a whole file at once, `shekara check`); a link `LinkBook` refuses is left out."""
    book = LinkBook()
    for ev in sorted((e for e in events if isinstance(e, StatusChange)), key=lambda e: e.event_time):
        link = link_of(ev)
        if link is not None and book.problem(link) is None:
            book = book.add(link)
    return book.canonical
