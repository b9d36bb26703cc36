"""Where traffic crosses: the checkpoint catalogue grouped for the generator, with travel-time checks.

Weights are the checkpoints' daily capacities. The travel-time check uses the same impossible-travel
rule as the processors (rules file), with a margin, so normal journeys never look like cloned documents.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from schemas.records import Checkpoint, CheckpointKind
from shekara.reference import CheckpointInfo, distance_km, load_checkpoints
from shekara.rules import ImpossibleTravelRule

# Southern road and rail posts (Uzbek, Kyrgyz, Turkmen borders) are often offline and upload late.
SOUTHERN = frozenset({"UZB", "KGZ", "TKM"})
# A normal journey leaves at least this factor of the fastest plausible travel time between two posts.
FEASIBILITY_MARGIN = 1.6
FEASIBILITY_SLACK_S = 1800.0


class Pick:
    """A weighted choice over a fixed list, by bisection on cumulative weights (fast, deterministic)."""

    __slots__ = ("_cum", "_total", "items")

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        if not items or len(items) != len(weights):
            raise ValueError("Pick needs as many weights as items, and at least one item")
        self.items = list(items)
        self._cum = list(accumulate(float(w) for w in weights))
        self._total = self._cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect(self._cum, rng.random() * self._total)]


@dataclass(frozen=True, slots=True)
class Post:
    """A checkpoint with its record and Avro forms built once."""

    info: CheckpointInfo
    record: Checkpoint
    avro: dict[str, Any]

    @property
    def id(self) -> str:
        return self.info.id


class Catalogue:
    def __init__(self, path: Path | None, rule: ImpossibleTravelRule) -> None:
        self.rule = rule
        self.by_id: dict[str, Post] = {}
        for cp in load_checkpoints(path).values():
            rec = Checkpoint(cp.id, cp.kind, cp.border_country)
            self.by_id[cp.id] = Post(cp, rec, {"id": cp.id, "kind": cp.kind, "border_country": cp.border_country})
        self.posts = list(self.by_id.values())
        self.infos = {p.id: p.info for p in self.posts}
        self._picks: dict[str, Pick] = {}
        self._travel: dict[tuple[str, str], float] = {}  # at most 101 x 101 pairs

    def group(self, *selectors: str) -> list[Post]:
        """Posts by border country ("RUS", ...) or kind ("AIR", "SEA", "LAND"), in catalogue order."""
        out: list[Post] = []
        for p in self.posts:
            info = p.info
            for sel in selectors:
                if (
                    sel == info.border_country
                    or sel == info.kind.value
                    or (sel == "LAND" and info.kind in (CheckpointKind.ROAD, CheckpointKind.RAIL))
                ):
                    out.append(p)
                    break
        return out

    def picker(self, *selectors: str) -> Pick:
        """A capacity-weighted choice among the posts of `group(*selectors)` (cached)."""
        name = "|".join(selectors)
        pick = self._picks.get(name)
        if pick is None:
            posts = self.group(*selectors)
            if not posts:
                raise ValueError(f"no checkpoint matches {selectors}")
            pick = Pick(posts, [p.info.daily_capacity for p in posts])
            self._picks[name] = pick
        return pick

    def min_travel_seconds(self, a: Post, b: Post) -> float:
        """Fastest trip the impossible-travel rule allows between two posts (0 for the same post)."""
        if a.id == b.id:
            return 0.0
        pair = (a.id, b.id)
        s = self._travel.get(pair)
        if s is None:
            km = distance_km(a.info, b.info)
            if a.info.kind == CheckpointKind.AIR or b.info.kind == CheckpointKind.AIR:
                s = km / self.rule.air_kmh * 3600.0 + self.rule.air_overhead_minutes * 60.0
            else:
                s = km / self.rule.ground_kmh * 3600.0
            self._travel[pair] = s
        return s

    def feasible_seconds(self, a: Post, b: Post) -> float:
        """The least time a normal journey leaves between crossings at `a` and `b` (with a safety margin)."""
        if a.id == b.id:
            return 0.0
        return self.min_travel_seconds(a, b) * FEASIBILITY_MARGIN + FEASIBILITY_SLACK_S
