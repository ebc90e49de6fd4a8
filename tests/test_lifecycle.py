"""Specification: pools leave no process, thread or descriptor behind, however they end."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import psutil
import pytest

import fiber_jupyter

from . import tasks
from .conftest import EventRecorder, is_pid_alive, wait_for, worker_pids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resources():
    me = psutil.Process()
    return threading.active_count(), me.num_fds()


def test_close_then_join_lets_work_finish_and_stops_workers():
    pool = fiber_jupyter.Pool(2)
    result = pool.map_async(tasks.slow_square, range(20), chunksize=1)
    pool.close()
    pool.join()
    assert result.get(timeout=0) == [x * x for x in range(20)]
    assert pool.status().state == "stopped"
    assert worker_pids() == []


def test_terminate_fails_pending_calls_instead_of_leaving_them_waiting():
    pool = fiber_jupyter.Pool(1)
    pending = pool.map_async(tasks.sleep_then_return, [30] * 3, chunksize=1)
    pool.terminate()
    pool.join()
    with pytest.raises(fiber_jupyter.PoolTerminatedError, match="terminated before map"):
        pending.get(timeout=10)


def test_a_garbage_collected_pool_warns_and_stops_its_workers():
    pool = fiber_jupyter.Pool(2)
    pool.map(tasks.square, range(4))
    pids = worker_pids()
    assert len(pids) == 2
    with pytest.warns(ResourceWarning, match="unclosed running fiber_jupyter pool"):
        del pool
        gc.collect()
    wait_for(lambda: not any(is_pid_alive(p) for p in pids), what="workers to exit")


def _run_script(body: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_interpreter_exit_without_close_leaves_no_worker_behind():
    done = _run_script("""
        import json, fiber_jupyter
        from tests import tasks
        pool = fiber_jupyter.Pool(2)
        pids = sorted(set(pool.map(tasks.pid_after, [0.2] * 4, chunksize=1)))
        print(json.dumps(pids))
    """)
    assert done.returncode == 0, done.stderr
    pids = json.loads(done.stdout)
    assert len(pids) == 2
    wait_for(lambda: not any(is_pid_alive(p) for p in pids), what="workers to exit")


def test_workers_exit_when_the_master_is_killed():
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import json, sys, fiber_jupyter
            from tests import tasks
            pool = fiber_jupyter.Pool(2)
            pids = sorted(set(pool.map(tasks.pid_after, [0.2] * 4, chunksize=1)))
            print(json.dumps(pids), flush=True)
            sys.stdin.read()
        """)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True) as master:
        pids = json.loads(master.stdout.readline())
        master.send_signal(signal.SIGKILL)
    wait_for(lambda: not any(is_pid_alive(p) for p in pids), what="orphaned workers to exit")


def test_functions_and_classes_defined_in_main_after_the_pool_started_work():
    done = _run_script("""
        import fiber_jupyter
        pool = fiber_jupyter.Pool(2)
        pool.map(abs, [-1])

        OFFSET = 10

        class Point:
            def __init__(self, x):
                self.x = x

        def shifted(p):
            return Point(p.x + OFFSET)

        print([p.x for p in pool.map(shifted, [Point(i) for i in range(3)])])
        print(pool.apply(lambda a, b: a * b + OFFSET, (3, 4)))
        print(list(pool.imap(lambda v: -v, range(3))))
        pool.terminate()
        pool.join()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["[10, 11, 12]", "22", "[0, -1, -2]"]


def test_the_last_event_of_a_pool_says_how_it_closed():
    for ending, reason in (("close", "closing"), ("terminate", "terminating")):
        pool = fiber_jupyter.Pool(1)
        events = EventRecorder(pool)
        pool.map(tasks.square, range(3))
        getattr(pool, ending)()
        pool.join()
        assert events.next(fiber_jupyter.PoolClosed).reason == reason


def test_terminate_reports_every_worker_stopped_and_counts_none_live():
    pool = fiber_jupyter.Pool(3)
    events = EventRecorder(pool)
    pool.map_async(tasks.sleep_then_return, [30] * 6, chunksize=1)
    wait_for(lambda: pool.status().busy == 3, what="three busy workers")
    pool.terminate()
    pool.join()
    assert len({e.worker_id for e in events.collect(fiber_jupyter.WorkerStopped, 3)}) == 3
    status = pool.status()
    assert (status.live, status.pending, status.busy, status.lost) == (0, 0, 0, 0)


@pytest.mark.timeout(120)
def test_calls_racing_with_terminate_from_another_thread_fail_instead_of_hanging():
    pool = fiber_jupyter.Pool(2)
    outcomes = []

    def keep_calling() -> None:
        try:
            while True:
                pool.map(tasks.square, range(50))
        except (fiber_jupyter.FiberError, ValueError) as exc:
            outcomes.append(exc)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    wait_for(lambda: pool.status().tasks_done >= 200, what="the caller to be calling")
    pool.terminate()
    pool.join()
    caller.join(timeout=60)
    assert not caller.is_alive(), "a call racing with terminate must not wait forever"
    assert len(outcomes) == 1
