"""The scheduler's table of workers: their states, their in-flight batches, their credit.

Every state change of a worker goes through :class:`WorkerTable`, which keeps
the counts behind ``pool.status()`` up to date as it goes (so a status snapshot
costs O(1) with 2,048 workers) and keeps the set of workers that have room for
another batch (so dispatch never scans idle workers).

States::

    STARTING ──Ready──▶ READY ──scale down, busy──▶ DRAINING ──in-flight done──▶ STOPPING
        │                 │ ▲                          │ │ scale up                   │
        │                 │ └──────────────────────────┘ ▼                            │
        │                 └──scale down, idle / retired──────────────────────────────▶│
        └──scale down (backend stop)──────────────────────────────────────────────────▶│
    any state ──backend reports the exit──▶ removed (stopped if STOPPING, else lost)
"""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass, field
from typing import Counter, Dict, Iterator, List, Optional, Set

from .jobs import Batch
from .usage import CpuMeter

# Batches a worker holds at once: one running, one queued behind it so the
# worker never waits for a round trip. More would leave work stranded on a busy
# worker while a newly started one sits idle.
CREDIT = 2


class WorkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"


@dataclass(eq=False)
class WorkerRecord:
    """What the master knows about one worker."""

    worker_id: str
    state: WorkerState = WorkerState.STARTING
    last_seen: float = field(default_factory=time.monotonic)
    greeted: bool = False
    pid: Optional[int] = None
    host: str = ""
    # batch id -> batch, e.g. {41: <Batch 41 tasks 0-9 of map(sqr)>}
    in_flight: Dict[int, Batch] = field(default_factory=dict)
    known_jobs: Set[int] = field(default_factory=set)
    forget: List[int] = field(default_factory=list)
    # Batches it may still take before it retires (maxtasksperchild); None: unlimited.
    batches_left: Optional[int] = None
    # Set when the master killed it, so the loss names the real cause.
    kill_reason: Optional[str] = None
    # Why the backend says it is not running yet (e.g. "Unschedulable: ..."), if stuck.
    waiting_reason: Optional[str] = None
    # What it reported using with its heartbeats.
    cpu: CpuMeter = field(default_factory=CpuMeter)
    memory_bytes: Optional[int] = None

    @property
    def busy(self) -> bool:
        return bool(self.in_flight)

    @property
    def holds_suspect(self) -> bool:
        """It runs a batch under suspicion, which must be alone on its worker."""
        return any(batch.suspect for batch in self.in_flight.values())


class WorkerTable:
    """All workers of one pool, owned by the scheduler's I/O thread."""

    def __init__(self) -> None:
        self._workers: Dict[str, WorkerRecord] = {}
        self.counts: Counter[WorkerState] = collections.Counter()
        self.busy = 0
        # Tasks in the batches all workers hold.
        self.running_items = 0
        # Workers that can take another batch, in the order they became able to.
        self._hungry: Dict[str, WorkerRecord] = {}
        self._changed = False

    def __len__(self) -> int:
        return len(self._workers)

    def __iter__(self) -> Iterator[WorkerRecord]:
        return iter(list(self._workers.values()))

    def take_changed(self) -> bool:
        """Whether a worker was added, removed or changed state since the last call."""
        changed, self._changed = self._changed, False
        return changed

    def get(self, worker_id: str) -> Optional[WorkerRecord]:
        return self._workers.get(worker_id)

    def add(self, worker: WorkerRecord) -> None:
        self._workers[worker.worker_id] = worker
        self.counts[worker.state] += 1
        self._changed = True

    def remove(self, worker_id: str) -> Optional[WorkerRecord]:
        worker = self._workers.pop(worker_id, None)
        if worker is not None:
            self._changed = True
            self.counts[worker.state] -= 1
            self.busy -= worker.busy
            self.running_items -= sum(b.count for b in worker.in_flight.values())
            self._hungry.pop(worker_id, None)
        return worker

    def set_state(self, worker: WorkerRecord, state: WorkerState) -> None:
        self._changed = True
        self.counts[worker.state] -= 1
        worker.state = state
        self.counts[state] += 1
        self._update_hunger(worker)

    def assign(self, worker: WorkerRecord, batch: Batch) -> None:
        was_busy = worker.busy
        worker.in_flight[batch.batch_id] = batch
        self.running_items += batch.count
        if worker.batches_left is not None:
            worker.batches_left -= 1
        self.busy += worker.busy - was_busy
        self._update_hunger(worker)

    def release(self, worker: WorkerRecord, batch_id: int) -> Optional[Batch]:
        was_busy = worker.busy
        batch = worker.in_flight.pop(batch_id, None)
        self.running_items -= batch.count if batch is not None else 0
        self.busy += worker.busy - was_busy
        self._update_hunger(worker)
        return batch

    def hungry(self) -> Iterator[WorkerRecord]:
        """Workers with room for another batch (safe to assign while iterating)."""
        return iter(list(self._hungry.values()))

    def can_take(self, worker: WorkerRecord) -> bool:
        return worker.worker_id in self._hungry

    def live(self) -> int:
        return self.counts[WorkerState.READY] + self.counts[WorkerState.DRAINING]

    def _update_hunger(self, worker: WorkerRecord) -> None:
        can_take = (worker.state is WorkerState.READY and len(worker.in_flight) < CREDIT
                    and worker.batches_left != 0 and not worker.holds_suspect)
        if can_take:
            self._hungry.setdefault(worker.worker_id, worker)
        else:
            self._hungry.pop(worker.worker_id, None)


@dataclass(frozen=True)
class ResizePlan:
    """What to do to reach a target size."""

    reactivate: List[WorkerRecord]  # draining workers to keep after all
    launch: int  # new workers to start
    stop: List[WorkerRecord]  # workers to stop (drained first if busy)


def plan_resize(workers: List[WorkerRecord], target: int) -> ResizePlan:
    """Scale policy: reuse draining workers first; stop not-yet-started, then idle, then least busy.

    Keeping a draining worker costs nothing, starting one costs a process.
    Stopping a worker that has not connected wastes nothing; an idle one loses
    nothing; a busy one is only drained (it finishes what it holds).
    """
    active = [w for w in workers if w.state in (WorkerState.STARTING, WorkerState.READY)]
    draining = [w for w in workers if w.state is WorkerState.DRAINING]
    missing = target - len(active)
    if missing >= 0:
        reactivate = draining[:missing]
        return ResizePlan(reactivate, missing - len(reactivate), [])

    def cost(worker: WorkerRecord) -> tuple:
        return (worker.state is not WorkerState.STARTING, len(worker.in_flight))

    return ResizePlan([], 0, sorted(active, key=cost)[:-missing])
