"""Task functions of the bad-input benchmark, each one mistake a user makes.

A module of their own so that workers import them as ``bench.bad_input_tasks``
(``bench.bad_input`` runs as ``__main__``, whose functions would be pickled by
value).
"""

import contextlib
import os
import resource
import sys
import threading

import psutil


def square(x):
    """The task of the check that a pool still works after a mistake."""
    return x * x


def return_a_lock(_=None):
    """A result that cannot be pickled."""
    return threading.Lock()


class HoldsALock(Exception):
    """Its arguments hold a lock, so it cannot be pickled to travel back to the master."""

    def __str__(self):
        return self.args[0]


def raise_holding_a_lock(x):
    raise HoldsALock(f"bad item {x}", threading.Lock())


class NeedsCode(Exception):
    """Pickles fine, but unpickling calls ``NeedsCode(message)`` without ``code``."""

    def __init__(self, message, *, code):
        super().__init__(message)
        self.code = code


def raise_needs_code(x):
    raise NeedsCode(f"bad item {x}", code=7)


def call_sys_exit(code):
    sys.exit(code)


def call_os_exit(code):
    os._exit(code)


@contextlib.contextmanager
def _address_space_of_the_machines_memory():
    """Make the kernel refuse, before a page is touched, what memory cannot hold.

    Whatever the machine's overcommit policy, asking for more than this limit
    fails at once with MemoryError, so these tasks never fill a shared machine.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (psutil.virtual_memory().total, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _twice_the_memory():
    return 2 * psutil.virtual_memory().total


def build_a_result_larger_than_memory(_=None):
    with _address_space_of_the_machines_memory():
        return bytearray(_twice_the_memory())


class LargerThanMemoryWhenPickled:
    """A result that fits, but whose pickle would not."""

    def __repr__(self):
        return "<LargerThanMemoryWhenPickled>"

    def __reduce__(self):
        with _address_space_of_the_machines_memory():
            return (bytearray, (bytearray(_twice_the_memory()),))


def return_a_result_larger_than_memory_when_pickled(_=None):
    return LargerThanMemoryWhenPickled()
