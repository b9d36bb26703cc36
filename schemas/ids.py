"""Stable ids derived from content, shared by the simulator (ground truth) and the processors (output).

Deriving ids from what they describe, rather than minting them, makes re-processing idempotent: the same
alert or stay computed twice gets the same id, so sinks deduplicate instead of double counting.
"""

from __future__ import annotations

import hashlib
import uuid


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def alert_id(alert_type: str, subject_key: str, anchor_event_id: str) -> str:
    """Id of the alert of `alert_type` about `subject_key` (a traveller key, address key...) anchored on one event."""
    return _digest(f"{alert_type}|{subject_key}|{anchor_event_id}")


def stay_id(traveller_key: str, anchor_event_id: str) -> str:
    """Id of a stay: the traveller and the event that opened it (the entry, or the exit for an exit without entry)."""
    return _digest(f"stay|{traveller_key}|{anchor_event_id}")


# Namespace of source event ids: uuid5 of this and "<source_system>|<source record id>".
EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:shekara:event")


def source_event_id(source_system: str, source_record_id: str | None = None) -> str:
    """Event id for a source record: stable (uuid5) when the source has its own record id, else a fresh uuid4.

    A stable id lets a checkpoint re-send a record (after an outage, or a whole file twice) without it being
    counted twice; without a source record id there is nothing stable to derive it from.
    """
    if source_record_id:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{source_system}|{source_record_id}"))
    return str(uuid.uuid4())
