"""Admission of a source message: decode, check it belongs on its topic, validate, check its partition and key.

Pure: bytes in, an accepted event or the reason for rejecting it out. The shell turns a rejection into a
dead letter; nothing is dropped silently and nothing here can raise on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.records import Crossing, Registration, StatusChange
from schemas.serde import DecodeError, Serde, failure_reason
from schemas.validation import ValidationError, catalogue_for, validate
from shekara.partitioning import misplaced
from shekara.pseudonym import partition_key, traveller_key_of
from shekara.settings import Limits, Settings

SourceEvent = Crossing | Registration | StatusChange
KEY_REASON = "message key is not the partition key of traveller.document (key with shekara.pseudonym.partition_key)"


@dataclass(frozen=True, slots=True)
class Accepted:
    event: SourceEvent
    partition_key: str  # the message key (public, no secret): what the state store is keyed by
    traveller_key: str  # keyed pseudonym (HMAC of the partition key): what every output carries


@dataclass(frozen=True, slots=True)
class Rejected:
    stage: str  # "decode" or "validate"
    reason: str
    field: str | None


def too_large(key: bytes | None, value: bytes | None, limits: Limits) -> Rejected | None:
    """A message whose key or value exceeds its limit (settings.limits), refused before anything reads it.

    The sink's rejects SQL refuses the same keys (shekara_size_problem); a value that large always has a field
    beyond its own limit as well, so the sink refuses it too.
    """
    if key is not None and len(key) > limits.max_key_bytes:
        why = f"message key is {len(key)} bytes, more than the limit of {limits.max_key_bytes} bytes"
        return Rejected("validate", why, "key")
    if value is not None and len(value) > limits.max_value_bytes:
        why = f"message value is {len(value)} bytes, more than the limit of {limits.max_value_bytes} bytes"
        return Rejected("validate", why, "value")
    return None


class Intake:
    """Knows which record type each source topic carries and how travellers are keyed."""

    def __init__(self, settings: Settings, serde: Serde) -> None:
        t = settings.topics
        self.serde = serde
        self.expected: dict[str, type] = {
            t.crossings: Crossing,
            t.registrations: Registration,
            t.status_changes: StatusChange,
        }
        self.pseudonym_key = settings.pseudonym_key_bytes
        self.max_future_skew_s = settings.max_future_skew_seconds
        self.limits = settings.limits
        self.catalogue = catalogue_for(settings)  # unknown or closed checkpoints are refused, as at publish
        # Source topics' partition count: the catalogue's, which admin.ensure_topics holds the broker's layout to.
        self.partitions = settings.partitions

    def admit(
        self, topic: str, key: bytes | None, value: bytes | None, *, now: datetime, partition: int | None = None
    ) -> Accepted | Rejected:
        """`partition`: where the message was read from, checked against its key's (None: not checked)."""
        oversize = too_large(key, value, self.limits)
        if oversize is not None:
            return oversize
        if value is None:
            return Rejected("decode", "empty message: no value bytes (a tombstone is not an event)", None)
        try:
            record = self.serde.decode(value, topic)
        except DecodeError as exc:
            return Rejected("decode", exc.reason, None)
        except Exception as exc:  # a decoder bug must not stop the worker either
            return Rejected("decode", f"cannot decode: {failure_reason(exc)}", None)
        wanted = self.expected.get(topic)
        if wanted is None or not isinstance(record, wanted):
            expected = wanted.__name__ if wanted else "a source event"
            return Rejected("decode", f"{type(record).__name__} record on {topic}, which carries {expected}", None)
        assert isinstance(record, Crossing | Registration | StatusChange)
        try:
            validate(
                record,
                now=now,
                max_future_skew_s=self.max_future_skew_s,
                limits=self.limits,
                catalogue=self.catalogue,
            )
        except ValidationError as exc:
            return Rejected("validate", str(exc), exc.field)
        except Exception as exc:
            return Rejected("validate", f"cannot validate: {failure_reason(exc)}", None)
        doc = record.traveller.document
        pkey = partition_key(doc.issuing_country, doc.number)
        if partition is not None and key:  # no key: the key check names it
            # Checked before the key (as the sink's rejects SQL): a producer that hashes otherwise (murmur2) would
            # split a traveller's history across workers, each judging part of it.
            wrong = misplaced(key, partition, self.partitions)
            if wrong is not None:
                return Rejected("validate", wrong, "partition")
        if key != pkey.encode():
            # Co-partitioning rests on the key: an event keyed otherwise may sit on another traveller's partition,
            # where the worker holding this traveller's state never sees it.
            return Rejected("validate", KEY_REASON, "key")
        return Accepted(record, pkey, traveller_key_of(pkey, self.pseudonym_key))
