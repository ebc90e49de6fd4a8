"""The pool's lifecycle states and the snapshot ``pool.status()`` returns."""

from __future__ import annotations

import enum
from typing import NamedTuple


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
