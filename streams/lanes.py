"""How the matcher schedules released events: pieces of at most one batch, in lanes of disjoint partitions.

Lanes: chunks of different partitions share no traveller, state, watermark or deadline, so one lane's chunk can
be in the matching process while the worker sends out and commits what came back for the other's; worked one
after the other, the matching process waited idle for the worker between chunks.

Pieces: held events can pile up (a co-partition waited for) and be released at once; worked in one go they kept
the event loop busy for 20 s, Faust's fetcher did not poll within `max_poll_interval`, and the worker fell out of
its group for good (see docs/topology.md, idle consumer). Each lane yields between its pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

LANES = 2  # chunks of disjoint partitions the matcher has in the matching process at once
# A batch this small goes in one lane: there is nothing to send out worth overlapping, and live (1,000 events/s,
# batches of a few events since they no longer wait for commits) the second round trip to the matching process
# doubled the matcher's per-batch cost.
ONE_LANE_BELOW = 64

Work = Callable[[Sequence[Any]], Awaitable[None]]


def lanes_of(events: Sequence[Any], lanes: int = LANES, one_lane_below: int = ONE_LANE_BELOW) -> list[list[Any]]:
    """The lanes `events` are worked in: one below `one_lane_below`, else by partition modulo `lanes` (non-empty
    lanes only; each keeps its events' order)."""
    if len(events) < one_lane_below:
        return [list(events)] if events else []
    split: list[list[Any]] = [[] for _ in range(lanes)]
    for ev in events:
        split[ev.message.partition % lanes].append(ev)
    return [lane for lane in split if lane]


async def work_in_lanes(
    events: Sequence[Any],
    work: Work,
    *,
    chunk: int,
    after_chunk: Callable[[], None] = lambda: None,
    lanes: int = LANES,
    one_lane_below: int = ONE_LANE_BELOW,
) -> None:
    """`work` each lane's events in pieces of at most `chunk`, the lanes side by side; `after_chunk` after each."""

    async def lane(events: Sequence[Any]) -> None:
        for i in range(0, len(events), chunk):
            await work(events[i : i + chunk])
            after_chunk()
            await asyncio.sleep(0)

    split = lanes_of(events, lanes, one_lane_below)
    if len(split) == 1:
        await lane(split[0])
    elif split:
        await asyncio.gather(*(lane(events) for events in split))
