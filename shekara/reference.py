"""Reference data that is not law: the checkpoint catalogue (`rules/checkpoints.csv`).

Used by the processors (impossible-travel distances, transit routes), the simulator (where traffic
crosses) and the ops page (the map). Pure data and geometry, no I/O beyond reading the file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shekara.codes import CheckpointKind

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "rules" / "checkpoints.csv"
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    id: str
    name: str
    kind: CheckpointKind
    border_country: str | None  # alpha-3 of the neighbour; None for airports
    region: str  # ISO 3166-2:KZ
    lat: float
    lon: float
    daily_capacity: int  # people a day it is designed for (simulator weight)


def distance_km(a: CheckpointInfo, b: CheckpointInfo) -> float:
    """Great-circle (haversine) distance between two checkpoints."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@lru_cache(maxsize=4)
def load_checkpoints(path: Path | None = None) -> dict[str, CheckpointInfo]:
    """The checkpoint catalogue by id."""
    out: dict[str, CheckpointInfo] = {}
    with (path or DEFAULT_CHECKPOINTS).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cp = CheckpointInfo(
                id=row["id"],
                name=row["name"],
                kind=CheckpointKind(row["kind"]),
                border_country=row["border_country"] or None,
                region=row["region"],
                lat=float(row["lat"]),
                lon=float(row["lon"]),
                daily_capacity=int(row["daily_capacity"]),
            )
            if cp.id in out:
                raise ValueError(f"checkpoints: duplicate id {cp.id}")
            out[cp.id] = cp
    return out
