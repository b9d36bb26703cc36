"""Keyed pseudonymisation of document numbers (HMAC-SHA256).

The same document always maps to the same traveller key (so partitions and joins work), and without the
key the number cannot be recovered or guessed by hashing candidate numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_STRIP = re.compile(r"[\s\-/.]")


def normalise_document_number(number: str) -> str:
    """Upper-case and drop separators, so "n 123-456" and "N123456" are the same document."""
    return _STRIP.sub("", number).upper()


def traveller_key(issuing_country: str, document_number: str, key: bytes) -> str:
    """Stable pseudonymous key of a traveller, by the document they travel on."""
    msg = f"{issuing_country.upper()}|{normalise_document_number(document_number)}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def pseudonymise(value: str, key: bytes, purpose: str) -> str:
    """Keyed hash of another identifier (address, host id) with a purpose label so hashes don't collide."""
    return hmac.new(key, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()[:32]
