"""The pool's lifecycle states and the snapshots ``pool.status()`` and ``pool.workers()`` return."""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional


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
    ended without being asked, since the pool started.
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


class WorkerInfo(NamedTuple):
    """One worker as the pool sees it.

    ``state`` is "starting", "ready", "draining" (finishing its tasks before
    it stops) or "stopping"; ``tasks`` counts the tasks it holds, so a ready
    worker with ``tasks == 0`` is idle.
    """

    worker_id: str
    state: str
    tasks: int
    pid: Optional[int]
    host: str
