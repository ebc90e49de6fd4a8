"""Task functions of the crash-recovery and chaos benchmarks.

A module of their own so that workers import them as ``bench.recovery_tasks``
(``bench.recovery`` runs as ``__main__``, whose functions would be pickled by
value). Each returns ``square(x)``, so the benchmark can check a map against
the serial answer without sleeping through it again.
"""

import os
import socket
import time

TASK_SECONDS = 0.05


def square(x):
    """The answer of every task below, computed without the wait."""
    return x * x


def slow_square(x):
    """A 50 ms task."""
    time.sleep(TASK_SECONDS)
    return square(x)


def square_after(x, seconds):
    """Sleep ``seconds``, then answer: the mixed-length task of the chaos benchmark."""
    time.sleep(seconds)
    return square(x)


_slowdown = None


def square_after_slowed(x, seconds, slowed):
    """``square_after``, but ten times slower (or as the file says) on one worker.

    ``slowed`` names a file holding "PID FACTOR": the speculation benchmark's
    slow node, read once per process.
    """
    global _slowdown
    if _slowdown is None:
        with open(slowed) as note:
            pid, factor = note.read().split()
        _slowdown = float(factor) if int(pid) == os.getpid() else 1.0
    return square_after(x, seconds * _slowdown)


def announced_square(job):
    """Tell the benchmark this task runs, and in which process, then sleep and answer.

    ``job`` is ``(x, seconds, address)``; the note goes to the benchmark's
    datagram socket at ``address``, so it can kill a worker known to be busy
    without guessing with a sleep.
    """
    x, seconds, address = job
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as note:
        note.sendto(f"{x} {os.getpid()}".encode(), address)
    time.sleep(seconds)
    return square(x)
