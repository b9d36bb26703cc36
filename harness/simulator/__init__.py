"""Traffic simulator with ground truth: deterministic border-crossing and registration traffic for Kazakhstan.

`simulate(config)` streams the messages sources would send (publish-time order); `simulate_with_truth` adds
the alerts docs/alerts.md yields for that history and the malformed payloads that must be rejected;
`write_files` writes a run to Avro container files plus ground_truth.jsonl; `publish` sends it to Kafka.
See docs/simulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.simulator.config import AnomalyRates, FaultRates, SimulationConfig
from harness.simulator.generate import SimEvent, Simulation, simulate, simulate_with_truth
from harness.simulator.output import SimSummary, write_files
from harness.simulator.truth import Expected

if TYPE_CHECKING:
    from harness.simulator.kafka import Progress
    from shekara.settings import Settings


def publish(
    config: SimulationConfig,
    settings: Settings,
    *,
    speed: float | None = None,
    progress: bool | Progress = False,
) -> SimSummary:
    """Send a run to Kafka: `harness.simulator.kafka.publish`, imported on use (it loads the Kafka client)."""
    from harness.simulator.kafka import publish as _publish

    return _publish(config, settings, speed=speed, progress=progress)


__all__ = [
    "AnomalyRates",
    "Expected",
    "FaultRates",
    "SimEvent",
    "SimSummary",
    "Simulation",
    "SimulationConfig",
    "publish",
    "simulate",
    "simulate_with_truth",
    "write_files",
]
