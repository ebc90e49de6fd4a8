"""The pool's lifecycle states, and the snapshots its introspection calls return.

``pool.status()``, ``pool.workers()`` and ``pool.execute()``.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional, Tuple


class PoolState(enum.Enum):
    RUNNING = "running"
    CLOSING = "closing"  # finishing submitted work, then stopping workers
    TERMINATING = "terminating"
    BROKEN = "broken"
    STOPPED = "stopped"


class PoolStatus(NamedTuple):
    """A snapshot of the pool.

    ``target`` is the size asked for, ``live`` the workers connected (the
    ones draining before a scale-down included), ``pending`` those starting;
    ``busy`` and ``idle`` split the live ones; ``lost`` counts workers that
    ended without being asked, since the pool started. ``adapt`` is the
    ``(minimum, maximum)`` of an adaptive pool, None while its size is manual.
    """

    state: str
    target: int
    live: int
    pending: int
    busy: int
    idle: int
    lost: int
    tasks_queued: int
    tasks_running: int
    tasks_done: int
    adapt: Optional[Tuple[int, int]] = None


class WorkerInfo(NamedTuple):
    """One worker as the pool sees it.

    ``state`` is "starting", "ready", "draining" (finishing its tasks before
    it stops) or "stopping"; ``tasks`` counts the tasks it holds, so a ready
    worker with ``tasks == 0`` is idle. ``cpu_percent`` (100 is one core) and
    ``memory_bytes`` (resident) are what the worker reported with its last
    heartbeats; None until it has.
    """

    worker_id: str
    state: str
    tasks: int
    pid: Optional[int]
    host: str
    cpu_percent: Optional[float] = None
    memory_bytes: Optional[int] = None


class WorkerOutput(NamedTuple):
    """What code run with ``pool.execute`` did on one worker.

    ``output`` is what it printed (stdout and stderr, as written); ``error`` is
    the traceback text if it raised, or why the worker could not answer
    ("worker lost: exit -9 (SIGKILL)"), else None.
    """

    worker_id: str
    output: str
    error: Optional[str]


def worker_order(worker_id: str) -> Tuple[int, str]:
    """Sort key putting workers in start order: "w2" before "w10"."""
    digits = "".join(c for c in worker_id if c.isdigit())
    return (int(digits) if digits else 0, worker_id)
