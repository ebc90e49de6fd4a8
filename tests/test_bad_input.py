"""Bad input to fiber_jupyter.Pool: each mistake gets a clear error, and the pool works on.

Specified here, one mistake per test, each error's type and message asserted,
and after each a ``map`` on the same pool to show the mistake left it usable:

- sizes and chunk sizes that are not positive integers: ``ValueError``
  naming ``processes``, the pool size or ``chunksize`` and the bad value;
- a function that cannot be pickled fails the call at submission, in the
  caller; arguments that cannot be pickled fail at ``get()``; results that
  cannot be pickled fail as ``MaybeEncodingError`` naming the value;
- pool options out of range (``max_retries``, ``heartbeat_timeout``,
  ``start_timeout``, ``initializer``) fail the constructor, naming the option;
- an exception that cannot be sent back (its arguments cannot be pickled) or
  cannot be re-created in the master arrives as ``fiber_jupyter.RemoteError``
  naming its type and message, with the worker's traceback;
- a result too large for memory, whether building it or pickling it to send it
  back, fails that task (``MemoryError``, or ``MaybeEncodingError`` naming the
  value), with the task's own line in the worker's traceback;
- ``sys.exit()`` in a task is that task's ``SystemExit``, not the worker's end;
  ``os._exit(0)`` ends the worker, which is a loss like any other exit: the
  task fails with ``WorkerLostError`` naming it and its exits, never a result;
- a non-callable function is a ``TypeError``; calls after ``close()`` or
  ``terminate()`` and ``join()`` on a running pool are ``ValueError``;
- a function (or argument) from a module only the master can import fails
  that call with ``ModuleNotFoundError`` within bounded time.
"""

from __future__ import annotations

import multiprocessing.pool
import os
import re
import sys
import threading
import types

import pytest

import fiber_jupyter
from bench.bad_input_tasks import (build_a_result_larger_than_memory, call_os_exit,
                                   call_sys_exit, raise_holding_a_lock, raise_needs_code,
                                   return_a_lock,
                                   return_a_result_larger_than_memory_when_pickled)

MASTER_ONLY_MODULE = "fiber_master_only_module"


# Tasks (module level, so workers import them by reference); the mistakes
# themselves are the bad-input benchmark's, in bench.bad_input_tasks. ---------

def square(x):
    return x * x


def add(x, y):
    return x + y


def getpid():
    return os.getpid()


def assert_still_works(pool):
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]


@pytest.fixture
def master_only_module():
    """A module that exists only in this process's ``sys.modules``, never on disk."""
    module = types.ModuleType(MASTER_ONLY_MODULE)
    exec("def add_one(x):\n    return x + 1\n\n"
         "class Box:\n    def __init__(self, value):\n        self.value = value\n",
         module.__dict__)
    sys.modules[MASTER_ONLY_MODULE] = module
    yield module
    del sys.modules[MASTER_ONLY_MODULE]


# Sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("processes", [0, -3, 2.5, "4", True])
def test_pool_with_a_process_count_that_is_not_a_positive_integer_raises_value_error(
        pool, processes):
    message = f"processes must be a positive integer, got {processes!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fiber_jupyter.Pool(processes=processes)
    assert_still_works(pool)


@pytest.mark.parametrize("size", [0, -1, 1.5])
def test_scale_to_a_size_that_is_not_a_positive_integer_raises_value_error(pool, size):
    message = f"pool size must be a positive integer, got {size!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        pool.scale(size)
    assert pool.status().target == 4
    assert_still_works(pool)


