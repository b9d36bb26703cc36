"""What every component benchmark returns, so `shekara bench` can print one report and write it as JSON.

Each component exposes ``run(settings: Settings, quick: bool) -> list[BenchResult]`` in its own
module under ``harness.bench`` (``simulator``, ``producer``, ``processor``, ``sink``).
A figure is only meaningful beside its baseline measured in the same run: these machines are noisy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BenchResult:
    component: str  # "simulator", "producer", "processor", "sink", "query", "end-to-end"
    name: str  # what was measured, e.g. "events/s through one worker"
    value: float
    unit: str  # "events/s", "rows/s", "ms", "bytes"
    baseline_name: str | None = None  # e.g. "bare Faust stream.take() loop"
    baseline_value: float | None = None
    target: str | None = None  # the target in words, e.g. ">= 90 % of baseline"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d
