"""The traveller matcher's computation for a chunk of source messages: admit, then step each traveller.

Bytes and plain values in, bytes and plain values out: no Kafka, Faust or clock. The shell
(`streams.matcher.TravellerMatcher`) keeps everything that outlives a chunk (the state store, watermarks,
the deadline index, offsets) and hands over what a chunk needs:

- `work(messages, stored, watermarks, now)`: decode, validate and key-check every message (`streams.intake`),
  group the accepted ones by partition and traveller, move each partition's watermark on by the chunk's latest
  event time (`streams.watermark` rule), and step each traveller with its events at that watermark. `stored`
  holds the stored values of the chunk's message keys: states are stored under the public partition key, which
  a valid message's key *is* (the intake rejects any other), so the shell finds the states without decoding
  anything. The state itself, and every alert and stay, carry the keyed traveller key (HMAC of the partition key).
- `step(requests, now)`: step travellers without events, whose deadline the watermark has passed (the shell
  pops them from its deadline index once it knows the new watermarks).
- `check_addresses(messages, stored, now)`: the address-crowding stage's chunk (registrations re-keyed by address
  on `address-registrations`): decode, group by address, `streams.core.address_step` once per address.
- `admit_ahead(messages)`: admit messages the shell holds back for alignment (`streams.align`), so that `work`
  finds their verdicts ready. On a backlog the matcher holds tens of thousands of events for seconds while a
  co-partition is waited for (8 s in one benchmark run); admitting them meanwhile uses a matching process
  that would otherwise wait, and admission is about two thirds of the work.

Why this split: decoding, validation and the core are most of a worker's CPU, and they need nothing the shell
holds but the states and watermarks it passes in. So they can run in a process of their own
(`streams.offload`), on another core, while the worker's event loop goes on fetching; only bytes and plain
values cross between the two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.records import Registration
from schemas.serde import DecodeError, Serde
from shekara.pseudonym import traveller_key, traveller_key_of
from shekara.reference import CheckpointInfo
from shekara.rules import RuleBook
from shekara.settings import Settings
from streams.core import AddressState, TravellerState, address_key, address_step, step
from streams.intake import Accepted, Intake, Rejected, SourceEvent, too_large
from streams.stored import pack, unpack

# (topic, partition, offset, key, value, timestamp in seconds): a source message as the shell hands it over.
RawMessage = tuple[str, int, int, bytes | None, bytes | None, float]
# partition -> (watermark, [(partition key, stored value or None)]): deadline-only steps
StepRequest = dict[int, tuple[datetime, list[tuple[str, bytes | None]]]]
AHEAD_LIMIT = 50_000  # verdicts kept for messages admitted ahead, at most (the oldest go first)


class OutputTooLarge(ValueError):
    """A record the inputs made is too large to send (settings.limits.max_value_bytes): the inputs are refused.

    Sent anyway, the broker would refuse it and the worker would stop, and stop again on the same inputs after
    every restart. Refused here, the inputs become dead letters and the previous state is kept.
    """


def _fit(records: Sequence[tuple[bytes, bytes]], limit: int, what: str) -> None:
    for key, value in records:
        if len(key) + len(value) > limit:
            raise OutputTooLarge(
                f"the {what} these events make would be {len(key) + len(value)} bytes, "
                f"more than the limit of {limit} bytes"
            )


@dataclass(slots=True)
class Stepped:
    """The values to store and the records to send; indices are positions in the chunk."""

    # partition, store key (the partition key), value, due
    states: list[tuple[int, str, bytes, datetime | None]] = field(default_factory=list)
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, encoded Alert)
    stays: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, encoded Stay)
    # dead letters: index, stage ("decode", "validate" or "process"), reason, field
    rejected: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    failures: list[tuple[int, str, int]] = field(default_factory=list)  # partition, what failed, events affected

    def add(self, other: Stepped) -> None:
        """Take in what another step produced (deadlines fired after a chunk's own travellers)."""
        self.states += other.states
        self.alerts += other.alerts
        self.stays += other.stays
        self.rejected += other.rejected
        self.failures += other.failures


@dataclass(slots=True)
class Worked(Stepped):
    """What `work` made of a chunk: `Stepped`, and what the shell needs to move its clocks and forward."""

    travellers: dict[int, list[str]] = field(default_factory=dict)  # partition -> store keys with accepted events
    latest: dict[int, datetime] = field(default_factory=dict)  # partition -> latest event time accepted
    accepted: int = 0
    address_keys: list[tuple[int, str]] = field(default_factory=list)  # accepted registration, its address key


@dataclass(slots=True)
class AddressesChecked:
    """What `check_addresses` made of a chunk of address-keyed registrations; indices are positions in the chunk."""

    states: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, address key, stored value
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, encoded Alert)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # dead letters: index, stage, reason
    failures: list[tuple[int, str, int]] = field(default_factory=list)  # partition, what failed, events affected
    accepted: int = 0


