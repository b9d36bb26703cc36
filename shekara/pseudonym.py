"""Pseudonyms of document numbers: a public partition key, and the keyed traveller key derived from it.

- `partition_key`: SHA-256 of the normalised document, no secret. It is the Kafka message key of every source
  event, so producers (checkpoints, hotels, integrators) hold no secret at all. It only places a traveller's
  events on one partition; it is not a pseudonym (anyone can hash a candidate number and compare), so it is
  never stored and never leaves Kafka's source topics.
- `traveller_key`: HMAC-SHA256 of the partition key under the pseudonym key, computed only by the stream
  processors and the sink. It is what alerts, stays and the warehouse carry: without the key the number
  cannot be recovered or guessed by hashing candidate numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_STRIP = re.compile(r"[\s\-/.]")


def normalise_document_number(number: str) -> str:
    """Upper-case and drop separators, so "n 123-456" and "N123456" are the same document."""
    return _STRIP.sub("", number).upper()


def partition_key(issuing_country: str, document_number: str) -> str:
    """Public key of a traveller's source events (no secret): what every producer keys its messages with."""
    msg = f"{issuing_country.upper()}|{normalise_document_number(document_number)}".encode()
    return hashlib.sha256(msg).hexdigest()[:32]


def traveller_key_of(partition_key: str, key: bytes) -> str:
    """The keyed traveller key of the traveller whose events carry `partition_key`."""
    # hmac.digest: OpenSSL's one-shot HMAC, a third of the cost of building an hmac.HMAC object per event.
    return hmac.digest(key, partition_key.encode(), "sha256").hex()[:32]


def traveller_key(issuing_country: str, document_number: str, key: bytes) -> str:
    """Stable pseudonymous key of a traveller, by the document they travel on."""
    return traveller_key_of(partition_key(issuing_country, document_number), key)


def pseudonymise(value: str, key: bytes, purpose: str) -> str:
    """Keyed hash of another identifier (address, host id) with a purpose label so hashes don't collide."""
    return hmac.digest(key, f"{purpose}|{value}".encode(), "sha256").hex()[:32]
