"""`shekara.collector.fewer_collections`: raised thresholds inside the block, the old ones restored after."""

from __future__ import annotations

import gc

import pytest

from shekara.collector import fewer_collections


def test_thresholds_are_raised_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_collections(123_456):
        assert gc.get_threshold() == (max(before[0], 123_456), 20, 100)
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
