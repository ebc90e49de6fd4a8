"""Specification: with the queue empty and workers idle, a straggling task also runs on an
idle worker; the first result wins and the other copy is cancelled.

Speculation is on by default and can be switched off per pool and per call.
"""

from __future__ import annotations

import pytest

from fiber_jupyter import TaskSpeculated, WorkerReady

from . import tasks
from .conftest import EventRecorder, wait_for


def _straggling_map(pool, marker_dir, straggle_seconds=120, **options):
    """20 tasks of 20 ms, except that task 0 straggles the first time it runs."""
    jobs = [(x, str(marker_dir), straggle_seconds) for x in range(20)]
    return pool.starmap_async(tasks.square_or_straggle, jobs, chunksize=1, **options)


def _pids(pool):
    pids = {}
    pool.events.subscribe(lambda e: isinstance(e, WorkerReady)
                          and pids.setdefault(e.worker_id, e.pid))
    return pids


@pytest.mark.timeout(60)
def test_a_straggler_is_copied_to_an_idle_worker_and_the_first_result_wins(make_pool, tmp_path):
    pool = make_pool(2, name="speculative")
    events, pids = EventRecorder(pool), _pids(pool)
    results = _straggling_map(pool, tmp_path).get(timeout=30)
    assert [value for value, _ in results] == [x * x for x in range(20)]
    copied = events.next(TaskSpeculated, where=lambda e: e.start == 0)
    assert copied.stop == 1 and copied.worker_id != copied.running_on
    assert copied.seconds > 3 * copied.typical
    assert results[0][1] == pids[copied.worker_id]
    wait_for(lambda: (tmp_path / "interrupted").exists(), what="the original to be cancelled")
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["pool", "call"])
def test_switched_off_the_straggler_runs_alone_to_its_end(make_pool, tmp_path, where):
    """A copy would be due 0.1 s after the queue emptied, long before the 3 s straggler ends."""
    pool = make_pool(2, speculate=where != "pool")
    events = EventRecorder(pool)
    call = {"speculate": False} if where == "call" else {}
    results = _straggling_map(pool, tmp_path, straggle_seconds=3, **call).get(timeout=30)
    assert [value for value, _ in results] == [x * x for x in range(20)]
    assert not any(isinstance(e, TaskSpeculated) for e in events.seen)
    assert not (tmp_path / "interrupted").exists()
