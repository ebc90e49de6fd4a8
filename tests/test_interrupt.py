"""Specification: an interrupt in a waiting caller cancels that call's work, and only it."""

from __future__ import annotations

import signal
import threading

import pytest

from fiber_jupyter import Progress, TaskCancelled

from . import tasks
from .conftest import EventRecorder


@pytest.fixture(autouse=True)
def sigint_raises_keyboard_interrupt():
    """SIGINT raises KeyboardInterrupt, as in a kernel or a terminal.

    A shell without job control starts background commands with SIGINT
    ignored, and Python then installs no handler; CI may run us that way.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_main_when(events: EventRecorder, started) -> threading.Thread:
    """Deliver SIGINT to the main thread once the call is under way (like Jupyter's stop)."""
    main = threading.main_thread().ident

    def interrupt() -> None:
        events.next(Progress, where=started)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    return thread


@pytest.mark.timeout(60)
def test_interrupting_map_drops_queued_tasks_and_interrupts_running_ones(make_pool):
    pool = make_pool(2, name="interrupt")
    events = EventRecorder(pool)
    interrupter = _interrupt_main_when(events, lambda p: p.done >= 2)
    with pytest.raises(TaskCancelled) as caught:
        pool.map(tasks.slow_square, [(x) for x in range(200)], chunksize=1)
    interrupter.join()
    message = str(caught.value)
    assert message.startswith("cancelled map(slow_square): ")
    assert "queued tasks dropped" in message
    assert "running tasks interrupted" in message
    assert isinstance(caught.value, KeyboardInterrupt)
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_a_long_running_task_is_interrupted_on_its_worker(make_pool):
    pool = make_pool(1, name="long")
    pid = pool.apply(tasks.getpid)
    events = EventRecorder(pool)
    interrupter = _interrupt_main_when(events, lambda p: p.total == 1)
    with pytest.raises(TaskCancelled, match=r"1 running tasks interrupted"):
        pool.apply(tasks.block_until_interrupted, (120,))
    interrupter.join()
    # The only worker is free again long before the 120 s task could have ended,
    # and it is the same process: the task was interrupted, not the worker killed.
    assert pool.apply_async(tasks.getpid).get(timeout=20) == pid
    assert pool.status().lost == 0


@pytest.mark.timeout(60)
def test_interrupting_one_call_leaves_other_calls_running(make_pool):
    pool = make_pool(2, name="two-calls")
    other = pool.map_async(tasks.slow_square, range(50), chunksize=1)
    events = EventRecorder(pool)
    interrupter = _interrupt_main_when(events, lambda p: p.label == "map(sleep_then_return)")
    with pytest.raises(TaskCancelled):
        pool.map(tasks.sleep_then_return, [5] * 4, chunksize=1)
    interrupter.join()
    assert other.get(timeout=30) == [x * x for x in range(50)]


@pytest.mark.timeout(60)
def test_interrupting_imap_cancels_the_rest_of_it(make_pool):
    pool = make_pool(2, name="imap-interrupt")
    events = EventRecorder(pool)
    interrupter = _interrupt_main_when(events, lambda p: p.done >= 3)
    seen = []
    with pytest.raises(TaskCancelled, match=r"cancelled imap\(slow_square\)"):
        for value in pool.imap(tasks.slow_square, range(500), chunksize=1):
            seen.append(value)
    interrupter.join()
    assert seen == [x * x for x in range(len(seen))]
    final = events.next(Progress, where=lambda p: p.finished)
    assert final.done < 500, "the rest of the imap must not run"
