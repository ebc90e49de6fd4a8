"""A tour of a local fiber_jupyter pool: map, live scaling and crash recovery.

Run with ``make start``. Evaluates a population of candidate solutions (the
inner loop of evolution strategies) on an elastic pool, grows the pool while
a map runs, kills a worker mid-map, and checks every answer against a serial
run.
"""

import logging
import math
import os
import signal

import fiber_jupyter
from fiber_jupyter import Progress, Scaled, WorkerLost, WorkerReady, WorkerStopped

log = logging.getLogger("demo")


def fitness(candidate):
    """A Rastrigin-style score: enough arithmetic to be worth a process."""
    x, y = candidate
    total = 0.0
    for step in range(20_000):
        t = step / 20_000
        total += (x * t) ** 2 - 10 * math.cos(2 * math.pi * x * t) + (y * t) ** 2
    return total


def describe(event):
    if isinstance(event, Progress) and event.finished:
        log.info("%s: %d/%d done in %.2f s (%.0f tasks/s, %d retried)", event.label,
                 event.done, event.total, event.elapsed, event.rate, event.retries)
    elif isinstance(event, WorkerLost):
        log.info("worker %s lost: %s; %d tasks re-queued", event.worker_id, event.reason,
                 event.requeued)
    elif isinstance(event, Scaled):
        log.info("pool: target %d, live %d, starting %d", event.target, event.live,
                 event.pending)


class WorkerPids:
    """Keeps the pid of every live worker, from the pool's events."""

    def __init__(self):
        self.pids = {}

    def __call__(self, event):
        if isinstance(event, WorkerReady):
            self.pids[event.worker_id] = event.pid
        elif isinstance(event, (WorkerLost, WorkerStopped)):
            self.pids.pop(event.worker_id, None)


def kill_one_worker_once(pool, workers, after_done):
    """Subscribe a one-shot: SIGKILL a worker when a map has done ``after_done`` tasks."""
    def kill(event):
        if isinstance(event, Progress) and event.done >= after_done and workers.pids:
            pool.events.unsubscribe(kill)
            worker_id, pid = next(iter(workers.pids.items()))
            log.info("killing worker %s (pid %d)", worker_id, pid)
            os.kill(pid, signal.SIGKILL)
    pool.events.subscribe(kill)


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    population = [(i % 17 - 8, i % 11 - 5) for i in range(400)]
    expected = [fitness(c) for c in population]
    with fiber_jupyter.Pool(2, name="demo") as pool:
        workers = WorkerPids()
        pool.events.subscribe(workers)
        pool.events.subscribe(describe)
        assert pool.map(fitness, population[:40]) == expected[:40]

        log.info("growing to 4 workers while a map runs")
        running = pool.map_async(fitness, population)
        pool.scale(4)
        assert running.get() == expected

        log.info("killing a worker in the middle of a map")
        kill_one_worker_once(pool, workers, after_done=100)
        assert pool.map(fitness, population, chunksize=1) == expected
        log.info("all results correct; final status: %s", pool.status())


if __name__ == "__main__":
    main()
