"""Specification: under kills, stops and resizing, a map still gives the serial answer."""

from __future__ import annotations

import os
import random
import signal
import threading

import pytest

from fiber_jupyter import WorkerLost, WorkerReady, WorkerStopped

from . import tasks


class Chaos:
    """Every ``period`` s: SIGKILL a random live worker (sometimes SIGSTOP it), maybe rescale."""

    def __init__(self, pool, seed: int, period: float = 0.2) -> None:
        self._pool = pool
        self._random = random.Random(seed)
        self._period = period
        self._pids: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.kills = self.stops = 0
        pool.events.subscribe(self._track)
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> "Chaos":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _track(self, event) -> None:
        with self._lock:
            if isinstance(event, WorkerReady):
                self._pids[event.worker_id] = event.pid
            elif isinstance(event, (WorkerLost, WorkerStopped)):
                self._pids.pop(event.worker_id, None)

    def _run(self) -> None:
        # The period is the chaos cadence, not a synchronisation.
        while not self._stop.wait(self._period):
            with self._lock:
                victims = list(self._pids.values())
            if victims:
                self._strike(self._random.choice(victims))
            if self._random.random() < 0.2:
                self._pool.scale(self._random.randint(1, 6))

    def _strike(self, pid: int) -> None:
        stop = self._random.random() < 0.1
        try:
            os.kill(pid, signal.SIGSTOP if stop else signal.SIGKILL)
        except ProcessLookupError:
            return
        self.stops += stop
        self.kills += not stop


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_map_under_kills_stops_and_rescaling_gives_the_serial_answer(make_pool, seed):
    pool = make_pool(4, heartbeat_timeout=2.0, max_retries=100)
    durations = random.Random(seed).choices([0, 0, 0, 0.001, 0.005], k=8000)
    with Chaos(pool, seed) as chaos:
        results = pool.starmap(tasks.slow_square, list(enumerate(durations)))
    assert results == [x * x for x in range(len(durations))]
    assert chaos.kills > 0
    assert pool.status().lost >= 1


@pytest.mark.timeout(240)
def test_imap_unordered_under_kills_yields_each_result_exactly_once(make_pool):
    pool = make_pool(3, heartbeat_timeout=2.0, max_retries=100)
    with Chaos(pool, seed=3) as chaos:
        results = list(pool.imap_unordered(tasks.slow_square, range(1000), chunksize=3))
    assert sorted(results) == [x * x for x in range(1000)]
    assert chaos.kills > 0
