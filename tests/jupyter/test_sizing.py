"""Specification: the magics show a resized pool only once its status has the new target
or mode, and say what changed (sizing.py).

A real scheduler takes a request within a millisecond, too fast to tell a
magic that waits from one that does not; these pools take it on their own
thread, and only after the caller has read the status again, as a busy
scheduler would.
"""

from __future__ import annotations

import threading
from typing import Optional

import pytest
from IPython.core.error import UsageError

from fiber_jupyter import EventStream, PoolStateError, PoolStatus, Scaled
from fiber_jupyter.adaptive import IDLE_AFTER, TARGET_DURATION, AdaptSettings
from fiber_jupyter.jupyter.sizing import adapt_pool, check_start_size, scale_pool


class LaggingPool:
    """The part of the Pool API that the sizing uses, with a scheduler that lags."""

    name = "lagging"
    backend = "local"

    def __init__(self, target: int, adapt: Optional[tuple] = None,
                 takes_requests: bool = True) -> None:
        self.events = EventStream()
        self._status = PoolStatus(state="running", target=target, live=target, pending=0,
                                  busy=0, idle=target, lost=0, tasks_queued=0,
                                  tasks_running=0, tasks_done=0, adapt=adapt)
        self._takes_requests = takes_requests
        self._read_after_request = threading.Event()
        self.scheduler: Optional[threading.Thread] = None
        self.caller_was_listening: Optional[bool] = None

    def status(self) -> PoolStatus:
        if self.scheduler is not None:
            self._read_after_request.set()
        return self._status

    def scale(self, target: int) -> None:
        self._take(target=target, adapt=None)

    def adapt(self, minimum: int, maximum: int, idle_after: float = IDLE_AFTER,
              target_duration: float = TARGET_DURATION) -> None:
        self.tuning = (idle_after, target_duration)
        self._take(adapt=(minimum, maximum))

    def _take(self, **change) -> None:
        if self._takes_requests:
            self.scheduler = threading.Thread(target=self._lag, kwargs=change)
            self.scheduler.start()

    def _lag(self, **change) -> None:
        self._read_after_request.wait(timeout=30)
        self._status = self._status._replace(**change)
        self.caller_was_listening = self.events.has_subscribers
        status = self._status
        self.events.deliver(Scaled(self.name, status.target, status.live, 0, status.adapt))


class ClosedPool(LaggingPool):
    def adapt(self, minimum: int, maximum: int, *tuning: float) -> None:
        raise PoolStateError("Pool not running: pool 'lagging' was terminated; make a new one")


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
    pool = LaggingPool(2, takes_requests=False)
    assert scale_pool(pool, 1, timeout=0.01) == (
        "scaled pool 'lagging' (local) from 2 to 1 worker")
    assert not pool.events.has_subscribers


def test_adapting_returns_once_the_status_shows_the_bounds_and_says_what_the_mode_was():
    pool = LaggingPool(2)
    assert adapt_pool(pool, AdaptSettings(1, 8)) == (
        "pool 'lagging' (local) is adaptive 1\u20138 now, was manual at 2 workers")
    pool.scheduler.join()
    assert pool.caller_was_listening is True
    assert pool.status().adapt == (1, 8)
    assert not pool.events.has_subscribers


def test_new_bounds_replace_the_old_ones_and_the_same_bounds_change_nothing():
    pool = LaggingPool(2, adapt=(1, 4))
    assert adapt_pool(pool, AdaptSettings(1, 4)) == (
        "pool 'lagging' (local) is already adaptive 1\u20134")
    assert pool.scheduler is None
    assert adapt_pool(pool, AdaptSettings(2, 8)) == (
        "pool 'lagging' (local) is adaptive 2\u20138 now, was adaptive 1\u20134")
    assert pool.status().adapt == (2, 8)


def test_an_idle_time_or_target_duration_is_passed_on_and_said_even_with_the_same_bounds():
    pool = LaggingPool(2, adapt=(1, 4))
    assert adapt_pool(pool, AdaptSettings(1, 4, idle_after=20)) == (
        "pool 'lagging' (local) is adaptive 1\u20134 now (idle after 20 s), was adaptive 1\u20134")
    assert pool.tuning == (20, TARGET_DURATION)
    assert adapt_pool(pool, AdaptSettings(1, 4, 1.5, 0.25)).endswith(
        "now (idle after 1.5 s, target duration 0.25 s), was adaptive 1\u20134")
    assert pool.tuning == (1.5, 0.25)


def test_scaling_an_adaptive_pool_makes_it_manual_even_at_the_target_it_has():
    pool = LaggingPool(2, adapt=(1, 8))
    assert scale_pool(pool, 2) == (
        "pool 'lagging' (local) keeps its target of 2 workers; manual now, was adaptive 1\u20138")
    assert pool.status().adapt is None
    assert scale_pool(LaggingPool(2, adapt=(1, 8)), 5) == (
        "scaled pool 'lagging' (local) from 2 to 5 workers; manual now, was adaptive 1\u20138")


def test_a_pool_that_refuses_is_a_usage_error_and_leaves_no_subscription():
    pool = ClosedPool(2)
    with pytest.raises(UsageError, match="^Pool not running: pool 'lagging' was terminated"):
        adapt_pool(pool, AdaptSettings(1, 8))
    assert not pool.events.has_subscribers


def test_a_start_size_given_with_bounds_must_lie_within_them():
    check_start_size(None, (2, 8))
    check_start_size(2, (2, 8))
    check_start_size(8, (2, 8))
    with pytest.raises(UsageError, match="^N 9 is outside --adapt 2:8: an adaptive pool "
                                         "starts within its bounds$"):
        check_start_size(9, (2, 8))
    with pytest.raises(UsageError, match="^N 1 is outside --adapt 2:8"):
        check_start_size(1, (2, 8))
