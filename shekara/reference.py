"""Reference data that is not law: the checkpoint catalogue (`rules/checkpoints.csv`).

Used by the processors (impossible-travel distances, transit routes), the simulator (where traffic
crosses) and the ops page (the map). Pure data and geometry, no I/O beyond reading the file.

The catalogue is also enforced (`Catalogue.refusal`): a crossing at a checkpoint id it does not list, or at a
checkpoint outside its open dates (`opened`..`closed`, local days in the rules' time zone, both inclusive), is
refused the same way by the producer client and the processors (`schemas.validation`) and by the sink (its
rejects SQL reads the catalogue from ClickHouse's `checkpoints` table, which the sink fills from this file).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

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
    opened: date | None = None  # first local day it is open; None: open before any record we hold
    closed: date | None = None  # last local day it is open (inclusive); None: still open


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
                opened=_day(row, "opened"),
                closed=_day(row, "closed"),
            )
            if cp.id in out:
                raise ValueError(f"checkpoints: duplicate id {cp.id}")
            if cp.opened is not None and cp.closed is not None and cp.closed < cp.opened:
                raise ValueError(f"checkpoints: {cp.id} closed {cp.closed} before it opened {cp.opened}")
            out[cp.id] = cp
    return out


def _day(row: Mapping[str, str | None], column: str) -> date | None:
    text = (row.get(column) or "").strip()  # a catalogue without the column: open throughout
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise ValueError(f"checkpoints: {row['id']} {column} must be a date YYYY-MM-DD; got {text!r}") from None


CATALOGUE_NAME = "rules/checkpoints.csv"  # how refusals name the catalogue, for integrators


@dataclass(frozen=True)
class Catalogue:
    """The checkpoints by id with the time zone their open dates are local to: what a crossing is judged by."""

    checkpoints: Mapping[str, CheckpointInfo]
    timezone: ZoneInfo

    def open_span(self, cp: CheckpointInfo) -> tuple[datetime | None, datetime | None]:
        """[from, until) in UTC: the start of `opened` and the start of the day after `closed` (None: unbounded)."""
        utc = ZoneInfo("UTC")

        def start(day: date) -> datetime:
            return datetime.combine(day, time(0), self.timezone).astimezone(utc)

        return (
            None if cp.opened is None else start(cp.opened),
            None if cp.closed is None else start(cp.closed + timedelta(days=1)),
        )

    def known(self, checkpoint_id: str) -> str | None:
        """Why `checkpoint_id` is refused as a checkpoint (not in the catalogue), or None."""
        if checkpoint_id in self.checkpoints:
            return None
        return f"is not a checkpoint of the catalogue ({CATALOGUE_NAME}); got '{checkpoint_id}'"

    @cached_property
    def spans(self) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Each post's `open_span`, computed once: `refusal` runs for every crossing the processors admit."""
        return {cp_id: self.open_span(cp) for cp_id, cp in self.checkpoints.items()}

    def refusal(self, checkpoint_id: str, moment: datetime) -> str | None:
        """Why a crossing at `checkpoint_id` at instant `moment` is refused (unknown, or not open), or None."""
        span = self.spans.get(checkpoint_id)
        if span is None:
            return self.known(checkpoint_id)
        cp = self.checkpoints[checkpoint_id]
        begins, ends = span
        if begins is not None and moment < begins:
            return f"is checkpoint {cp.id}, which opened on {cp.opened}, after this crossing"
        if ends is not None and moment >= ends:
            return f"is checkpoint {cp.id}, which closed after {cp.closed}, before this crossing"
        return None


@lru_cache(maxsize=4)
def load_catalogue(path: Path | None = None, timezone: str = "Asia/Almaty") -> Catalogue:
    """The enforced catalogue: `load_checkpoints(path)` with the rules' time zone (`RuleBook.timezone`)."""
    return Catalogue(load_checkpoints(path), ZoneInfo(timezone))
