"""What the pool benchmarks share: waiting on a pool's events, and leaving nothing behind.

Benchmarks synchronise on the pool's own events (a worker is ready, lost,
a batch was re-sent), never on sleeps: a sleep long enough for a loaded
machine wastes time on an idle one, and still fails on a busier one.
"""

import itertools
import queue
import time

import psutil

import fiber_jupyter

LEFTOVER_GRACE_S = 3.0


class EventLog:
    """Every event of one pool, kept so a benchmark can wait for the one it needs.

    A wait first looks at the events already seen, so an event that arrived
    while the benchmark was waiting for another one is not missed.
    """

    def __init__(self, pool):
        self._queue = queue.SimpleQueue()
        self.seen = []
        pool.events.subscribe(self._queue.put)

    def wait(self, match, timeout, what):
        """The first event, seen or to come, for which ``match(event)`` is true."""
        found = next((event for event in self.seen if match(event)), None)
        deadline = time.monotonic() + timeout
        while found is None:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {what} within {timeout:g} s") from None
            self.seen.append(event)
            found = event if match(event) else None
        return found

    def collect(self, kind, count, timeout):
        """The first ``count`` events of ``kind``, waiting for them if need be."""
        # wait() shows each event to ``match`` once, in order, so this counts them.
        ordinal = itertools.count(1)
        self.wait(lambda e: isinstance(e, kind) and next(ordinal) == count, timeout,
                  f"{count} {kind.__name__} events")
        return self.of(kind)[:count]

    def latest(self, match):
        """The most recent event delivered so far for which ``match(event)`` is true, or None."""
        self._take_delivered()
        return next((event for event in reversed(self.seen) if match(event)), None)

    def of(self, kind):
        """Every event of ``kind`` delivered so far."""
        self._take_delivered()
        return [event for event in self.seen if isinstance(event, kind)]

    def _take_delivered(self):
        while True:
            try:
                self.seen.append(self._queue.get_nowait())
            except queue.Empty:
                return


def start_pool(workers, timeout, **options):
    """A pool with all its workers live: (pool, its EventLog, seconds until they were).

    The seconds run from creating the pool to the Scaled event that reported
    ``workers`` live, as stamped by the pool, so event delivery is not counted.
    """
    started = time.time()
    pool = fiber_jupyter.Pool(workers, **options)
    events = EventLog(pool)
    try:
        if pool.status().live == workers:  # up before we subscribed: only a bound is known
            return pool, events, time.time() - started
        scaled = events.wait(lambda e: isinstance(e, fiber_jupyter.Scaled) and e.live == workers,
                             timeout, f"{workers} live workers")
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    return pool, events, scaled.time - started


def close_pool(pool, events, timeout):
    """Close gracefully (every worker is sent Stop) and wait until the pool has ended."""
    pool.close()
    events.wait(lambda e: isinstance(e, fiber_jupyter.PoolClosed), timeout, "PoolClosed")
    pool.join()


def check_no_leftovers():
    """Fail if a process this benchmark started is still running (and kill it)."""
    children = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(children, timeout=LEFTOVER_GRACE_S)
    if not alive:
        return
    names = sorted(_describe(process) for process in alive)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    raise RuntimeError(f"{len(alive)} processes left behind: {', '.join(names)}")


def _describe(process):
    """Pid and command line, so a leftover can be traced to what started it."""
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (exited)"
