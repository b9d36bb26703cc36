"""How the matcher schedules released events (`streams.lanes`): pieces of one batch, lanes of disjoint partitions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from streams.lanes import lanes_of, work_in_lanes


def _events(partitions: Sequence[int]) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(partition=p, offset=i)) for i, p in enumerate(partitions)]


def test_a_small_batch_goes_in_one_lane_in_its_order() -> None:
    events = _events([0, 1, 2, 3])
    assert lanes_of(events, lanes=2, one_lane_below=64) == [events]
    assert lanes_of([], lanes=2, one_lane_below=64) == []


def test_a_large_batch_is_split_by_partition_and_each_lane_keeps_its_order() -> None:
    events = _events([0, 1, 2, 3, 1, 0, 2])
    split = lanes_of(events, lanes=2, one_lane_below=1)
    assert [[e.message.offset for e in lane] for lane in split] == [[0, 2, 5, 6], [1, 3, 4]]
    assert all(len({e.message.partition % 2 for e in lane}) == 1 for lane in split)  # no partition in two lanes
    even = lanes_of(_events([0, 2, 4]), lanes=2, one_lane_below=1)
    assert [[e.message.offset for e in lane] for lane in even] == [[0, 1, 2]]  # no empty lane


def test_pieces_of_at_most_a_chunk_and_the_lanes_overlap() -> None:
    async def run() -> tuple[list[list[int]], int, int]:
        pieces: list[list[int]] = []
        busy = peak = 0
        worked: list[int] = []

        async def work(chunk: Sequence[Any]) -> None:
            nonlocal busy, peak
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.01)  # a round trip to the matching process
            pieces.append([e.message.offset for e in chunk])
            busy -= 1

        await work_in_lanes(
            _events([0, 1] * 5), work, chunk=2, after_chunk=lambda: worked.append(1), lanes=2, one_lane_below=4
        )
        return pieces, peak, len(worked)

    pieces, peak, after = asyncio.run(run())
    assert all(len(p) <= 2 for p in pieces) and sorted(o for p in pieces for o in p) == list(range(10))
    assert peak == 2  # one lane's piece was in work while the other's was
    assert after == len(pieces) == 6  # 3 pieces per lane of 5, each followed by `after_chunk`
