"""The scheduler's records of work: a Job per call, a Batch per dispatched slice.

These stay in the master. A :class:`Job` is one user call (``map``,
``apply_async``, ...) with its items and its result sink; a :class:`Batch` is a
contiguous range of a job's items sent to a worker as one message. Batches
are carved when a worker has room, so their size follows the per-item time
measured so far (:mod:`fiber_jupyter.chunking`). A batch keeps its pickled
arguments until it is done, so a lost worker's batches are re-sent as they are.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Protocol, Set

from . import chunking, serialization
from .results import Chunk


class ResultSink(Protocol):
    """What the scheduler feeds: an AsyncResult or an IMapIterator."""

    def _deliver(self, chunk: Chunk) -> bool: ...

    def _fail(self, failure: BaseException) -> None: ...

    def _wake(self) -> None: ...


class BatchState(enum.Enum):
    QUEUED = "queued"  # waiting for a worker (first time or after its worker was lost)
    RUNNING = "running"  # sent to ``Batch.worker_id``
    DONE = "done"  # a result arrived, or its job ended; later copies are dropped


@dataclass(eq=False)
class Job:
    """One user call and its progress."""

    job_id: int
    label: str
    function: bytes
    mode: int
    items: List[Any]
    chunksize: Optional[int]
    sink: ResultSink
    # Whether a straggling batch may also run on an idle worker (Pool's speculate).
    speculate: bool = True
    started: float = field(default_factory=time.monotonic)
    dispatched: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    finished: bool = False
    # Batches not yet DONE, for cancellation and fail-fast.
    batches: Set["Batch"] = field(default_factory=set)
    # Workers holding this job's function, told to forget it when the job ends.
    known_by: Set[str] = field(default_factory=set)
    _seconds: float = 0.0
    _timed_items: int = 0

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def undispatched(self) -> int:
        return self.total - self.dispatched

    def seconds_per_item(self) -> Optional[float]:
        """Mean time in the user's function per item so far; None before any result."""
        return self._seconds / self._timed_items if self._timed_items else None

    def seconds_per_item_so_far(self, now: float) -> float:
        """``seconds_per_item``, or before any result a lower bound of it.

        A batch that has run for the call's age without finishing has items
        of at least that age divided by its size, on average.
        """
        measured = self.seconds_per_item()
        if measured is not None:
            return measured
        running = [batch.count for batch in self.batches if batch.state is BatchState.RUNNING]
        return (now - self.started) / max(running) if running else 0.0

    def record_timing(self, items: int, seconds: float) -> None:
        self._seconds += seconds
        self._timed_items += items

    def carve(self, batch_id: int, workers: int) -> "Batch":
        """The next batch of undispatched items, pickled (errors are kept, not raised)."""
        size = self.chunksize or chunking.batch_size(
            self.undispatched, workers, self.seconds_per_item())
        start = self.dispatched
        stop = min(start + size, self.total)
        self.dispatched = stop
        batch = Batch(batch_id, self, start, stop)
        try:
            batch.frames = serialization.dumps(self.items[start:stop]).frames()
        except Exception as exc:  # an unpicklable argument fails its own batch
            batch.encoding_error = exc
        self.batches.add(batch)
        return batch

    def release_items(self) -> None:
        """Drop references to the arguments once nothing can need them again."""
        self.items = []


@dataclass(eq=False)
class Batch:
    """Items ``[start, stop)`` of ``job``, as sent to workers."""

    batch_id: int
    job: Job
    start: int
    stop: int
    frames: list = field(default_factory=list)
    encoding_error: Optional[BaseException] = None
    state: BatchState = BatchState.QUEUED
    worker_id: Optional[str] = None
    # The worker exits charged to this batch, e.g. ["w3: exit -9 (SIGKILL)"].
    losses: List[str] = field(default_factory=list)
    lost_at: Optional[float] = None
    lost_on: Optional[str] = None  # the worker it was last lost with
    sent_at: float = 0.0  # time.monotonic() when it was last sent to a worker
    # The worker running a speculative copy, if any: the first result wins.
    copy_on: Optional[str] = None
    copy_sent_at: float = 0.0

    def sent_on(self, worker_id: str) -> float:
        """When the copy held by ``worker_id`` was sent (``time.monotonic()``)."""
        return self.copy_sent_at if worker_id == self.copy_on else self.sent_at
    # Lost along with other batches on one worker: any of them may have killed it,
    # so it runs alone on a worker from now on, where a loss is surely its own.
    suspect: bool = False
    attempts: int = 0  # how often it was sent to a worker

    @property
    def count(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        """E.g. "task 17 of map(sqr)" or "tasks 0-99 of map(sqr)"."""
        where = f"task {self.start}" if self.count == 1 else f"tasks {self.start}-{self.stop - 1}"
        return f"{where} of {self.job.label}"
