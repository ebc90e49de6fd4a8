"""fiber_jupyter.Pool behaves like multiprocessing.Pool, as CPython's own Pool tests check.

Specified here, after ``_TestPool``, ``_TestPoolWorkerErrors`` and
``_TestPoolWorkerLifetime`` of CPython's ``test/_test_multiprocessing.py``:

- every call form (apply, map, starmap, imap, imap_unordered and the async
  forms) returns what the built-in ``map``/``itertools.starmap`` would, with
  and without a chunksize, also for empty input and for lambdas and closures;
- callbacks run before ``wait()``/``get()`` return; ``get(timeout)`` raises
  ``multiprocessing.TimeoutError`` and leaves the task running;
- an input iterable that raises ends the call with that very exception (not
  wrapped), after the results of the whole chunks before it for ``imap``;
- a task's exception comes back as itself, with the worker's traceback as a
  ``multiprocessing.pool.RemoteTraceback`` cause; an unpicklable argument or
  result fails its call (``MaybeEncodingError`` for results), never the pool;
- lifecycle: invalid sizes raise ValueError, the context manager terminates,
  ``terminate()`` does not wait for queued work, ``close(); join()`` waits for
  running work, a collected running pool warns and still shuts down;
- ``maxtasksperchild`` replaces workers and never makes ``join()`` hang.

Where CPython reads private state (``p._pool``) these tests use
``pool.status()``, task results (worker pids) or the pool's events instead.
"""

from __future__ import annotations

import collections
import errno
import gc
import itertools
import multiprocessing
import multiprocessing.pool
import os
import select
import threading
import time
import traceback
import weakref
from pathlib import Path

import pytest

import fiber_jupyter
from .conftest import is_pid_alive, wait_for

# How long a task may wait at a gate before giving up, so that a failed test
# never leaves a worker blocked for good.
GATE_LIMIT_MS = 60_000
# A task that would outlive any test run.
FOREVER = 300.0


# Tasks (module level, so workers import them by reference) -------------------

def sqr(x, wait=0.0):
    time.sleep(wait)
    return x * x


def mul(x, y):
    return x * y


def identity(x):
    return x


def square_and_pid(x):
    return x * x, os.getpid()


def raising():
    raise KeyError("key")


def return_a_lock():
    # CPython returns a lambda here; cloudpickle carries lambdas, so the
    # unpicklable result of this port is a lock.
    return threading.Lock()


def raise_runtime_error_123():
    raise RuntimeError(123)  # the worker raised this


def raise_runtime_error_foo():
    raise RuntimeError("foo")


