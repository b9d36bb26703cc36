"""The two pseudonyms: the public partition key producers send, and the keyed traveller key derived from it."""

from __future__ import annotations

import hashlib
import hmac

from shekara.pseudonym import partition_key, traveller_key, traveller_key_of


def test_partition_key_needs_no_secret_and_ignores_how_the_number_is_written() -> None:
    key = partition_key("kgz", "ac 000-0007")
    assert key == hashlib.sha256(b"KGZ|AC0000007").hexdigest()[:32]  # anyone can compute it: no key involved
    assert key == partition_key("KGZ", "AC0000007") == partition_key("Kgz", "ac/000.0007")
    assert key != partition_key("UZB", "AC0000007") and key != partition_key("KGZ", "AC0000008")
    assert "AC0000007" not in key


def test_traveller_key_is_the_hmac_of_the_partition_key_and_differs_per_key() -> None:
    pkey = partition_key("KGZ", "AC0000007")
    one, other = traveller_key_of(pkey, b"one key"), traveller_key_of(pkey, b"another key")
    assert one == hmac.new(b"one key", pkey.encode(), "sha256").hexdigest()[:32]
    assert one != other and len(one) == len(other) == 32
    assert one != pkey  # the keyed pseudonym is not the public one
    assert traveller_key("kgz", "ac 000-0007", b"one key") == one
