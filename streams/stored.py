"""The layout of a traveller's stored value: a 10-byte header, then the core's state bytes.

The header (source partition, next deadline) lets a worker rebuild its deadline index on recovery without
decoding every state.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

_HEADER = struct.Struct(">Hq")
_NO_DUE = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pack(partition: int, next_due: datetime | None, state: bytes) -> bytes:
    due = _NO_DUE if next_due is None else (next_due - _EPOCH) // timedelta(microseconds=1)
    return _HEADER.pack(partition, due) + state


def unpack(value: bytes) -> tuple[int, datetime | None, bytes]:
    """(source partition, next deadline, state bytes) of a stored value."""
    partition, due = _HEADER.unpack_from(value)
    when = None if due == _NO_DUE else _EPOCH + timedelta(microseconds=due)
    return partition, when, value[_HEADER.size :]
