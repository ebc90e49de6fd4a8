"""Specification: the magics show a resized pool only once its status has the new target.

A real scheduler takes a new target within a millisecond, too fast to tell a
magic that waits from one that does not; these pools take it on their own
thread, and only after the caller has read the status again, as a busy
scheduler would.
"""

from __future__ import annotations

import threading
from typing import Optional

from fiber_jupyter import EventStream, PoolStatus, Scaled
from fiber_jupyter.jupyter.magics import scale_pool


class LaggingPool:
    """The part of the Pool API that ``scale_pool`` uses, with a scheduler that lags."""

    name = "lagging"
    backend = "local"

    def __init__(self, target: int, takes_targets: bool = True) -> None:
        self.events = EventStream()
        self._status = PoolStatus(state="running", target=target, live=target, pending=0,
                                  busy=0, idle=target, lost=0, tasks_queued=0,
                                  tasks_running=0, tasks_done=0)
        self._takes_targets = takes_targets
        self._read_after_scale = threading.Event()
        self.scheduler: Optional[threading.Thread] = None
        self.caller_was_listening: Optional[bool] = None

    def status(self) -> PoolStatus:
        if self.scheduler is not None:
            self._read_after_scale.set()
        return self._status

    def scale(self, target: int) -> None:
        if self._takes_targets:
            self.scheduler = threading.Thread(target=self._take, args=(target,))
            self.scheduler.start()

    def _take(self, target: int) -> None:
        self._read_after_scale.wait(timeout=30)
        self._status = self._status._replace(target=target)
        self.caller_was_listening = self.events.has_subscribers
        self.events.deliver(Scaled(self.name, target, self._status.live, 0))


def test_scaling_returns_once_the_status_shows_the_new_target():
    pool = LaggingPool(2)
    assert scale_pool(pool, 3) == "scaled pool 'lagging' (local) from 2 to 3 workers"
    pool.scheduler.join()
    assert pool.caller_was_listening is True
    assert pool.status().target == 3
    assert not pool.events.has_subscribers  # the magic's subscription is gone


def test_an_unchanged_target_is_reported_without_scaling():
    pool = LaggingPool(2)
    assert scale_pool(pool, 2) == "pool 'lagging' (local) already has a target of 2 workers"
    assert pool.scheduler is None


def test_a_scheduler_that_never_answers_delays_the_cell_by_the_timeout_only():
    pool = LaggingPool(2, takes_targets=False)
    assert scale_pool(pool, 1, timeout=0.01) == (
        "scaled pool 'lagging' (local) from 2 to 1 worker")
    assert not pool.events.has_subscribers
