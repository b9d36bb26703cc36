"""The identity handoff between partitions: a renewed passport's history follows the person (docs/topology.md,
"Identity links"; the pure merge is `streams.core.identity`).

A traveller's state lives under the partition key of the document presented; a renewed passport hashes to another
key, often another partition. When the matcher accepts a DOCUMENT_REPLACED status change (keyed by the OLD
document), the old key's state after it, as stored, goes in a *handoff* record to the internal topic
`topics.identity_links`, keyed by the NEW document's partition key and sent to that key's source partition
(`shekara.partitioning`), so it reaches the worker owning the new document's state. It is produced with the
batch's alerts and stays, before the batch's offsets are committed (`streams.pipeline`): a crash replays the
batch and sends it again, and the receiver merges a redelivery once (`merge_states` is idempotent). The old key's
state is retired (no deadline left: the new partition carries them).

The matcher subscribes to the internal topic with its sources (same agent, so Faust assigns its partition *p* with
theirs) and merges each handoff into the new key's state at once, at the partition's watermark: the merge is
order-insensitive, so a handoff may come before or after the new document's events (alerts the new document
raised alone, e.g. an exit without entry, are retracted under the new document's own key, and what the merged
walk implies is raised under the person's: `streams.core.identity.hand_over`).

The retired state keeps the link (`TravellerState.successor`). An event of the old document that reaches it after
the handoff (a late upload of an earlier crossing) is not judged there: the core keeps it in the retired state's
outbox, and the shell forwards it, with the batch's outputs and before its offsets are committed, in a *late*
handoff carrying only those events, to the new key's partition, where `take_late` merges them into the person's
state and walks it again (a redelivery merges nothing: its events are known). A retired new key (A -> B -> C)
passes on what reaches it, late events or a whole handoff, to its own successor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import msgpack

from schemas.records import StatusChange
from schemas.serde import DecodeError, Serde
from shekara.logs import get_logger
from shekara.partitioning import partition_of
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from shekara.settings import Settings
from streams.core import StepResult, TravellerState
from streams.core.identity import hand_over, link_of, outgoing, retired, take_late
from streams.core.model import from_us, to_us
from streams.core.traveller import is_linked, pass_on
from streams.matching import RawMessage, Stepped
from streams.stored import pack, unpack

log = get_logger(__name__)

_FORMAT = 2  # 2: the `late` flag; a format-1 record (without it) is a whole state's handoff
_READS = (1, 2)
_HEADER = len(pack(0, None, b""))  # the stored value's header, before the state bytes (streams.stored)


@dataclass(frozen=True, slots=True)
class Handoff:
    """The replaced document's state after the renewal `link_id`, for the new document's key; or (`late`) only
    the events that reached the retired state since, to merge into the person's (`take_late`)."""

    link_id: str  # the DOCUMENT_REPLACED event's id
    old_key: str  # partition keys
    new_key: str
    at: datetime  # the renewal's event time
    state: bytes  # TravellerState.to_bytes() of the old key (late: its history is the events to merge)
    late: bool = False

    def to_bytes(self) -> bytes:
        return msgpack.packb((_FORMAT, self.link_id, self.old_key, self.new_key, to_us(self.at), self.state, self.late))

    @classmethod
    def from_bytes(cls, data: bytes) -> Handoff:
        fmt, link_id, old_key, new_key, at, state, *rest = msgpack.unpackb(data)
        if fmt not in _READS:
            raise ValueError(f"identity handoff format {fmt} is not one of {_READS}")
        return cls(link_id, old_key, new_key, from_us(at), state, bool(rest[0]) if fmt >= 2 else False)