def wait_at_gate(path, value=None):
    """Block until the test opens the gate (a named pipe), then return ``value``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # Readable (hang-up) once a writer has come and gone; nothing before that.
        if not poller.poll(GATE_LIMIT_MS):
            raise RuntimeError(f"the test never opened the gate {path}")
    finally:
        os.close(fd)
    return value


def raise_large_value_error(hold):
    """Raise at once, or (``hold`` = (gate, marker)) after the gate opens, leaving a marker."""
    if hold is not None:
        gate_path, marker_path = hold
        wait_at_gate(gate_path)
        Path(marker_path).write_text("finished")
    raise ValueError("x" * 1024 ** 2)


class CountedObject:
    n_instances = 0

    def __new__(cls):
        cls.n_instances += 1
        return object.__new__(cls)

    def __del__(self):
        type(self).n_instances -= 1


class SayWhenError(ValueError):
    pass


def exception_throwing_generator(total, when):
    if when == -1:
        raise SayWhenError("Somebody said when")
    for i in range(total):
        if i == when:
            raise SayWhenError("Somebody said when")
        yield i


class SpecialIterable:
    """Claims a length, but raises on the first item."""

    def __iter__(self):
        return self

    def __next__(self):
        raise SayWhenError

    def __len__(self):
        return 1


# Helpers -----------------------------------------------------------------------

class Gate:
    """A named pipe that a task (``wait_at_gate``) blocks on until the test releases it.

    ``wait_until_reached`` returns once a task waits at the gate and keeps it
    shut; ``release`` lets the task go on.
    """

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = str(path)
        self._writer = None

    def wait_until_reached(self, timeout: float = 30.0) -> None:
        if self._writer is None:
            self._writer = wait_for(self._open_writer, timeout, what=f"a task at {self.path}")[0]

    def release(self) -> None:
        self.wait_until_reached()
        os.close(self._writer)
        self._writer = None

    def close(self) -> None:
        if self._writer is None:
            opened = self._open_writer()  # let a task already waiting go
            self._writer = opened[0] if opened else None
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None

    def _open_writer(self):
        try:
            return [os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)]
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody is waiting at the gate yet
                return None
            raise


@pytest.fixture
def make_gate(tmp_path):
    gates = []
    numbers = itertools.count()

    def make() -> Gate:
        gate = Gate(tmp_path / f"gate-{next(numbers)}")
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.close()


def results_until_error(iterator, limit=100):
    """Values an imap iterator yields before it raises SayWhenError."""
    values = []
    for _ in range(limit):
        try:
            values.append(iterator.next(timeout=30))
        except SayWhenError:
            return values
        except StopIteration:
            pytest.fail(f"the iterator ended after {values} without raising SayWhenError")
    pytest.fail(f"no SayWhenError within {limit} results")


def squares(n):
    return [x * x for x in range(n)]


# Call forms ---------------------------------------------------------------------

def test_apply_passes_positional_args_and_keyword_args(pool):
    assert pool.apply(sqr, (5,)) == 25
    assert pool.apply(sqr, (), {"x": 3}) == 9


def test_map_returns_results_in_input_order(pool):
    assert pool.map(sqr, list(range(10))) == squares(10)


def test_map_with_chunksize_returns_results_in_input_order(pool):
    assert pool.map(sqr, list(range(100)), chunksize=20) == squares(100)


def test_starmap_unpacks_each_tuple_into_arguments(pool):
    tuples = list(zip(range(10), range(9, -1, -1)))
    assert pool.starmap(mul, tuples) == list(itertools.starmap(mul, tuples))
    tuples = list(zip(range(100), range(99, -1, -1)))
    assert pool.starmap(mul, tuples, chunksize=20) == list(itertools.starmap(mul, tuples))


def test_starmap_async_get_returns_all_results(pool):
    tuples = list(zip(range(100), range(99, -1, -1)))
    assert pool.starmap_async(mul, tuples).get(timeout=30) == list(itertools.starmap(mul, tuples))


def test_map_async_get_returns_all_results(pool):
    assert pool.map_async(sqr, list(range(10))).get(timeout=30) == squares(10)


def test_lambdas_and_closures_travel_by_value(pool):
    offset = 10

    def add_offset(x):
        return x + offset

    assert pool.map(lambda x: x * 3, range(4)) == [0, 3, 6, 9]
    assert pool.apply(add_offset, (5,)) == 15
    assert pool.starmap(lambda a, b: a - b + offset, [(5, 1), (1, 5)]) == [14, 6]


def test_map_async_callback_runs_before_wait_returns(pool):
    calls = []
    pool.map_async(int, ["1"], callback=calls.append, error_callback=calls.append).wait(30)
    assert calls == [[1]]


def test_map_async_error_callback_gets_the_task_exception_before_wait_returns(pool):
    calls = []
    pool.map_async(int, ["a"], callback=calls.append, error_callback=calls.append).wait(30)
    assert len(calls) == 1
    assert type(calls[0]) is ValueError
    assert str(calls[0]) == "invalid literal for int() with base 10: 'a'"


@pytest.mark.timeout(60)
def test_map_raises_the_pickling_error_of_an_unpicklable_argument(pool):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="^cannot pickle$"):
        pool.map(sqr, [Unpicklable()] * 10)


@pytest.mark.timeout(60)
def test_map_async_of_an_empty_list_with_chunksize_completes(pool):
    assert pool.map_async(sqr, [], chunksize=1).get(timeout=10) == []


# Input iterables that raise -------------------------------------------------------

@pytest.mark.parametrize("total, when", [(1, -1), (1, -1), (10, 3)],
                         ids=["at-start", "at-start-again", "in-the-middle"])
def test_map_raises_the_error_of_the_input_iterable(pool, total, when):
    with pytest.raises(SayWhenError, match="Somebody said when"):
        pool.map(sqr, exception_throwing_generator(total, when), 1)


def test_map_raises_the_error_of_an_iterable_that_claims_a_length(pool):
    for _ in range(2):
        with pytest.raises(SayWhenError):
            pool.map(sqr, SpecialIterable(), 1)


def test_imap_raises_an_input_error_at_the_start_on_first_next(pool):
    for _ in range(2):
        it = pool.imap(sqr, exception_throwing_generator(1, -1), 1)
        assert results_until_error(it) == []


@pytest.mark.parametrize("chunksize, expected", [(1, squares(3)), (2, squares(6)),
                                                 (4, squares(4))])
def test_imap_yields_the_whole_chunks_before_the_input_error_then_raises_it(
        pool, chunksize, expected):
    when = 3 if chunksize == 1 else 7
    it = pool.imap(sqr, exception_throwing_generator(20, when), chunksize)
    assert results_until_error(it) == expected


def test_imap_unordered_raises_an_input_error_at_the_start_on_first_next(pool):
    for _ in range(2):
        it = pool.imap_unordered(sqr, exception_throwing_generator(1, -1), 1)
        assert results_until_error(it) == []


@pytest.mark.parametrize("chunksize, when, expected", [(1, 3, squares(3)),
                                                       (2, 7, squares(6))])
def test_imap_unordered_yields_the_whole_chunks_before_the_input_error_then_raises_it(
        pool, chunksize, when, expected):
    it = pool.imap_unordered(sqr, exception_throwing_generator(20, when), chunksize)
    assert sorted(results_until_error(it)) == expected


# Waiting ------------------------------------------------------------------------------

def test_apply_async_get_returns_the_result_after_the_task_sleeps(pool):
    assert pool.apply_async(sqr, (7, 0.2)).get(timeout=30) == 49


def test_apply_async_get_waits_while_the_task_still_runs(pool, make_gate):
    gate = make_gate()
    res = pool.apply_async(wait_at_gate, (gate.path, 49))
    gate.wait_until_reached()
    assert not res.ready()
    gate.release()
    assert res.get(timeout=30) == 49
    assert res.ready() and res.successful()


def test_get_with_timeout_raises_timeout_error_and_the_task_goes_on(pool, make_gate):
    gate = make_gate()
    res = pool.apply_async(wait_at_gate, (gate.path, 36))
    gate.wait_until_reached()
    with pytest.raises(multiprocessing.TimeoutError) as info:
        res.get(timeout=0.05)
    assert isinstance(info.value, fiber_jupyter.TimeoutError)
    gate.release()
    assert res.get(timeout=30) == 36


def test_imap_yields_results_in_input_order(pool):
    assert list(pool.imap(sqr, list(range(10)))) == squares(10)
    it = pool.imap(sqr, list(range(10)))
    assert [next(it) for _ in range(10)] == squares(10)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_with_chunksize_100_yields_results_in_input_order(pool):
    it = pool.imap(sqr, list(range(1000)), chunksize=100)
    assert [next(it) for _ in range(1000)] == squares(1000)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_yields_every_result_once(pool):
    assert sorted(pool.imap_unordered(sqr, list(range(10)))) == squares(10)
    assert sorted(pool.imap_unordered(sqr, list(range(1000)), chunksize=100)) == squares(1000)


# Empty input ----------------------------------------------------------------------------

@pytest.mark.timeout(20)
def test_map_of_an_empty_iterable_returns_an_empty_list(pool):
    assert pool.map(sqr, []) == []


@pytest.mark.timeout(60)
def test_imap_and_imap_unordered_of_an_empty_iterable_yield_nothing(pool):
    assert list(pool.imap(sqr, [])) == []
    assert list(pool.imap_unordered(sqr, [])) == []


@pytest.mark.timeout(60)
def test_map_async_of_an_empty_iterable_gets_an_empty_list(pool):
    assert pool.map_async(sqr, []).get(timeout=10) == []


# Lifecycle -----------------------------------------------------------------------------------

@pytest.mark.parametrize("processes", [0, -1])
def test_pool_of_fewer_than_one_process_raises_value_error(processes):
    with pytest.raises(ValueError, match="processes must be a positive integer"):
        fiber_jupyter.Pool(processes)


def test_pool_of_three_processes_starts_three_workers(make_pool):
    p = make_pool(3)
    assert p.status().target == 3
    wait_for(lambda: p.status().live == 3, what="three live workers")


@pytest.mark.timeout(60)
def test_terminate_returns_without_running_10000_queued_long_tasks(make_pool):
    p = make_pool(3)
    result = p.map_async(time.sleep, [FOREVER] * 10_000, chunksize=1)
    p.terminate()
    p.join()
    with pytest.raises(fiber_jupyter.PoolTerminatedError):
        result.get(timeout=30)


def test_context_manager_terminates_so_later_calls_raise_value_error(make_pool):
    values = list(range(10))
    with make_pool(2) as p:
        assert p.map_async(sqr, values).get(timeout=30) == squares(10)
    p.join()
    with pytest.raises(ValueError, match="not running"):
        p.map_async(sqr, values)


def test_entering_a_terminated_pool_raises_value_error(make_pool):
    p = make_pool(1)
    with p:
        pass
    with pytest.raises(ValueError, match="not running"):
        with p:
            pass
    p.join()


@pytest.mark.timeout(60)
def test_garbage_collecting_a_running_pool_warns_and_shuts_it_down():
    p = fiber_jupyter.Pool(1)
    worker = p.apply(os.getpid)
    with pytest.warns(ResourceWarning, match="unclosed running fiber_jupyter pool"):
        del p
        gc.collect()
    wait_for(lambda: not is_pid_alive(worker), what="the collected pool's worker to exit")


def test_map_releases_its_arguments_once_done(pool):
    objs = [CountedObject() for _ in range(10)]
    refs = [weakref.ref(o) for o in objs]
    assert len(pool.map(identity, objs)) == 10
    del objs

    def all_released():
        gc.collect()
        return all(ref() is None for ref in refs) and CountedObject.n_instances == 0

    wait_for(all_released, what="map's arguments and result copies to be released")


# Errors in tasks ---------------------------------------------------------------------------

def test_task_exception_keeps_its_type_and_args_with_the_remote_traceback_as_cause(make_pool):
    with make_pool(1) as p:
        with pytest.raises(RuntimeError) as info:
            p.apply(raise_runtime_error_123)
    p.join()
    exc = info.value
    assert type(exc) is RuntimeError
    assert exc.args == (123,)
    assert isinstance(exc.__cause__, multiprocessing.pool.RemoteTraceback)
    assert "raise RuntimeError(123)  # the worker raised this" in exc.__cause__.tb
    printed = "".join(traceback.format_exception(exc))
    assert "raise RuntimeError(123)  # the worker raised this" in printed


def test_apply_raises_the_task_exception_unwrapped(make_pool):
    with make_pool(1) as p:
        with pytest.raises(RuntimeError, match="^foo$"):
            p.apply(raise_runtime_error_foo)
    p.join()


def test_error_of_the_input_iterable_is_not_wrapped_in_a_remote_traceback(make_pool):
    with make_pool(1) as p:
        with pytest.raises(SayWhenError) as info:
            p.map(sqr, exception_throwing_generator(1, -1), 1)
    p.join()
    assert type(info.value) is SayWhenError
    assert info.value.__cause__ is None


@pytest.mark.timeout(120)
def test_map_raises_the_first_task_exception_and_close_join_waits_for_running_tasks(
        make_pool, make_gate, tmp_path):
    gate, marker = make_gate(), tmp_path / "second-task-finished"
    p = make_pool(2)
    with pytest.raises(ValueError) as info:
        p.map(raise_large_value_error, [None, (gate.path, str(marker))])
    assert str(info.value) == "x" * 1024 ** 2
    p.close()
    joiner = threading.Thread(target=p.join, daemon=True)
    joiner.start()
    gate.release()  # fails unless the second task still runs after map() and close()
    joiner.join(timeout=60)
    assert not joiner.is_alive(), "join() hung after a failed map"
    assert marker.read_text() == "finished"


def test_apply_async_error_callback_receives_the_key_error(make_pool):
    p = make_pool(2)
    received = []
    res = p.apply_async(raising, error_callback=received.append)
    with pytest.raises(KeyError):
        res.get(timeout=30)
    assert len(received) == 1
    assert type(received[0]) is KeyError
    assert received[0].args == ("key",)
    p.close()
    p.join()


@pytest.mark.timeout(120)
def test_unpicklable_result_raises_maybe_encoding_error_20_times_and_the_pool_works_on(make_pool):
    p = make_pool(2)
    lost = []
    p.events.subscribe(lambda e: isinstance(e, fiber_jupyter.WorkerLost) and lost.append(e))
    for _ in range(20):
        received = []
        res = p.apply_async(return_a_lock, error_callback=received.append)
        with pytest.raises(multiprocessing.pool.MaybeEncodingError):
            res.get(timeout=30)
        [wrapped] = received
        assert isinstance(wrapped, multiprocessing.pool.MaybeEncodingError)
        assert wrapped.exc is not None and "cannot pickle" in wrapped.exc
        assert wrapped.value is not None and "_thread.lock" in wrapped.value
    assert p.map(sqr, range(5)) == squares(5)
    assert lost == []
    p.close()
    p.join()


# Worker lifetime -----------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_maxtasksperchild_replaces_each_worker_after_that_many_tasks(make_pool):
    p = make_pool(3, maxtasksperchild=10)
    results = [p.apply_async(square_and_pid, (i,)) for i in range(100)]
    outcomes = [res.get(timeout=60) for res in results]
    assert [value for value, _ in outcomes] == squares(100)
    tasks_per_pid = collections.Counter(pid for _, pid in outcomes)
    assert max(tasks_per_pid.values()) <= 10
    assert len(tasks_per_pid) >= 10
    wait_for(lambda: p.status().live == 3, what="the pool to be refilled to 3 workers")
    p.close()
    p.join()


@pytest.mark.timeout(120)
def test_close_and_join_with_maxtasksperchild_1_runs_every_pending_task(make_pool):
    p = make_pool(3, maxtasksperchild=1)
    results = [p.apply_async(sqr, (i, 0.3)) for i in range(6)]
    p.close()
    joiner = threading.Thread(target=p.join, daemon=True)
    joiner.start()
    joiner.join(timeout=30)
    assert not joiner.is_alive(), (
        f"join() hung; ready: {[r.ready() for r in results]}; {p.status()}")
    assert [res.get(timeout=1) for res in results] == squares(6)


@pytest.mark.parametrize("value", [0, -1, 0.5, "12"])
def test_invalid_maxtasksperchild_raises_value_error(value):
    with pytest.raises(ValueError, match="maxtasksperchild must be a positive integer"):
        fiber_jupyter.Pool(3, maxtasksperchild=value)
