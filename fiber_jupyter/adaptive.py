"""Adaptive pool size: the target follows the backlog, within the user's bounds.

A pool that adapts grows as soon as its outstanding work would take longer
than ``target_duration`` seconds on the workers it has, and shrinks only after
it has had more workers than it needs for ``idle_after`` seconds without a
break: growing late wastes the user's time, shrinking early wastes the start
of the workers the next cell needs. The gap between the two is the hysteresis
that keeps the size from flapping at the end of every map.

Work is measured in seconds: outstanding tasks times the seconds a task takes.
The pool measures that; before any task of a call has finished, the time the
call has been running divided by the size of its largest running batch
stands in (its tasks have taken at least that), so a call of long tasks grows
the pool more the longer it runs. So a thousand 1 ms tasks do not start a
thousand workers, while a hundred tasks of a minute each soon get a hundred.
Until some batch of a call runs, its tasks count no seconds: with every worker
still starting (pods pending), an adaptive pool asks for its minimum only,
rather than guess at tasks it knows nothing about. Workers still starting
count toward the target, so a slow scheduler (pods pending) never leads to
more requests.

Pure logic, driven by the scheduler's thread; no clock or I/O of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .errors import PoolSizeError

IDLE_AFTER = 60.0
TARGET_DURATION = 5.0


@dataclass(frozen=True)
class AdaptSettings:
    """The bounds of an adaptive pool and how eagerly it moves between them."""

    minimum: int
    maximum: int
    idle_after: float = IDLE_AFTER
    target_duration: float = TARGET_DURATION

    def __post_init__(self) -> None:
        for name in ("minimum", "maximum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PoolSizeError(f"adapt {name} must be a positive integer, got {value!r}")
        if self.minimum > self.maximum:
            raise PoolSizeError(
                f"adapt minimum {self.minimum} is larger than maximum {self.maximum}")
        for name in ("idle_after", "target_duration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"adapt {name} must be a positive number of seconds, "
                                 f"got {value!r}")

    def describe(self) -> str:
        """E.g. "adaptive 4–512"."""
        return f"adaptive {self.minimum}–{self.maximum}"


class Adaptation:
    """Chooses the target of one adaptive pool, tick by tick."""

    def __init__(self, settings: AdaptSettings) -> None:
        self.settings = settings
        self._surplus_since: Optional[float] = None
        self._needed_during_surplus = 0

    def target(self, current: int, outstanding_tasks: int, outstanding_seconds: float,
               now: float) -> int:
        """The target for now: ``current`` unless the backlog says otherwise.

        A target outside the bounds (just set by ``adapt``) moves inside at once.
        """
        needed = self.needed(outstanding_tasks, outstanding_seconds)
        if current > self.settings.maximum:
            self._surplus_since = None
            return self.settings.maximum
        if needed >= current:
            self._surplus_since = None
            return needed
        if self._surplus_since is None:
            self._surplus_since, self._needed_during_surplus = now, needed
            return current
        self._needed_during_surplus = max(self._needed_during_surplus, needed)
        if now - self._surplus_since < self.settings.idle_after:
            return current
        self._surplus_since = None
        return self._needed_during_surplus

    def decides_at(self) -> Optional[float]:
        """When the target may next change with no new work: the end of the current surplus.

        The scheduler wakes for it; anything else that changes the target
        (work arriving, a result) wakes the scheduler anyway.
        """
        if self._surplus_since is None:
            return None
        return self._surplus_since + self.settings.idle_after

    def needed(self, outstanding_tasks: int, outstanding_seconds: float) -> int:
        """Workers enough to finish the backlog in ``target_duration``, within the bounds."""
        settings = self.settings
        if outstanding_tasks <= 0:
            return settings.minimum
        wanted = min(outstanding_tasks, math.ceil(outstanding_seconds / settings.target_duration))
        return max(settings.minimum, min(settings.maximum, wanted))
