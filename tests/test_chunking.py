"""Specification of the batch-size policy (a pure function)."""

from fiber_jupyter.chunking import MAX_BATCH_SECONDS, MIN_BATCH_SECONDS, batch_size


def test_the_first_batch_of_a_call_is_a_single_item_probe():
    assert batch_size(remaining=10_000, workers=2, seconds_per_item=None) == 1


def test_tiny_tasks_are_batched_by_a_quarter_of_the_remainder_per_worker():
    assert batch_size(remaining=20_000, workers=2, seconds_per_item=1e-6) == 2_500


def test_batches_never_hold_more_than_the_maximum_batch_time():
    size = batch_size(remaining=4_000, workers=2, seconds_per_item=0.001)
    assert size == int(MAX_BATCH_SECONDS / 0.001)


def test_tasks_longer_than_the_maximum_batch_time_go_one_by_one():
    assert batch_size(remaining=40, workers=2, seconds_per_item=0.1) == 1


def test_near_the_end_batches_shrink_but_keep_the_minimum_batch_time():
    assert batch_size(remaining=100, workers=2, seconds_per_item=1e-6) == 100
    per_item = 1e-4
    assert batch_size(remaining=20, workers=2, seconds_per_item=per_item) == int(
        MIN_BATCH_SECONDS / per_item)


def test_a_batch_never_exceeds_what_remains_and_nothing_remains_gives_zero():
    assert batch_size(remaining=3, workers=8, seconds_per_item=1e-7) == 3
    assert batch_size(remaining=0, workers=8, seconds_per_item=None) == 0


def test_more_workers_mean_smaller_balanced_batches():
    few = batch_size(remaining=100_000, workers=2, seconds_per_item=1e-5)
    many = batch_size(remaining=100_000, workers=64, seconds_per_item=1e-5)
    assert many < few