@pytest.mark.parametrize("option, value, error, message", [
    ("max_retries", -1, ValueError, "max_retries must be a non-negative integer, got -1"),
    ("max_retries", 1.5, ValueError, "max_retries must be a non-negative integer, got 1.5"),
    ("heartbeat_timeout", 0, ValueError,
     "heartbeat_timeout must be a positive number of seconds, got 0"),
    ("start_timeout", "60", ValueError,
     "start_timeout must be a positive number of seconds, got '60'"),
    ("initializer", 42, TypeError, "initializer must be callable, got 42"),
])
def test_pool_option_out_of_range_fails_the_constructor_naming_the_option(
        pool, option, value, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        fiber_jupyter.Pool(1, **{option: value})
    assert_still_works(pool)


CHUNKED_CALLS = {
    "map": lambda p, c: p.map(square, [1, 2], chunksize=c),
    "map_async": lambda p, c: p.map_async(square, [1, 2], chunksize=c),
    "starmap": lambda p, c: p.starmap(add, [(1, 2)], chunksize=c),
    "starmap_async": lambda p, c: p.starmap_async(add, [(1, 2)], chunksize=c),
    "imap": lambda p, c: p.imap(square, [1, 2], chunksize=c),
    "imap_unordered": lambda p, c: p.imap_unordered(square, [1, 2], chunksize=c),
}


@pytest.mark.parametrize("call", sorted(CHUNKED_CALLS))
@pytest.mark.parametrize("chunksize", [0, -1, 1.5])
def test_chunksize_that_is_not_a_positive_integer_raises_value_error(pool, call, chunksize):
    message = f"chunksize must be a positive integer, got {chunksize!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        CHUNKED_CALLS[call](pool, chunksize)
    assert_still_works(pool)


# Pickling ----------------------------------------------------------------------------

@pytest.mark.parametrize("submit", [
    lambda p, f: p.apply_async(f, (1,)),
    lambda p, f: p.map_async(f, [1, 2]),
    lambda p, f: p.imap(f, [1, 2]),
], ids=["apply_async", "map_async", "imap"])
def test_unpicklable_function_raises_the_pickling_error_at_submission(pool, submit):
    lock = threading.Lock()
    with pytest.raises(TypeError, match=re.escape("cannot pickle '_thread.lock' object")):
        submit(pool, lambda x: (lock, x)[1])
    assert_still_works(pool)


@pytest.mark.timeout(60)
def test_unpicklable_argument_of_map_async_raises_the_pickling_error_at_get(pool):
    result = pool.map_async(square, [1, threading.Lock(), 3])
    with pytest.raises(TypeError, match=re.escape("cannot pickle '_thread.lock' object")):
        result.get(timeout=30)
    assert_still_works(pool)


@pytest.mark.timeout(60)
def test_unpicklable_argument_of_apply_async_raises_the_pickling_error_at_get(pool):
    result = pool.apply_async(square, (threading.Lock(),))
    with pytest.raises(TypeError, match=re.escape("cannot pickle '_thread.lock' object")):
        result.get(timeout=30)
    assert_still_works(pool)


@pytest.mark.timeout(60)
def test_unpicklable_result_raises_maybe_encoding_error_naming_the_value(pool):
    with pytest.raises(multiprocessing.pool.MaybeEncodingError) as info:
        pool.apply_async(return_a_lock).get(timeout=30)
    error = info.value
    assert isinstance(error, fiber_jupyter.ResultEncodingError)
    assert "_thread.lock object" in error.value
    assert "cannot pickle '_thread.lock' object" in error.exc
    assert str(error).startswith("Error sending result: ")
    assert "_thread.lock object" in str(error)
    assert_still_works(pool)


@pytest.mark.timeout(60)
def test_exception_that_cannot_be_unpickled_arrives_as_remote_error(pool):
    with pytest.raises(fiber_jupyter.RemoteError) as info:
        pool.apply_async(raise_needs_code, (5,)).get(timeout=30)
    error = info.value
    assert str(error) == "NeedsCode: bad item 5"
    assert (error.type_name, error.message) == ("NeedsCode", "bad item 5")
    assert 'raise NeedsCode(f"bad item {x}", code=7)' in error.traceback_text
    assert_still_works(pool)


@pytest.mark.timeout(60)
def test_exception_whose_arguments_cannot_be_pickled_arrives_as_remote_error(make_pool):
    p = make_pool(1)
    worker = p.apply_async(getpid).get(timeout=30)
    with pytest.raises(fiber_jupyter.RemoteError) as info:
        p.apply_async(raise_holding_a_lock, (5,)).get(timeout=30)
    error = info.value
    assert str(error) == "HoldsALock: bad item 5"
    assert (error.type_name, error.message) == ("HoldsALock", "bad item 5")
    assert 'raise HoldsALock(f"bad item {x}", threading.Lock())' in error.traceback_text
    assert p.apply_async(getpid).get(timeout=30) == worker
    assert_still_works(p)


# Results too large for memory ------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_result_too_large_to_build_is_that_tasks_memory_error(make_pool):
    p = make_pool(1)
    worker = p.apply_async(getpid).get(timeout=30)
    with pytest.raises(MemoryError) as info:
        p.apply_async(build_a_result_larger_than_memory).get(timeout=30)
    remote = str(info.value.__cause__)
    assert "in build_a_result_larger_than_memory" in remote
    assert "return bytearray(_twice_the_memory())" in remote
    assert p.apply_async(getpid).get(timeout=30) == worker
    assert_still_works(p)


@pytest.mark.timeout(60)
def test_a_result_too_large_to_send_back_is_maybe_encoding_error_naming_it(make_pool):
    p = make_pool(1)
    worker = p.apply_async(getpid).get(timeout=30)
    with pytest.raises(multiprocessing.pool.MaybeEncodingError) as info:
        p.map(return_a_result_larger_than_memory_when_pickled, range(3))
    assert str(info.value) == ("Error sending result: '<LargerThanMemoryWhenPickled>'. "
                               "Reason: 'MemoryError()'")
    assert p.apply_async(getpid).get(timeout=30) == worker
    assert_still_works(p)


# Tasks that misbehave ------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_sys_exit_in_a_task_is_that_tasks_system_exit_and_the_worker_survives(make_pool):
    p = make_pool(1)
    worker = p.apply_async(getpid).get(timeout=30)
    with pytest.raises(SystemExit) as info:
        p.apply_async(call_sys_exit, (3,)).get(timeout=30)
    assert info.value.code == 3
    assert p.apply_async(getpid).get(timeout=30) == worker
    assert_still_works(p)


@pytest.mark.timeout(60)
def test_os_exit_0_in_a_task_is_a_lost_worker_not_a_result(make_pool):
    p = make_pool(1, max_retries=1)
    with pytest.raises(fiber_jupyter.WorkerLostError) as info:
        p.apply_async(call_os_exit, (0,)).get(timeout=30)
    message = str(info.value)
    assert message.startswith("task 0 of apply(call_os_exit) failed: it lost its worker 2 times (")
    assert [exit.split(": ")[1] for exit in info.value.exits] == ["exit 0", "exit 0"]
    assert_still_works(p)


@pytest.mark.parametrize("submit", [
    lambda p: p.apply_async(42, (1,)),
    lambda p: p.map(42, [1, 2]),
    lambda p: p.map_async(42, []),
    lambda p: p.starmap(42, [(1, 2)]),
    lambda p: p.imap_unordered(42, [1]),
], ids=["apply_async", "map", "map_async-empty", "starmap", "imap_unordered"])
def test_non_callable_function_raises_type_error(pool, submit):
    with pytest.raises(TypeError, match="^42 is not callable$"):
        submit(pool)
    assert_still_works(pool)


# Pool state ------------------------------------------------------------------------------

CALLS = {
    "apply": lambda p: p.apply(square, (1,)),
    "apply_async": lambda p: p.apply_async(square, (1,)),
    "map": lambda p: p.map(square, [1]),
    "map_async": lambda p: p.map_async(square, [1]),
    "starmap": lambda p: p.starmap(add, [(1, 2)]),
    "starmap_async": lambda p: p.starmap_async(add, [(1, 2)]),
    "imap": lambda p: p.imap(square, [1]),
    "imap_unordered": lambda p: p.imap_unordered(square, [1]),
    "scale": lambda p: p.scale(2),
    "enter": lambda p: p.__enter__(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("stop", ["close", "terminate"])
def test_use_after_close_or_terminate_raises_value_error_saying_not_running(
        pool, make_pool, stop, call):
    p = make_pool(1)
    getattr(p, stop)()
    message = f"Pool not running: pool {p.name!r} was {stop}d; make a new one"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CALLS[call](p)
    assert_still_works(pool)


def test_join_on_a_running_pool_raises_value_error(pool):
    message = "Pool is still running: call close() or terminate() first"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pool.join()
    assert_still_works(pool)


# Code only the master can import -----------------------------------------------------------

@pytest.mark.timeout(90)
def test_function_from_a_module_workers_cannot_import_raises_module_not_found_error(
        make_pool, master_only_module):
    p = make_pool(2)
    result = p.apply_async(master_only_module.add_one, (1,))
    with pytest.raises(ModuleNotFoundError, match=f"No module named '{MASTER_ONLY_MODULE}'"):
        result.get(timeout=60)
    assert_still_works(p)


@pytest.mark.timeout(90)
def test_argument_of_a_class_workers_cannot_import_raises_module_not_found_error(
        make_pool, master_only_module):
    p = make_pool(2)
    result = p.map_async(repr, [master_only_module.Box(3)])
    with pytest.raises(ModuleNotFoundError, match=f"No module named '{MASTER_ONLY_MODULE}'"):
        result.get(timeout=60)
    assert_still_works(p)
