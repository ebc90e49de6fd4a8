"""How the magics size a pool: by hand (a target) or adaptive (bounds), and what they say.

``pool.scale`` and ``pool.adapt`` only record the request for the scheduler's
next turn, and the magics show the pool right after it: without a wait, the
table could still show the old target or mode. So each request here waits
until the status shows it (normally within a millisecond, at most the
timeout), then returns a sentence saying what changed, e.g.::

    scaled pool 'pool' (local) from 2 to 3 workers; manual now, was adaptive 1–8
    pool 'pool' (local) is adaptive 1–8 now, was manual at 3 workers
    pool 'pool' (local) is adaptive 1–8 now (idle after 20 s), was adaptive 1–8
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Tuple, Union

from IPython.core.error import UsageError

from ..adaptive import IDLE_AFTER, TARGET_DURATION, AdaptSettings
from ..errors import FiberError
from ..events import PoolEvent, Scaled
from ..pool import Pool
from ..status import PoolStatus
from .status_text import mode_text

# Seconds to wait for the scheduler to take a new target or mode. It does so
# on its next turn, normally within a millisecond; should a very busy turn run
# longer, the table shown is one turn old, and the cell still returns.
TARGET_TIMEOUT = 5.0

Bounds = Tuple[int, int]
# What both a status and a Scaled event tell: the target, and the bounds while adapting.
Sized = Union[PoolStatus, Scaled]


def workers(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def scale_pool(pool: Pool, target: int, timeout: float = TARGET_TIMEOUT) -> str:
    """Set the target (which also ends adapting) and wait until the status shows it."""
    before = pool.status()
    was = "" if before.adapt is None else f"; manual now, was {mode_text(before.adapt)}"
    if before.target == target and before.adapt is None:
        return f"pool {pool.name!r} ({pool.backend}) already has a target of {workers(target)}"
    apply_and_wait(pool, lambda: pool.scale(target),
                   lambda sized: sized.target == target and sized.adapt is None, timeout)
    if before.target == target:
        return f"pool {pool.name!r} ({pool.backend}) keeps its target of {workers(target)}{was}"
    return (f"scaled pool {pool.name!r} ({pool.backend}) from {before.target} "
            f"to {workers(target)}{was}")


def adapt_pool(pool: Pool, settings: AdaptSettings, timeout: float = TARGET_TIMEOUT) -> str:
    """Let the target follow the backlog as ``settings`` say; wait until the status shows it.

    Asked again for the bounds it has, and nothing else, a pool is left as it
    is (its idle time and target duration too).
    """
    before = pool.status()
    tuning = tuning_text(settings)
    if before.adapt == bounds_of(settings) and not tuning:
        return f"pool {pool.name!r} ({pool.backend}) is already {settings.describe()}"
    request_adapt(pool, settings, timeout)
    was = (f"manual at {workers(before.target)}" if before.adapt is None
           else mode_text(before.adapt))
    return f"pool {pool.name!r} ({pool.backend}) is {settings.describe()} now{tuning}, was {was}"


def request_adapt(pool: Pool, settings: AdaptSettings, timeout: float = TARGET_TIMEOUT) -> None:
    apply_and_wait(pool, lambda: pool.adapt(settings.minimum, settings.maximum,
                                            settings.idle_after, settings.target_duration),
                   lambda sized: sized.adapt == bounds_of(settings), timeout)


def bounds_of(settings: AdaptSettings) -> Bounds:
    return settings.minimum, settings.maximum


def tuning_text(settings: AdaptSettings) -> str:
    """`` (idle after 30 s, target duration 2 s)``: the settings that are not the defaults."""
    tuned = [f"{name.replace('_', ' ')} {value:g} s"
             for name, value, default in (("idle_after", settings.idle_after, IDLE_AFTER),
                                          ("target_duration", settings.target_duration,
                                           TARGET_DURATION))
             if value != default]
    return f" ({', '.join(tuned)})" if tuned else ""


def apply_and_wait(pool: Pool, request: Callable[[], None], shows: Callable[[Sized], bool],
                   timeout: float) -> None:
    """Make the request, then wait until the status ``shows`` it or ``timeout`` passes.

    The subscription comes first, so the Scaled event cannot slip by between
    the request and the wait. A pool that cannot take requests any more is a
    UsageError saying why.
    """
    taken = threading.Event()

    def on_event(event: PoolEvent) -> None:
        if isinstance(event, Scaled) and shows(event):
            taken.set()

    pool.events.subscribe(on_event)
    try:
        request()
        if not shows(pool.status()):
            taken.wait(timeout)
    except FiberError as exc:  # closed, terminated or broken since it was looked up
        raise UsageError(str(exc)) from None
    finally:
        pool.events.unsubscribe(on_event)


def check_start_size(size: Optional[int], bounds: Bounds) -> None:
    """A size given with --adapt is where the pool starts: it must be within the bounds."""
    minimum, maximum = bounds
    if size is not None and not minimum <= size <= maximum:
        raise UsageError(f"N {size} is outside --adapt {minimum}:{maximum}: "
                         f"an adaptive pool starts within its bounds")
