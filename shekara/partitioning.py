"""Which partition a source event belongs on: CRC-32 of its message key modulo the topic's partition count.

This is librdkafka's default ("consistent_random") for keyed messages, so a producer on librdkafka that left
partitioning to the client already agrees; the publish client names the partition explicitly with this function.
Clients that hash otherwise (the Java client and REST Proxy use murmur2) or pick a partition themselves would put
a traveller's events on another worker, which then judges a split history: the processors (streams.intake) and
the sink (the rejects SQL: ClickHouse's CRC32(_key) % partitions) refuse such an event as a dead letter.
"""

from __future__ import annotations

import zlib


def partition_of(key: bytes, count: int) -> int:
    """The partition of a topic with `count` partitions that the event keyed `key` belongs on."""
    return zlib.crc32(key) % count


def misplaced(key: bytes, partition: int, count: int) -> str | None:
    """The dead-letter reason of an event keyed `key` read from `partition`, or None when it is where it belongs."""
    wanted = partition_of(key, count)
    if partition == wanted:
        return None
    return (
        f"on partition {partition}; its key belongs on partition {wanted} of {count}"
        " (CRC-32 of the key modulo the partition count)"
    )