class Handoffs:
    """Both ends of the handoff for one worker's matcher: `emit` on the old partition, `receive` on the new."""

    def __init__(
        self, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo], serde: Serde
    ) -> None:
        self.topic = settings.topics.identity_links
        self.status_topic = settings.topics.status_changes
        self.alerts_topic = settings.topics.alerts
        self.stays_topic = settings.topics.stays
        self.partitions = settings.partitions
        self.rules = rules
        self.checkpoints = checkpoints
        self.serde = serde

    def emit(self, messages: Sequence[RawMessage], stepped: Stepped) -> list[tuple[bytes, int, bytes]]:
        """The handoffs the chunk's accepted renewals make, and the late events retired states took, as (key,
        partition, value) to send; the old keys' state writes in `stepped` are replaced by their retired states
        (without the events forwarded)."""
        refused = {index for index, *_ in stepped.rejected}
        writes = {(p, key): i for i, (p, key, _, _) in enumerate(stepped.states)}
        out: list[tuple[bytes, int, bytes]] = []
        for index, (topic, partition, _, _, value, _) in enumerate(messages):
            if topic != self.status_topic or index in refused or value is None:
                continue
            try:
                record = self.serde.decode(value, topic)
            except DecodeError:
                continue  # accepted by intake, so not expected; the event itself was processed
            link = link_of(record) if isinstance(record, StatusChange) else None
            if link is None:
                continue
            at = writes.get((partition, link.old_key))
            if at is None:
                continue  # the step failed for this key (its events are dead letters): nothing to hand off
            p, key, stored, _ = stepped.states[at]
            state = TravellerState.from_bytes(unpack(stored)[2])
            handoff = Handoff(link.event_id, link.old_key, link.new_key, link.at, unpack(stored)[2])
            stepped.states[at] = (p, key, pack(p, None, retired(state, link).to_bytes()), None)
            out.append(self._record(handoff))
        return out + self._forwards(stepped)

    def _record(self, handoff: Handoff) -> tuple[bytes, int, bytes]:
        key = handoff.new_key.encode()
        return key, partition_of(key, self.partitions), handoff.to_bytes()

    def _forwards(self, stepped: Stepped) -> list[tuple[bytes, int, bytes]]:
        """A late handoff for each retired state written with events in its outbox; the write is replaced by the
        state without them (both go with the batch: a replay queues and sends the same again)."""
        last = {(p, key): i for i, (p, key, _, _) in enumerate(stepped.states)}  # the batch's last write wins
        out: list[tuple[bytes, int, bytes]] = []
        for i in last.values():
            p, key, stored, due = stepped.states[i]
            if not is_linked(stored[_HEADER : _HEADER + 2]):  # most states: not retired, neither copied nor decoded
                continue
            state = TravellerState.from_bytes(unpack(stored)[2])
            events, emptied = outgoing(state)
            link = state.successor
            if not events or link is None:
                continue
            late = TravellerState(state.traveller_key, events).to_bytes()
            out.append(self._record(Handoff(link.link_id, key, link.new_key, from_us(link.at), late, late=True)))
            stepped.states[i] = (p, key, pack(p, due, emptied.to_bytes()), due)
            log.info("late events forwarded", link=link.link_id, partition=p, events=len(events))
        return out

    def receive(
        self,
        messages: Sequence[RawMessage],
        stored_of: Callable[[int, bytes], bytes | None],
        watermark_of: Callable[[int], datetime | None],
        now: datetime,
    ) -> tuple[Stepped, list[tuple[bytes, int, bytes]]]:
        """Merge each handoff into its new key's state and walk it again (streams.core.identity.hand_over), or a
        late one's events (`take_late`); a retired new key passes either on to its successor. What to store and
        send, and the handoffs to send on, as (key, partition, value)."""
        out = Stepped()
        onward: list[tuple[bytes, int, bytes]] = []
        states: dict[tuple[int, str], bytes | None] = {}  # the batch's own writes: two handoffs for one key chain
        for index, (_, partition, _, key, value, _) in enumerate(messages):
            try:
                handoff = Handoff.from_bytes(value or b"")
                if key is None or key.decode() != handoff.new_key:
                    raise ValueError("keyed otherwise than by its new document's partition key")
            except Exception as exc:
                out.rejected.append((index, "decode", f"not an identity handoff: {exc}", None))
                continue
            slot = (partition, handoff.new_key)
            stored = states[slot] if slot in states else stored_of(partition, key)
            new = None if stored is None else TravellerState.from_bytes(unpack(stored)[2])
            watermark = watermark_of(partition)
            if watermark is None or watermark < handoff.at:
                watermark = handoff.at  # a fresh partition: the renewal itself is event time reached
            too_old: list[str] = []
            try:
                incoming = TravellerState.from_bytes(handoff.state)
                if new is not None and new.successor is not None:
                    # The new document was itself replaced (A -> B -> C): the person lives on under C's key.
                    if not handoff.late:
                        onward.append(self._record(replace(handoff, new_key=new.successor.new_key)))
                        continue
                    result = StepResult(pass_on(new, incoming.history), [], [], None)
                elif handoff.late:
                    result, too_old = take_late(
                        new or TravellerState.empty(incoming.traveller_key),
                        incoming.history,
                        watermark=watermark,
                        emitted_time=now,
                        rules=self.rules,
                        checkpoints=self.checkpoints,
                    )
                else:
                    # Not merge_states + step alone: what the new key emitted before this handoff carries its own
                    # traveller key and must be settled under it (hand_over's doc).
                    result = hand_over(
                        incoming,
                        new,
                        watermark=watermark,
                        emitted_time=now,
                        rules=self.rules,
                        checkpoints=self.checkpoints,
                    )
            except Exception as exc:
                out.rejected.append((index, "process", f"the identity merge failed: {type(exc).__name__}", None))
                out.failures.append((partition, repr(exc), 1))
                continue
            out.alerts += [(a.alert_id.encode(), self.serde.encode(a, self.alerts_topic)) for a in result.alerts]
            out.stays += [(s.stay_id.encode(), self.serde.encode(s, self.stays_topic)) for s in result.stays]
            value = pack(partition, result.next_due, result.state.to_bytes())
            states[slot] = value
            out.states.append((partition, handoff.new_key, value, result.next_due))
            if too_old:
                # Merged but for these: older than the person's retained history (or a redelivery of events
                # folded since). A dead letter names them, as `step` rejects a source event too old to re-order.
                why = f"late events older than the traveller's retained history, not merged: {', '.join(too_old)}"
                out.rejected.append((index, "process", why, None))
            log.info(
                "identity handoff merged",
                link=handoff.link_id,
                partition=partition,
                late=handoff.late,
                alerts=len(result.alerts),
            )
        onward += self._forwards(out)
        return out, onward
