"""Processor: registrations keyed by address -> FICTITIOUS_ADDRESS alerts (too many foreigners at one address).

The shell around `streams.matching.Matching.check_addresses` (run by the matching process, as for the matcher).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from faust.types import EventT

from shekara import metrics
from shekara.logs import get_logger
from streams.processor import Processor, raw

log = get_logger(__name__)


class AddressChecker(Processor):
    """Each batch: stored address states in, alerts and new states out, then the commit."""

    async def _process(self, events: Sequence[EventT]) -> None:
        events = self.admit(events)
        if not events:
            return
        now = datetime.now(UTC)
        for ev in events:
            self.partitions.remember(ev)
        messages = raw(events)
        stored = self.store.get_many({(m[1], m[3]) for m in messages if m[3] is not None})
        checked = await self.matching.check_addresses(messages, stored, now)
        self.stats.address_events += len(events)
        metrics.events_in(ev.message.topic for ev in events)
        for partition, error, affected in checked.failures:
            log.error("address check failed", partition=partition, error=error, events=affected)
        for index, stage, reason in checked.rejected:
            self.dead(events[index], stage, reason, None, now)
        self.send(checked.alerts)
        await self.submit(self.store.stage(checked.states), events)
