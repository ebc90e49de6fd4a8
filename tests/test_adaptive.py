"""Specification: an adaptive pool's target follows its backlog, within bounds, without
flapping; scaling by hand switches it off."""

from __future__ import annotations

import pytest

from fiber_jupyter import Scaled, WorkerStarting
from fiber_jupyter.adaptive import Adaptation, AdaptSettings

from . import tasks
from .conftest import EventRecorder


def adaptation(minimum=2, maximum=64, idle_after=60.0, target_duration=5.0) -> Adaptation:
    return Adaptation(AdaptSettings(minimum, maximum, idle_after, target_duration))


def test_with_nothing_to_do_it_wants_the_minimum():
    assert adaptation(minimum=3).needed(0, 0.0) == 3


def test_it_wants_workers_enough_to_finish_the_backlog_in_the_target_duration():
    # 100 tasks of 1 s: 100 s of work, 5 s wanted: 20 workers.
    assert adaptation().needed(100, 100.0) == 20


def test_never_more_workers_than_outstanding_tasks_nor_than_the_maximum():
    assert adaptation().needed(10, 600.0) == 10
    assert adaptation(maximum=8).needed(100, 6000.0) == 8


def test_quick_tasks_do_not_grow_the_pool():
    assert adaptation().needed(1000, 1.0) == 2


def test_a_backlog_of_no_measured_work_grows_nothing():
    assert adaptation().needed(1000, 0.0) == 2


def test_it_grows_at_once():
    policy = adaptation()
    assert policy.target(current=2, outstanding_tasks=100, outstanding_seconds=100.0,
                         now=0.0) == 20


def test_a_target_outside_the_new_bounds_moves_inside_at_once():
    assert adaptation(minimum=2, maximum=4).target(8, 0, 0.0, now=0.0) == 4
    assert adaptation(minimum=3, maximum=8).target(1, 0, 0.0, now=0.0) == 3


def test_it_shrinks_only_after_a_surplus_lasting_idle_after():
    policy = adaptation(idle_after=60.0)
    assert policy.target(20, 0, 0.0, now=0.0) == 20
    assert policy.target(20, 0, 0.0, now=59.0) == 20
    assert policy.target(20, 0, 0.0, now=60.0) == 2


def test_new_work_during_the_surplus_restarts_the_wait():
    policy = adaptation(idle_after=60.0)
    policy.target(20, 0, 0.0, now=0.0)
    assert policy.target(20, 100, 100.0, now=30.0) == 20  # needed again: the surplus ended
    assert policy.target(20, 0, 0.0, now=70.0) == 20  # a new surplus, 0 s old
    assert policy.target(20, 0, 0.0, now=130.0) == 2


def test_it_says_when_a_surplus_may_end_and_nothing_while_there_is_none():
    policy = adaptation(idle_after=60.0)
    assert policy.decides_at() is None
    policy.target(20, 0, 0.0, now=5.0)
    assert policy.decides_at() == 65.0
    policy.target(20, 100, 100.0, now=30.0)
    assert policy.decides_at() is None


def test_it_shrinks_to_the_most_it_needed_during_the_surplus():
    policy = adaptation(idle_after=60.0)
    policy.target(20, 0, 0.0, now=0.0)
    policy.target(20, 40, 40.0, now=10.0)  # 8 needed
    assert policy.target(20, 0, 0.0, now=60.0) == 8


@pytest.mark.parametrize("settings, message", [
    ((0, 4), "adapt minimum must be a positive integer, got 0"),
    ((2, 1.5), "adapt maximum must be a positive integer, got 1.5"),
    ((8, 4), "adapt minimum 8 is larger than maximum 4"),
    ((1, 4, 0), "adapt idle_after must be a positive number of seconds, got 0"),
    ((1, 4, 60, "5"), "adapt target_duration must be a positive number of seconds, got '5'"),
])
def test_bad_settings_raise_value_error_naming_them(settings, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        AdaptSettings(*settings)


# A real pool ------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_an_adaptive_pool_grows_for_a_backlog_and_shrinks_back_when_idle(make_pool):
    pool = make_pool(1, name="adaptive")
    events = EventRecorder(pool)
    pool.adapt(1, 4, idle_after=1.0, target_duration=0.5)
    events.next(Scaled, where=lambda e: e.adapt == (1, 4))
    results = pool.starmap_async(tasks.slow_square, [(x, 0.3) for x in range(16)], chunksize=1)
    events.next(Scaled, where=lambda e: e.live == 4)
    assert results.get(timeout=60) == [x * x for x in range(16)]
    events.next(Scaled, where=lambda e: e.target == 1 and e.live == 1, timeout=60)
    # Workers still starting counted toward the target: no start beyond the maximum.
    started = {e.worker_id for e in events.seen if isinstance(e, WorkerStarting)}
    assert started - {"w0"} == {"w1", "w2", "w3"}
    assert pool.status().lost == 0


@pytest.mark.timeout(120)
def test_an_idle_pool_shrinks_when_its_idle_time_ends_not_at_its_next_heartbeat_check(make_pool):
    # Heartbeats every 100 s: nothing else would wake the pool's loop in the test's time.
    pool = make_pool(1, name="adaptive-idle", heartbeat_timeout=600)
    events = EventRecorder(pool)
    pool.adapt(1, 3, idle_after=0.2, target_duration=0.05)
    results = pool.starmap_async(tasks.slow_square, [(x, 0.05) for x in range(30)], chunksize=1)
    events.next(Scaled, where=lambda e: e.target == 3)
    assert results.get(timeout=60) == [x * x for x in range(30)]
    events.next(Scaled, where=lambda e: e.target == 1, timeout=30)


def test_scaling_by_hand_switches_adapting_off(make_pool):
    pool = make_pool(1)
    events = EventRecorder(pool)
    pool.adapt(1, 4)
    assert events.next(Scaled, where=lambda e: e.adapt == (1, 4)).target == 1
    pool.scale(2)
    scaled = events.next(Scaled, where=lambda e: e.adapt is None)
    assert scaled.target == 2
    assert pool.status().adapt is None
