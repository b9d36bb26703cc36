"""One shard of a run as records, for bulk loaders that work shard by shard (the warehouse benchmark).

`Simulation` merges every shard in one process; a loader that spreads the shards over worker processes
(`harness.scale`) takes them one at a time here. Shards are independent partitions of the population (own
travellers, ids, hosts, random streams), so a traveller's events are all in one shard, in publish order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from harness.simulator.config import SimulationConfig
from harness.simulator.generate import Engine, SimEvent


class ShardRun:
    """The events of shard `shard` of `config` (duplicates and malformed payloads as configured)."""

    def __init__(self, config: SimulationConfig, shard: int) -> None:
        if not 0 <= shard < config.shards:
            raise ValueError(f"shard {shard} is not one of the run's {config.shards} shards")
        self.engine = Engine(config, shard)

    @property
    def begin(self) -> datetime:
        """Local midnight (Asia/Almaty) starting the period, in UTC."""
        return self.engine.world.begin

    @property
    def end(self) -> datetime:
        """Local midnight after the last day of the period (exclusive), in UTC."""
        return self.engine.world.end

    def events(self) -> Iterator[SimEvent]:
        mat = self.engine.mat
        for em in self.engine.run():
            if em.event is None:
                yield SimEvent(em.publish_time, em.kind, None, em.raw, em.key)
            else:
                yield SimEvent(em.publish_time, em.kind, mat.record(em.event, em.received), None, em.key)
