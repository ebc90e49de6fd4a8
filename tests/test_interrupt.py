"""Specification: an interrupt in a waiting caller cancels that call's work, and only it.

At every stage of a call, and the pool works on afterwards:

- while the pool starts (its backend connecting): nothing is left behind;
- while the caller reads the input or pickles the function: nothing was
  submitted, so a plain ``KeyboardInterrupt``, and no task ever runs;
- while the tasks wait for a worker, running, or being iterated by ``imap``:
  ``TaskCancelled`` says what was dropped and what was interrupted;
- while finished results are unpickled: a plain ``KeyboardInterrupt``, and
  the results are still there for the next ``get()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import threading

import pytest

from fiber_jupyter import CallStarted, Progress, TaskCancelled, results
from fiber_jupyter.backends.local import LocalBackend

from . import tasks
from .conftest import EventRecorder, worker_pids


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


@contextlib.contextmanager
def _interrupt_the_wait_when(condition):
    """SIGINT from inside the caller's wait, once ``condition()`` holds (once).

    The pool's waiting hook runs in the thread blocked on a result, between
    slices of its wait, so the interrupt surely lands in the wait, where a
    user's lands, even when it must come right after the call was submitted.
    """
    fired = []

    def hook() -> None:
        if not fired and condition():
            fired.append(True)
            signal.raise_signal(signal.SIGINT)

    results.set_waiting_hook(hook)
    try:
        yield
    finally:
        results.set_waiting_hook(None)


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


# Tasks and helpers (module level: workers import them by reference) ------------------------

def _input_interrupted_at(n):
    """An input whose reading is interrupted at item ``n``, as a long generator's may be."""
    for x in range(2 * n):
        if x == n:
            signal.raise_signal(signal.SIGINT)
        yield x


class PicklingInterrupted:
    """A function whose pickling is interrupted, as one holding a large closure's may be."""

    def __call__(self, x):
        return x

    def __reduce__(self):
        signal.raise_signal(signal.SIGINT)
        return (PicklingInterrupted, ())


def _hold_until_unlocked(path):
    """Initializer: keep the worker from being ready until the test releases its lock."""
    with open(path) as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)


# Set in the master by a test; workers pickle results, only the master loads them.
_INTERRUPT_NEXT_LOAD = []


def _loaded(value):
    if _INTERRUPT_NEXT_LOAD:
        _INTERRUPT_NEXT_LOAD.pop()
        signal.raise_signal(signal.SIGINT)
    return value


class LoadedWithAnInterrupt:
    """A result whose unpickling in the caller is interrupted, as a large one's may be."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return (_loaded, (self.value,))


def square_loaded_with_an_interrupt(x):
    return LoadedWithAnInterrupt(x * x)


class InterruptedWhileStarting(LocalBackend):
    """A backend whose start is interrupted, as a slow connection to a cluster may be."""

    def __init__(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        super().__init__(*args, **kwargs)


# Stages of a call ----------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_an_interrupt_while_the_pool_starts_leaves_nothing_behind(make_pool):
    with pytest.raises(KeyboardInterrupt):
        make_pool(2, name="starting", backend=InterruptedWhileStarting)
    assert [t.name for t in threading.enumerate() if t.name.endswith("-starting")] == []
    assert worker_pids() == []
    assert make_pool(2, name="started").map(tasks.square, range(10)) == [
        x * x for x in range(10)]


SUBMISSIONS = {
    "reading the input": lambda pool: pool.map(tasks.square, _input_interrupted_at(1000)),
    "pickling the function": lambda pool: pool.map(PicklingInterrupted(), range(1000)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stage", sorted(SUBMISSIONS))
def test_an_interrupt_before_the_call_is_submitted_runs_nothing(make_pool, stage):
    pool = make_pool(2, name="submitting")
    events = EventRecorder(pool)
    with pytest.raises(KeyboardInterrupt) as caught:
        SUBMISSIONS[stage](pool)
    assert type(caught.value) is KeyboardInterrupt, "nothing was submitted: nothing to cancel"
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
    events.next(Progress, where=lambda p: p.finished)
    assert [call.label for call in events.of(CallStarted)] == ["map(square)"]


@pytest.mark.timeout(60)
def test_an_interrupt_while_the_tasks_wait_for_a_worker_drops_them_all(make_pool, tmp_path):
    gate = tmp_path / "gate"
    gate.touch()
    with open(gate) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        pool = make_pool(2, name="not-ready", initializer=_hold_until_unlocked,
                         initargs=(str(gate),))
        events = EventRecorder(pool)
        queued = lambda: pool.status().tasks_queued == 10  # noqa: E731
        with _interrupt_the_wait_when(queued), pytest.raises(TaskCancelled) as caught:
            pool.map(tasks.square, range(10))
        assert pool.status().live == 0
    assert str(caught.value) == ("cancelled map(square): 0 of 10 tasks done, "
                                 "10 queued tasks dropped, 0 running tasks interrupted")
    final = events.next(Progress, where=lambda p: p.finished)
    assert (final.total, final.done) == (10, 0)
    assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]


@pytest.mark.timeout(60)
def test_an_interrupt_while_results_are_unpickled_keeps_them_for_the_next_get(make_pool):
    pool = make_pool(2, name="collecting")
    result = pool.map_async(square_loaded_with_an_interrupt, range(10))
    result.wait(timeout=30)
    _INTERRUPT_NEXT_LOAD.append(True)
    with pytest.raises(KeyboardInterrupt) as caught:
        result.get(timeout=30)
    assert type(caught.value) is KeyboardInterrupt, "every task was done: nothing to cancel"
    try:
        values = result.get(timeout=30)
    except KeyboardInterrupt:
        pytest.fail("the interrupt was kept as the call's outcome")
    assert values == [x * x for x in range(10)]
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
