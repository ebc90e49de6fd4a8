"""Specification: the pool converges to its target size at any time, without losing work."""

from __future__ import annotations

import threading

import pytest

from fiber_jupyter import Progress, Scaled, WorkerStopped

from . import tasks
from .conftest import EventRecorder, wait_for


@pytest.mark.timeout(180)
def test_scale_2_to_8_to_1_during_a_map_gives_the_serial_answer(make_pool):
    pool = make_pool(2, name="elastic")
    events = EventRecorder(pool)
    result = pool.map_async(tasks.slow_square, range(400), chunksize=1)
    events.next(Progress, where=lambda p: p.done >= 10)
    pool.scale(8)
    events.next(Scaled, where=lambda s: s.live == 8)
    assert not result.ready()
    pool.scale(1)
    events.next(Scaled, where=lambda s: s.target == 1 and s.live == 1 and s.pending == 0)
    assert result.get(timeout=120) == [x * x for x in range(400)]
    assert pool.status().lost == 0
    assert len({e.worker_id for e in events.collect(WorkerStopped, 7)}) == 7


@pytest.mark.timeout(120)
def test_scale_from_another_thread_while_the_caller_blocks_in_map(make_pool):
    pool = make_pool(1, name="threaded")
    events = EventRecorder(pool)

    def grow_when_started() -> None:
        events.next(Progress, where=lambda p: p.done >= 1)
        pool.scale(4)

    grower = threading.Thread(target=grow_when_started)
    grower.start()
    pids = set(pool.map(tasks.pid_after, [0.05] * 120, chunksize=1))
    grower.join()
    assert len(pids) >= 2, "workers started mid-map must take tasks"
    assert pool.status().target == 4


def test_new_workers_take_tasks_as_soon_as_they_connect(make_pool):
    pool = make_pool(1, name="late-joiners")
    result = pool.map_async(tasks.pid_after, [0.05] * 100, chunksize=1)
    wait_for(lambda: pool.status().tasks_done >= 2)
    pool.scale(3)
    assert len(set(result.get(timeout=60))) == 3


def test_scale_down_stops_idle_workers_first(make_pool):
    pool = make_pool(3, name="shrink")
    events = EventRecorder(pool)
    wait_for(lambda: pool.status().live == 3)
    busy = pool.apply_async(tasks.pid_after, (1.0,))
    wait_for(lambda: pool.status().busy == 1)
    pool.scale(1)
    stopped = events.collect(WorkerStopped, 2)
    busy_pid = busy.get(timeout=30)
    assert busy.ready()
    assert busy_pid in {p for p in _pids(pool)}
    assert len({s.worker_id for s in stopped}) == 2
    assert pool.status().live == 1


def _pids(pool):
    return {pool.apply(tasks.getpid) for _ in range(5)}


def test_scale_up_again_keeps_draining_workers_instead_of_starting_new_ones(make_pool):
    pool = make_pool(2, name="undrain")
    events = EventRecorder(pool)
    wait_for(lambda: pool.status().live == 2)
    both_busy = pool.map_async(tasks.pid_after, [0.5, 0.5], chunksize=1)
    wait_for(lambda: pool.status().busy == 2)
    pool.scale(1)
    # Taken by the scheduler: one busy worker is now draining, still counted live.
    events.next(Scaled, where=lambda s: s.target == 1)
    pool.scale(2)
    original = set(both_busy.get(timeout=30))
    assert len(original) == 2
    wait_for(lambda: pool.status().live == 2 and pool.status().pending == 0)
    # Had the draining worker been stopped, a new one (a new pid) would serve now.
    assert set(pool.map(tasks.pid_after, [0.05] * 20, chunksize=1)) == original
    assert pool.status().lost == 0


def test_a_new_pool_starts_its_workers_before_any_call(make_pool):
    # A long heartbeat period means no periodic wakeup could start them instead.
    pool = make_pool(2, heartbeat_timeout=600)
    events = EventRecorder(pool)
    events.next(Scaled, where=lambda s: s.live == 2, timeout=30)
    assert pool.status().live == 2
