"""Targets of the Process tests, importable by jobs (local processes, and pods of the stand-in).

Kept apart from the test modules so that a job imports only this, not pytest.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time

from fiber_jupyter import Process


def report_pid(results):
    results.put(os.getpid())


def raise_value_error(message):
    raise ValueError(message)


def os_exit(code):
    os._exit(code)


def sys_exit(code):
    sys.exit(code)


def return_unpicklable():
    import threading
    return threading.Lock()


def wait_for_file(path):
    """Run until ``path`` exists: the test decides when the target returns."""
    while not os.path.exists(path):
        time.sleep(0.01)


def append_run_then_exit(path, code):
    """Leave a line per run in ``path``, then end the job with ``os._exit(code)``."""
    with open(path, "a") as runs:
        runs.write(f"{os.getpid()}\n")
    os._exit(code)


def double_until_none(inbox, outbox):
    """Put ``2 * x`` on ``outbox`` for every ``x`` got from ``inbox``, until None."""
    for item in iter(inbox.get, None):
        outbox.put(2 * item)


def consume_until_none(work, taken, name):
    """Take items until None; put ``(name, item)`` on ``taken`` for each."""
    for item in iter(work.get, None):
        taken.put((name, item))


def put_range(results, start, stop):
    for value in range(start, stop):
        results.put(value)


def get_with_timeout(inbox, results, seconds):
    """Report what ``inbox.get(timeout=seconds)`` gave: the item, or "empty"."""
    try:
        results.put(inbox.get(timeout=seconds))
    except queue.Empty:
        results.put("empty")


def echo_doubled(connection):
    """Answer every message with its double, until None."""
    for message in iter(connection.recv, None):
        connection.send(2 * message)


def send_each(connection, values):
    for value in values:
        connection.send(value)
    connection.send(None)


def receive_all(connection, results):
    """Put the list of messages received until None on ``results``."""
    results.put(list(iter(connection.recv, None)))


def kill_self(signal_number=signal.SIGKILL):
    os.kill(os.getpid(), signal_number)


def put_then_exit(results, value):
    """Put ``value``, then end the job at once, without any clean-up."""
    results.put(value)
    os._exit(0)


class Reporter(Process):
    """Overrides run(), as multiprocessing's other idiom does, with attributes of its own."""

    def __init__(self, results, greeting):
        super().__init__(name="reporter")
        self.results = results
        self.greeting = greeting

    def run(self):
        self.results.put((self.greeting, self.name, self.pid, os.getpid(), self.is_alive()))


class FailingRun(Process):
    def run(self):
        raise ValueError("run failed")
