"""Cheap draws from `random.Random` for the hot paths.

`randint`/`choice` go through `_randbelow` (several Python calls each); one `random()` call and a
multiplication is several times faster and just as deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def ri(rng: random.Random, a: int, b: int) -> int:
    """An integer in [a, b]."""
    return a + int(rng.random() * (b - a + 1))


def pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]
