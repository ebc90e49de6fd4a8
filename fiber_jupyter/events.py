"""What a pool tells the world: typed events and the stream that delivers them.

The scheduler emits events; widgets, the side panel, logs and tests subscribe.
Subscribers run on the pool's notifier thread, never on the scheduler's I/O
thread, so a slow subscriber delays other subscribers but never the pool.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolEvent:
    """Base of every event; ``time`` is ``time.time()`` when it happened."""

    pool: str
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class WorkerStarting(PoolEvent):
    """The backend was asked for a worker."""

    worker_id: str


@dataclass(frozen=True)
class WorkerWaiting(PoolEvent):
    """A starting worker is stuck, for ``reason`` (e.g. "Unschedulable: 0/3 nodes are available").

    It fails after the pool's start timeout, with this reason, unless it starts first.
    """

    worker_id: str
    reason: str


@dataclass(frozen=True)
class WorkerReady(PoolEvent):
    """A worker connected, authenticated and ran the initializer."""

    worker_id: str
    pid: int
    host: str


@dataclass(frozen=True)
class WorkerStopped(PoolEvent):
    """A worker left because the pool asked it to (scale-down, retirement, close)."""

    worker_id: str


@dataclass(frozen=True)
class WorkerLost(PoolEvent):
    """A worker ended without being asked: crashed, killed, or stopped answering.

    ``reason`` reads like "exit -9 (SIGKILL)" or "no heartbeat for 30.0 s";
    ``requeued`` counts the tasks that went back to the queue.
    """

    worker_id: str
    reason: str
    exit_code: Optional[int]
    requeued: int


@dataclass(frozen=True)
class CallStarted(PoolEvent):
    """A call (``map``, ``imap``, ``apply_async``...) was submitted with ``total`` tasks."""

    job_id: int
    label: str
    total: int


@dataclass(frozen=True)
class TaskRetried(PoolEvent):
    """Tasks lost with worker ``lost_on`` at ``lost_at`` were dispatched again, to ``worker_id``."""

    job_id: int
    label: str
    start: int
    stop: int
    attempt: int
    worker_id: str
    lost_at: float
    lost_on: str


@dataclass(frozen=True)
class TaskSpeculated(PoolEvent):
    """Tasks running long on ``running_on`` were also sent to the idle ``worker_id``.

    The first result wins and the other copy is cancelled. ``seconds`` is how
    long they had run; ``typical`` what the call's tasks take on average.
    """

    job_id: int
    label: str
    start: int
    stop: int
    worker_id: str
    running_on: str
    seconds: float
    typical: float


@dataclass(frozen=True)
class TasksFailed(PoolEvent):
    """Tasks failed: they lost their worker once more than ``max_retries`` allows."""

    job_id: int
    label: str
    start: int
    stop: int
    error: str


@dataclass(frozen=True)
class Progress(PoolEvent):
    """A call's progress, emitted at a bounded rate and once when it ends."""

    job_id: int
    label: str
    done: int
    total: int
    failed: int
    retries: int
    elapsed: float
    finished: bool

    @property
    def rate(self) -> float:
        """Tasks per second since the call started."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class Scaled(PoolEvent):
    """The target size, the live worker counts or the sizing mode changed.

    ``adapt`` is ``(minimum, maximum)`` while the pool adapts its target to
    its backlog, None while the size is set by hand.
    """

    target: int
    live: int
    pending: int
    adapt: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class PoolClosed(PoolEvent):
    """The pool stopped: ``reason`` is "closing", "terminating" or why it broke."""

    reason: str


Subscriber = Callable[[PoolEvent], None]


class EventStream:
    """Thread-safe publish/subscribe for one pool's events.

    ``subscribe`` and ``unsubscribe`` may be called from any thread, including
    from inside a subscriber. Delivery order is emission order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: List[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        """Call ``subscriber(event)`` for every later event; returns it for unsubscribe."""
        with self._lock:
            self._subscribers = [*self._subscribers, subscriber]
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s != subscriber]

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone listens (events nobody hears are not even built)."""
        return bool(self._subscribers)

    def deliver(self, event: PoolEvent) -> None:
        """Run every subscriber; one that raises is logged and the rest still run."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %r", subscriber, event)
