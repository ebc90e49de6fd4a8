"""Specification of what a pool tells about itself: workers() and call observers."""

import threading

import pytest

from fiber_jupyter import CallStarted
from tests import tasks
from tests.conftest import EventRecorder, is_pid_alive, wait_for


def test_workers_lists_each_worker_with_its_state_and_process(make_pool):
    pool = make_pool(3)
    wait_for(lambda: pool.status().live == 3, what="3 live workers")
    workers = pool.workers()
    assert sorted(w.state for w in workers) == ["ready"] * 3
    assert len({w.worker_id for w in workers}) == 3
    assert all(is_pid_alive(w.pid) and w.tasks == 0 for w in workers)


def test_workers_counts_the_tasks_each_one_holds(make_pool):
    pool = make_pool(1)
    wait_for(lambda: pool.status().live == 1, what="a live worker")
    result = pool.map_async(tasks.block_until_interrupted, [60, 60, 60], chunksize=1)
    wait_for(lambda: pool.status().tasks_running, what="running tasks")
    [worker] = pool.workers()
    assert worker.tasks == 2, "one task running, one queued on the worker (credit 2)"
    pool.terminate()
    assert not result.successful()


def test_workers_of_a_stopped_pool_is_empty(make_pool):
    pool = make_pool(1)
    pool.terminate()
    pool.join()
    assert pool.workers() == []


def test_call_observers_run_in_the_calling_thread_before_the_call_runs(make_pool):
    pool = make_pool(1)
    seen = []
    pool.on_call(lambda call: seen.append((call, threading.current_thread().name,
                                           pool.status().tasks_done)))
    pool.map(tasks.square, range(5))
    [(call, thread, done_before)] = seen
    assert (call.label, call.total, call.pool) == ("map(square)", 5, pool.name)
    assert thread == threading.current_thread().name
    assert done_before == 0


def test_a_failing_call_observer_is_logged_and_the_call_still_runs(make_pool, caplog):
    pool = make_pool(1)

    def broken(call):
        raise RuntimeError("observer bug")

    pool.on_call(broken)
    assert pool.apply(tasks.square, (4,)) == 16
    assert "observer bug" in caplog.text


def test_every_call_is_announced_as_an_event_before_its_progress(make_pool):
    pool = make_pool(1)
    recorder = EventRecorder(pool)
    pool.starmap(tasks.square, [(1,), (2,)])
    started = recorder.next(CallStarted)
    assert (started.label, started.total) == ("starmap(square)", 2)


@pytest.mark.parametrize("call, label", [
    (lambda pool: pool.map(tasks.square, [1]), "map(square)"),
    (lambda pool: pool.apply(tasks.square, (1,)), "apply(square)"),
    (lambda pool: list(pool.imap(tasks.square, [1])), "imap(square)"),
    (lambda pool: list(pool.imap_unordered(tasks.square, [1])), "imap_unordered(square)"),
])
def test_a_call_is_labelled_with_the_method_that_made_it(make_pool, call, label):
    pool = make_pool(1)
    recorder = EventRecorder(pool)
    call(pool)
    assert recorder.next(CallStarted).label == label
