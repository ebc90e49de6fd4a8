"""Crash and recovery events as the sentences every display shows.

The per-call progress displays and the pool widget's event log say the same
things the same way: "worker w3 lost: exit -9 (SIGKILL); 4 tasks re-queued",
"replacement worker w6 starting", "tasks 4-7 re-run on w6 (attempt 2)",
"task 0 also sent to idle w5 (4.2 s on w1, typically 0.3 s)".
"""

from __future__ import annotations

from typing import Optional

from .events import (PoolEvent, TaskRetried, TasksFailed, TaskSpeculated, WorkerLost,
                     WorkerStarting, WorkerWaiting)


def task_range(start: int, stop: int) -> str:
    return f"task {start}" if stop - start == 1 else f"tasks {start}-{stop - 1}"


class Incidents:
    """Describes the events worth telling a user; keeps count of unreplaced losses.

    A worker that starts while a lost one has not been replaced yet is its
    replacement; other starts (scaling up) are not incidents. A waiting reason
    is told when it differs from the last one told.
    """

    def __init__(self) -> None:
        self._unreplaced_losses = 0
        self._last_waiting: Optional[str] = None

    def describe(self, event: PoolEvent) -> Optional[str]:
        """The sentence for ``event``, or None if it is not a crash, retry or failure."""
        if isinstance(event, WorkerLost):
            self._unreplaced_losses += 1
            return (f"worker {event.worker_id} lost: {event.reason}; "
                    f"{event.requeued} tasks re-queued")
        if isinstance(event, WorkerStarting) and self._unreplaced_losses:
            self._unreplaced_losses -= 1
            return f"replacement worker {event.worker_id} starting"
        if isinstance(event, TaskRetried):
            return (f"{task_range(event.start, event.stop)} re-run on {event.worker_id} "
                    f"(attempt {event.attempt})")
        if isinstance(event, TaskSpeculated):
            return (f"{task_range(event.start, event.stop)} also sent to idle {event.worker_id} "
                    f"({event.seconds:.1f} s on {event.running_on}, "
                    f"typically {event.typical:.1f} s)")
        if isinstance(event, TasksFailed):
            return f"{task_range(event.start, event.stop)} failed: {event.error}"
        if isinstance(event, WorkerWaiting) and event.reason != self._last_waiting:
            self._last_waiting = event.reason  # 500 pods stuck alike are told once
            return f"worker {event.worker_id} waiting: {event.reason}"
        return None
