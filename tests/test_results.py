"""Specification of waiting for results with a waiting hook (fiber_jupyter.results)."""

import threading

import pytest

from fiber_jupyter import TaskCancelled, TimeoutError, results
from tests import tasks


@pytest.fixture
def hook_calls():
    """Installs a waiting hook that records the thread it runs in."""
    calls = []
    results.set_waiting_hook(lambda: calls.append(threading.current_thread().name))
    yield calls
    results.set_waiting_hook(None)


def test_the_hook_runs_in_the_thread_blocked_in_map(make_pool, hook_calls):
    pool = make_pool(1)
    assert pool.map(tasks.sleep_then_return, [0.3], chunksize=1) == [None]
    assert len(hook_calls) >= 2
    assert set(hook_calls) == {threading.current_thread().name}


def test_the_hook_runs_while_imap_waits_for_its_next_result(make_pool, hook_calls):
    pool = make_pool(1)
    assert list(pool.imap(tasks.sleep_then_return, [0.2, 0.2], chunksize=1)) == [None, None]
    assert len(hook_calls) >= 2


def test_timeouts_still_hold_with_a_hook(make_pool, hook_calls):
    pool = make_pool(1)
    with pytest.raises(TimeoutError):
        pool.apply_async(tasks.block_until_interrupted).get(timeout=0.2)
    with pytest.raises(TimeoutError):
        pool.imap(tasks.block_until_interrupted, [60]).next(timeout=0.2)


def test_an_interrupt_raised_by_the_hook_cancels_the_call(make_pool):
    pool = make_pool(1)

    def interrupt():
        raise KeyboardInterrupt

    results.set_waiting_hook(interrupt)
    try:
        with pytest.raises(TaskCancelled, match="cancelled map"):
            pool.map(tasks.block_until_interrupted, [60])
    finally:
        results.set_waiting_hook(None)
    assert pool.apply(tasks.square, (5,)) == 25