class Matching:
    """Runs the calls above for one worker; keeps nothing between calls but verdicts admitted ahead."""

    def __init__(
        self, settings: Settings, rules: RuleBook, checkpoints: Mapping[str, CheckpointInfo], serde: Serde
    ) -> None:
        self.intake = Intake(settings, serde)
        self.serde = serde
        self.rules = rules
        self.checkpoints = checkpoints
        self.lateness = timedelta(seconds=settings.allowed_lateness_seconds)
        self.alerts_topic = settings.topics.alerts
        self.stays_topic = settings.topics.stays
        self.pseudonym_key = settings.pseudonym_key_bytes
        self.limits = settings.limits
        # (topic, partition, offset) -> (key, value, verdict). The message's bytes are kept to check a hit: an
        # offset names one message only for as long as its topic is not deleted and created again.
        self._ahead: OrderedDict[tuple[str, int, int], tuple[bytes | None, bytes | None, Accepted | Rejected]] = (
            OrderedDict()
        )

    def _admit(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp: float
    ) -> Accepted | Rejected:
        # Judged against the message's own timestamp (producer send time), not the wall clock, so a replay
        # accepts and rejects exactly what live running did.
        now = datetime.fromtimestamp(timestamp, UTC)
        return self.intake.admit(topic, key, value, now=now, partition=partition)

    def admit_ahead(self, messages: Sequence[RawMessage]) -> int:
        """Admit `messages` now and keep the verdicts for `work`; how many are kept."""
        ahead = self._ahead
        for topic, partition, offset, key, value, timestamp in messages:
            ahead[topic, partition, offset] = (key, value, self._admit(topic, partition, key, value, timestamp))
        while len(ahead) > AHEAD_LIMIT:
            ahead.popitem(last=False)
        return len(ahead)

    def work(
        self,
        messages: Sequence[RawMessage],
        stored: Mapping[tuple[int, bytes], bytes],
        watermarks: Mapping[int, datetime | None],
        now: datetime,
    ) -> Worked:
        """`stored`: (partition, key) -> stored value; `watermarks`: each partition's before the chunk (or None)."""
        out = Worked()
        records: dict[int, SourceEvent] = {}
        groups: dict[int, dict[str, list[int]]] = {}  # partition -> partition key -> indices
        tkeys: dict[str, str] = {}  # partition key -> traveller key
        ahead = self._ahead
        for index, (topic, partition, offset, key, value, timestamp) in enumerate(messages):
            kept = ahead.pop((topic, partition, offset), None) if ahead else None
            if kept is not None and kept[0] == key and kept[1] == value:
                verdict = kept[2]
            else:
                verdict = self._admit(topic, partition, key, value, timestamp)
            if not isinstance(verdict, Accepted):
                out.rejected.append((index, verdict.stage, verdict.reason, verdict.field))
                continue
            record = verdict.event
            records[index] = record
            groups.setdefault(partition, {}).setdefault(verdict.partition_key, []).append(index)
            tkeys[verdict.partition_key] = verdict.traveller_key
            latest = out.latest.get(partition)
            if latest is None or record.event_time > latest:
                out.latest[partition] = record.event_time
            if isinstance(record, Registration):
                out.address_keys.append((index, address_key(record.region, record.address, self.pseudonym_key)))
        out.accepted = len(records)
        for partition, travellers in groups.items():
            # The watermark the shell's `Watermarks.observe` will reach with this chunk's latest event time.
            watermark = out.latest[partition] - self.lateness
            before = watermarks.get(partition)
            if before is not None and before > watermark:
                watermark = before
            out.travellers[partition] = list(travellers)
            for pkey, indices in travellers.items():
                events = [records[i] for i in indices]
                state = stored.get((partition, pkey.encode()))
                self._step(out, partition, pkey, tkeys[pkey], state, events, indices, watermark, now)
        return out

    def check_addresses(
        self, messages: Sequence[RawMessage], stored: Mapping[tuple[int, bytes], bytes], now: datetime
    ) -> AddressesChecked:
        """`stored`: (partition, address key) -> stored `AddressState`; `now` is the alerts' emitted time."""
        out = AddressesChecked()
        groups: dict[int, dict[bytes, list[tuple[int, Registration]]]] = {}
        for index, (topic, partition, _, key, value, _) in enumerate(messages):
            oversize = too_large(key, value, self.limits)
            if oversize is not None:
                out.rejected.append((index, oversize.stage, oversize.reason))
                continue
            try:
                record = self.serde.decode(value or b"", topic)
            except DecodeError as exc:
                out.rejected.append((index, "decode", exc.reason))
                continue
            if not isinstance(record, Registration) or key is None:
                why = f"expected a Registration keyed by address, got {type(record).__name__}"
                out.rejected.append((index, "decode", why))
                continue
            groups.setdefault(partition, {}).setdefault(key, []).append((index, record))
        for partition, addresses in groups.items():
            for akey, items in addresses.items():
                try:
                    value = stored.get((partition, akey))
                    state = AddressState.empty(akey.decode()) if value is None else AddressState.from_bytes(value)
                    state, alerts = address_step(
                        state,
                        [r for _, r in items],
                        traveller_key_of=self._traveller_key_of,
                        emitted_time=now,
                        rules=self.rules,
                    )
                    encoded = [(a.alert_id.encode(), self.serde.encode(a, self.alerts_topic)) for a in alerts]
                    new_value = state.to_bytes()
                    limit = self.limits.max_value_bytes
                    _fit(encoded, limit, "alert")
                    _fit([(akey, new_value)], limit, "address state")
                except Exception as exc:
                    why = (
                        str(exc)
                        if isinstance(exc, OutputTooLarge)
                        else f"the address check failed on these registrations: {type(exc).__name__}"
                    )
                    out.rejected.extend((i, "process", why) for i, _ in items)
                    out.failures.append((partition, repr(exc), len(items)))
                    continue
                out.accepted += len(items)
                out.alerts.extend(encoded)
                out.states.append((partition, akey, new_value))
        return out

    def _traveller_key_of(self, registration: Registration) -> str:
        doc = registration.traveller.document
        return traveller_key(doc.issuing_country, doc.number, self.pseudonym_key)

    def step(self, requests: StepRequest, now: datetime) -> Stepped:
        """Step travellers without events at their partition's watermark; `now` is the outputs' emitted time."""
        out = Stepped()
        for partition, (watermark, items) in requests.items():
            for pkey, stored in items:
                tkey = traveller_key_of(pkey, self.pseudonym_key) if stored is None else None
                self._step(out, partition, pkey, tkey, stored, [], [], watermark, now)
        return out

    def _step(
        self,
        out: Stepped,
        partition: int,
        key: str,
        tkey: str | None,
        stored: bytes | None,
        events: list[SourceEvent],
        indices: list[int],
        watermark: datetime,
        now: datetime,
    ) -> None:
        # `key`: the store key (partition key); `tkey`: the traveller key of a new state (a stored one has its own).
        try:
            if stored is None:
                assert tkey is not None
                state = TravellerState.empty(tkey)
            else:
                state = TravellerState.from_bytes(unpack(stored)[2])
            result = step(
                state, events, watermark=watermark, emitted_time=now, rules=self.rules, checkpoints=self.checkpoints
            )
            alerts = [(a.alert_id.encode(), self.serde.encode(a, self.alerts_topic)) for a in result.alerts]
            stays = [(s.stay_id.encode(), self.serde.encode(s, self.stays_topic)) for s in result.stays]
            value = pack(partition, result.next_due, result.state.to_bytes())
            limit = self.limits.max_value_bytes
            _fit(alerts, limit, "alert")
            _fit(stays, limit, "stay")
            _fit([(key.encode(), value)], limit, "traveller state")
        except Exception as exc:
            # A core bug, or a record too large to send, must not stop the worker: these events become dead
            # letters, the state is kept. A failed deadline-only step leaves the key out of the index until its
            # next event re-steps it.
            why = (
                str(exc)
                if isinstance(exc, OutputTooLarge)
                else f"the matcher failed on this traveller's events: {type(exc).__name__}"
            )
            out.rejected.extend((i, "process", why, None) for i in indices)
            out.failures.append((partition, repr(exc), len(indices)))
            return
        if result.rejected:
            # Events the core could not apply (e.g. older than everything it retains): dead letters, never dropped.
            index_of = {event.event_id: i for event, i in zip(events, indices, strict=True)}
            for record, why in result.rejected:
                index = index_of.get(record.event_id)
                if index is not None:
                    out.rejected.append((index, "process", why, None))
        out.alerts.extend(alerts)
        out.stays.extend(stays)
        out.states.append((partition, key, value, result.next_due))
