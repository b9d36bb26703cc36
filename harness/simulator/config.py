"""What a simulation run is asked to produce: period, seed, scale, anomaly and fault rates.

Same config, same bytes: every random choice is drawn from generators seeded by `seed`, and the period is
fixed by `start` (never "today").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

from shekara.settings import Settings


def _default_pseudonym_key() -> bytes:
    return Settings().pseudonym_key_bytes


@dataclass(frozen=True)
class AnomalyRates:
    """Injected anomalies: instances per 10,000 foreign journeys started, plus a minimum per run.

    `minimum` instances of every enabled type are added (spread over the period) when the period is long
    enough for their alerts to fall due inside it, so even a small run at scale 0.02 shows every type.
    """

    in_country_overstay: float = 6.0
    late_exit: float = 6.0
    window_breach: float = 3.0
    unregistered_stay: float = 8.0
    transit_overstay: float = 4.0
    wrong_route_exit: float = 4.0
    exit_without_entry: float = 4.0
    double_entry: float = 4.0
    impossible_travel: float = 3.0
    banned_entry: float = 2.0
    lost_stolen_document: float = 3.0
    fictitious_address: float = 0.5
    renewed_passport: float = 3.0
    minimum: int = 4

    @classmethod
    def none(cls) -> AnomalyRates:
        return cls(**{f.name: 0 for f in fields(cls)})

    def rates(self) -> dict[str, float]:
        """Rate per anomaly type (everything but `minimum`)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if f.name != "minimum"}

    @property
    def enabled(self) -> bool:
        return self.minimum > 0 or any(v > 0 for v in self.rates().values())


@dataclass(frozen=True)
class FaultRates:
    """Data faults of real sources. None of them may change the expected alerts.

    duplicate: share of events sent twice (same event id). out_of_order: share of events held back 1-30 min.
    late_upload: chance per land checkpoint per day that it goes offline for hours and then uploads in a burst
    (southern posts twice as often). malformed: extra broken payloads per valid event (never replacing one).
    """

    duplicate: float = 0.01
    out_of_order: float = 0.02
    late_upload: float = 0.03
    malformed: float = 0.001

    @classmethod
    def none(cls) -> FaultRates:
        return cls(0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SimulationConfig:
    days: int
    seed: int
    scale: float = 1.0
    # Fixed default: same arguments give the same bytes; 60 days from it cross the 1 Jul 2026 rule change.
    start: date = date(2026, 6, 1)
    anomalies: AnomalyRates = field(default_factory=AnomalyRates)
    faults: FaultRates = field(default_factory=FaultRates)
    rules_path: Path | None = None
    checkpoints_path: Path | None = None
    pseudonym_key: bytes = field(default_factory=_default_pseudonym_key, repr=False)
    # Independent partitions of the population (own ids, documents, hosts and random streams). Fixed, so the
    # output does not depend on how many worker processes generate them; the files list shard after shard.
    shards: int = 4

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
