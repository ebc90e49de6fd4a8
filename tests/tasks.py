"""Task functions for the tests, importable by worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time


def square(x):
    return x * x


def slow_square(x, seconds=0.02):
    time.sleep(seconds)
    return x * x


def slow_square_pair(pair):
    """``slow_square`` for imap: the item is the (x, seconds) pair."""
    return slow_square(*pair)


def sleep_then_return(seconds, value=None):
    time.sleep(seconds)
    return value


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def getpid(_=None):
    return os.getpid()


def die_on(x, poison, code=None):
    """Kill the worker (SIGKILL, or os._exit(code)) when ``x == poison``."""
    if x == poison:
        if code is None:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(code)
    return x


def die_on_pair(pair):
    """``die_on`` for imap: the item is the (x, poison) pair, returned when it survives."""
    die_on(*pair)
    return pair


def kill_self_once(x, marker_dir):
    """Kill the worker the first time item ``x`` runs; succeed when retried."""
    marker = os.path.join(marker_dir, f"ran-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def block_until_interrupted(seconds=120):
    """Sleep long: only an interrupt ends this early."""
    time.sleep(seconds)
    return "not interrupted"


def nbytes(buffer):
    return len(memoryview(buffer).cast("B"))


def echo(value):
    return value


def array_sum(array):
    return float(array.sum())


def make_bytes(n):
    return b"\x01" * n


def thread_count(_=None):
    return threading.active_count()


def big_result_or_die(x, poison):
    """A 64 MB result, still being sent when the next task (``poison``) kills the worker."""
    die_on(x, poison)
    return bytes(64 << 20)


def record_then_die(x, record_dir):
    """Leave a file per run, then kill the worker: how often did this task run?"""
    with open(os.path.join(record_dir, f"{x}-{os.getpid()}"), "w"):
        pass
    os.kill(os.getpid(), signal.SIGKILL)



def square_or_die_once_at_gate(x, gate, marker_dir):
    """Without a ``gate``, ``slow_square``; with one, die once (``kill_self_once``) when it exists.

    The test decides when the worker dies, and what it holds by then.
    """
    if gate is None:
        return slow_square(x)
    while not os.path.exists(gate):
        time.sleep(0.01)
    return kill_self_once(x, marker_dir)



def square_or_straggle(x, marker_dir, straggle_seconds=120):
    """``(x * x, pid)`` after 20 ms; but item 0, the first time, straggles.

    The straggler sleeps ``straggle_seconds`` unless interrupted, which leaves
    an ``interrupted`` file in ``marker_dir``; run again, it is quick. The pid
    tells a test which copy's result won.
    """
    first_run = os.path.join(marker_dir, "started")
    if x == 0 and not os.path.exists(first_run):
        open(first_run, "w").close()
        try:
            time.sleep(straggle_seconds)
        except BaseException:  # the worker's interrupt of a cancelled batch
            open(os.path.join(marker_dir, "interrupted"), "w").close()
            raise
    else:
        time.sleep(0.02)
    return x * x, os.getpid()


def spin(seconds):
    """Keep one core busy for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return seconds
