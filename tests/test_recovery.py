"""Specification: crashed and hung workers are replaced and no result is lost or repeated."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from fiber_jupyter import (BrokenPoolError, InitializerError, TaskRetried, WorkerLost,
                           WorkerLostError, WorkerReady)
from fiber_jupyter.backends import local
from fiber_jupyter.scheduler import MAX_START_FAILURES

from . import tasks
from .conftest import EventRecorder, wait_for


def test_sigkill_mid_map_requeues_its_tasks_and_every_result_arrives_once(make_pool):
    pool = make_pool(2, name="kill")
    events = EventRecorder(pool)
    result = pool.map_async(tasks.slow_square, range(60), chunksize=1)
    victim = events.next(WorkerReady)
    wait_for(lambda: pool.status().tasks_done >= 4, what="the map to be under way")
    os.kill(victim.pid, signal.SIGKILL)
    lost = events.next(WorkerLost)
    assert lost.worker_id == victim.worker_id
    assert lost.reason == "exit -9 (SIGKILL)"
    assert lost.exit_code == -9
    assert lost.requeued >= 1
    assert result.get(timeout=60) == [x * x for x in range(60)]
    retried = events.next(TaskRetried)
    assert retried.worker_id != victim.worker_id
    assert retried.lost_on == victim.worker_id
    assert retried.attempt == 2


def test_a_replacement_worker_starts_while_live_is_below_target(make_pool):
    pool = make_pool(2, name="replace")
    events = EventRecorder(pool)
    first = events.next(WorkerReady)
    second = events.next(WorkerReady)
    os.kill(first.pid, signal.SIGKILL)
    events.next(WorkerLost)
    replacement = events.next(WorkerReady)
    assert replacement.worker_id not in (first.worker_id, second.worker_id)
    wait_for(lambda: pool.status().live == 2)
    assert pool.status().lost == 1
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]


def test_a_task_that_keeps_killing_its_worker_fails_naming_the_task_and_exits(make_pool):
    pool = make_pool(2, max_retries=2)
    with pytest.raises(WorkerLostError) as caught:
        pool.starmap(tasks.die_on, [(x, 3) for x in range(6)], chunksize=1)
    message = str(caught.value)
    assert "task 3 of starmap(die_on)" in message
    assert "lost its worker 3 times" in message
    assert message.count("exit -9 (SIGKILL)") == 3
    assert caught.value.task == "task 3 of starmap(die_on)"
    assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]


def test_os_exit_in_a_task_is_reported_with_its_exit_code(make_pool):
    pool = make_pool(1, max_retries=0)
    with pytest.raises(WorkerLostError, match=r"exit 7"):
        pool.apply(tasks.die_on, (1, 1, 7))
    assert pool.apply(tasks.square, (3,)) == 9


def test_each_crash_is_reported_once_and_the_retried_tasks_succeed(make_pool, tmp_path):
    pool = make_pool(2, name="retry-once")
    events = EventRecorder(pool)
    items = [(x, str(tmp_path)) for x in range(4)]
    assert pool.starmap(tasks.kill_self_once, items, chunksize=1) == [0, 1, 4, 9]
    losses = [events.next(WorkerLost) for _ in range(4)]
    assert {lost.reason for lost in losses} == {"exit -9 (SIGKILL)"}
    assert len({lost.worker_id for lost in losses}) == 4
    assert pool.status().lost == 4


@pytest.mark.timeout(120)
def test_a_stopped_worker_is_detected_by_heartbeats_and_its_tasks_rerun(make_pool):
    pool = make_pool(2, name="sigstop", heartbeat_timeout=1.5)
    events = EventRecorder(pool)
    result = pool.map_async(tasks.slow_square, range(40), chunksize=1)
    victim = events.next(WorkerReady)
    wait_for(lambda: pool.status().tasks_done >= 2, what="the map to be under way")
    os.kill(victim.pid, signal.SIGSTOP)
    lost = events.next(WorkerLost, timeout=30)
    assert lost.worker_id == victim.worker_id
    assert lost.reason.startswith("no heartbeat for ")
    assert "(hung or stopped)" in lost.reason
    assert result.get(timeout=60) == [x * x for x in range(40)]


def test_a_task_exception_is_a_result_and_the_worker_survives(make_pool):
    pool = make_pool(1)
    pid = pool.apply(tasks.getpid)
    with pytest.raises(ZeroDivisionError):
        pool.apply(divmod, (1, 0))
    assert pool.apply(tasks.getpid) == pid
    assert pool.status().lost == 0


def test_tasks_queued_behind_a_crashing_task_are_not_blamed_for_its_crashes(make_pool):
    pool = make_pool(1, max_retries=1)
    results = pool.imap(tasks.die_on_pair, [(x, 0) for x in range(8)], chunksize=1)
    with pytest.raises(WorkerLostError) as caught:
        next(results)
    assert caught.value.task == "task 0 of imap(die_on_pair)"
    assert len(caught.value.exits) == 2
    assert list(results) == [(x, 0) for x in range(1, 8)]


def test_a_task_whose_result_was_still_being_sent_is_not_blamed_for_the_next_ones_crash(
        make_pool):
    """Task 0 had finished (its 64 MB result still in the send queue) when task 1 killed
    the worker: which of the two did it cannot be told, so neither is charged until one
    runs alone."""
    pool = make_pool(1, max_retries=0)
    with pytest.raises(WorkerLostError) as caught:
        pool.starmap(tasks.big_result_or_die, [(0, 1), (1, 1)], chunksize=1)
    assert caught.value.task == "task 1 of starmap(big_result_or_die)"


def test_tasks_lost_together_run_again_before_the_rest_of_the_queue(
        make_pool, tmp_path, monkeypatch):
    """A worker holding two batches dies: either may be to blame, so each must run
    alone. With no replacement worker coming, the surviving worker stops taking a
    second batch until it has run them, rather than leaving them for the end."""
    pool = make_pool(2, name="suspects")
    wait_for(lambda: pool.status().live == 2, what="both workers")
    monkeypatch.setattr(local, "worker_command",
                        lambda launch: [sys.executable, "-c", "raise SystemExit(3)"])
    events = EventRecorder(pool)
    gate = tmp_path / "gate"
    jobs = [(x, gate if x == 0 else None, tmp_path) for x in range(300)]
    result = pool.starmap_async(tasks.square_or_die_once_at_gate, jobs, chunksize=1)
    # Both workers were idle: each got two tasks at once, and task 0 holds its worker.
    wait_for(lambda: pool.status().tasks_done >= 2, what="the map to be under way")
    gate.touch()
    lost = events.next(WorkerLost)
    assert lost.requeued == 2
    retried = events.next(TaskRetried, where=lambda e: e.start == 0)
    assert pool.status().tasks_done < 150  # left for the end, it would run after 297
    assert retried.lost_on == lost.worker_id
    assert result.get(timeout=120) == [x * x for x in range(300)]


def test_once_a_call_failed_none_of_its_tasks_runs_again(make_pool, tmp_path):
    pool = make_pool(1, max_retries=0)
    with pytest.raises(WorkerLostError):
        pool.starmap(tasks.record_then_die, [(x, str(tmp_path)) for x in range(4)],
                     chunksize=1)
    runs = len(list(tmp_path.iterdir()))
    assert pool.map(tasks.square, range(3)) == [0, 1, 4]  # after anything left in the queue
    assert len(list(tmp_path.iterdir())) == runs
    assert pool.status().lost == runs


def _raise_in_initializer(message):
    raise RuntimeError(message)


def test_an_initializer_that_raises_breaks_the_pool_with_its_traceback(make_pool):
    pool = make_pool(2, initializer=_raise_in_initializer, initargs=("no GPU here",))
    with pytest.raises(BrokenPoolError) as caught:
        pool.map(tasks.square, range(4))
    assert isinstance(caught.value, InitializerError)
    assert "the pool's initializer raised in worker w" in str(caught.value)
    assert "RuntimeError: no GPU here" in str(caught.value)
    with pytest.raises(BrokenPoolError, match="is broken: the pool's initializer raised"):
        pool.apply(tasks.square, (2,))


def test_a_pool_whose_new_workers_cannot_start_keeps_working_with_those_it_has(
        make_pool, monkeypatch):
    pool = make_pool(1)
    wait_for(lambda: pool.status().live == 1, what="the first worker")
    monkeypatch.setattr(local, "worker_command",
                        lambda launch: [sys.executable, "-c", "raise SystemExit(3)"])
    recorder = EventRecorder(pool)
    pool.scale(2)
    failed = recorder.collect(WorkerLost, MAX_START_FAILURES)
    assert {lost.reason for lost in failed} == {"exit 3"}
    assert pool.status().state == "running"
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]


def test_workers_that_cannot_start_break_the_pool_instead_of_restarting_forever(
        make_pool, monkeypatch):
    monkeypatch.setattr(local, "worker_command",
                        lambda launch: [sys.executable, "-c", "raise SystemExit(3)"])
    pool = make_pool(2)
    with pytest.raises(BrokenPoolError) as caught:
        pool.map(tasks.square, range(4))
    message = str(caught.value)
    assert "5 workers in a row ended before connecting" in message
    assert "exit 3" in message
    assert "'python -m fiber_jupyter.worker' runs in the workers' environment" in message
