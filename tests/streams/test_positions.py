"""`streams.positions`: each source offset handed to a processor once; skipped offsets reported."""

from __future__ import annotations

from streams.positions import Hole, Positions

C, R = "crossings", "registrations"


def test_in_order_deliveries_are_all_kept() -> None:
    positions = Positions()
    positions.start_at({(C, 0): 10, (R, 0): 0})
    admitted = positions.admit([(C, 0, 10), (R, 0, 0), (C, 0, 11), (R, 0, 1)])
    assert admitted.keep == [0, 1, 2, 3]
    assert admitted.duplicates == 0 and admitted.holes == []
    assert positions.next_offset((C, 0)) == 12 and positions.next_offset((R, 0)) == 2


def test_a_redelivered_offset_is_dropped_within_and_across_batches() -> None:
    positions = Positions()
    positions.start_at({(C, 0): 5})
    first = positions.admit([(C, 0, 5), (C, 0, 6), (C, 0, 7)])
    # Faust re-delivers from the committed offset after a seek: 6 and 7 again, then new records.
    second = positions.admit([(C, 0, 6), (C, 0, 7), (C, 0, 8), (C, 0, 8)])
    assert first.keep == [0, 1, 2]
    assert second.keep == [2] and second.duplicates == 3
    assert second.holes == []


def test_an_offset_below_the_start_is_a_duplicate() -> None:
    positions = Positions()
    positions.start_at({(C, 1): 100})  # committed: 0..99 were processed and made durable before
    admitted = positions.admit([(C, 1, 99), (C, 1, 100)])
    assert admitted.keep == [1] and admitted.duplicates == 1


def test_a_skipped_offset_is_a_hole_and_the_records_after_it_are_kept() -> None:
    positions = Positions()
    positions.start_at({(R, 3): 79})
    admitted = positions.admit([(R, 3, 80), (R, 3, 81), (C, 3, 0)])
    assert admitted.holes == [Hole(R, 3, expected=79, got=80)]
    assert admitted.holes[0].skipped == 1
    assert admitted.keep == [0, 1, 2]
    assert positions.next_offset((R, 3)) == 82


def test_holes_are_per_topic_partition() -> None:
    positions = Positions()
    positions.start_at({(C, 0): 0, (C, 1): 0})
    admitted = positions.admit([(C, 0, 0), (C, 1, 3), (C, 0, 1), (C, 1, 4), (C, 1, 9)])
    assert admitted.holes == [Hole(C, 1, 0, 3), Hole(C, 1, 5, 9)]
    assert sum(h.skipped for h in admitted.holes) == 7


def test_a_partition_without_a_start_begins_at_its_first_delivery() -> None:
    positions = Positions()
    admitted = positions.admit([(C, 2, 40), (C, 2, 41), (C, 2, 40)])
    assert admitted.keep == [0, 1] and admitted.duplicates == 1 and admitted.holes == []


def test_start_at_replaces_what_was_known() -> None:
    positions = Positions()
    positions.start_at({(C, 0): 0, (C, 1): 0})
    positions.admit([(C, 0, 0), (C, 0, 1), (C, 1, 0)])
    # Reassigned: partition 1 went to another worker, partition 0 restarts from its commit (1).
    positions.start_at({(C, 0): 1})
    assert positions.next_offset((C, 1)) is None
    admitted = positions.admit([(C, 0, 1), (C, 0, 2)])
    assert admitted.keep == [0, 1] and admitted.duplicates == 0


def test_a_commit_past_the_start_moves_it_up_and_is_no_hole() -> None:
    # Events of the previous assignment acknowledged during the rebalance: the group committed 311 after start_at
    # read 309, and Faust's last seek starts the consumer at 311. 309 and 310 were processed, not lost.
    positions = Positions()
    positions.start_at({(C, 6): 309, (R, 6): 38})
    positions.advance({(C, 6): 311, (R, 6): 38})
    admitted = positions.admit([(C, 6, 311), (R, 6, 38)])
    assert admitted.keep == [0, 1] and admitted.holes == []


def test_a_commit_at_or_behind_what_is_expected_changes_nothing() -> None:
    positions = Positions()
    positions.start_at({(C, 0): 10})
    positions.admit([(C, 0, 10), (C, 0, 11), (C, 0, 12)])
    positions.advance({(C, 0): 11})  # a seek back to the commit: 11 and 12 come again, as duplicates
    admitted = positions.admit([(C, 0, 11), (C, 0, 12), (C, 0, 13)])
    assert admitted.keep == [2] and admitted.duplicates == 2 and admitted.holes == []


def test_a_commit_of_a_partition_not_started_is_left_to_its_first_delivery() -> None:
    positions = Positions()
    positions.advance({(C, 2): 50})
    assert positions.next_offset((C, 2)) is None


def test_a_skip_past_the_commit_is_still_a_hole() -> None:
    positions = Positions()
    positions.start_at({(C, 4): 315})
    positions.advance({(C, 4): 315})
    admitted = positions.admit([(C, 4, 320)])
    assert admitted.holes == [Hole(C, 4, 315, 320)]
