"""What a view of a pool shows beyond its status: the running call and the recent
crash and recovery lines, kept from the pool's events.

The cell's pool widget and the side panel both show these; one feed per view
subscribes to the pool, so each view sees every event from its start.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from ..events import PoolClosed, PoolEvent, Progress
from ..incidents import Incidents
from ..pool import Pool

LOG_LINES = 20


class PoolFeed:
    """Follows one pool's events; calls ``on_change(event)`` after each it took in."""

    def __init__(self, pool: Pool, on_change: Callable[[PoolEvent], None],
                 log_lines: int = LOG_LINES) -> None:
        self._events = pool.events  # not the pool: a feed must not keep its pool alive
        self.call: Optional[Progress] = None  # the running call's latest progress
        self._on_change = on_change
        self._log_lines = log_lines
        self._log: List[str] = []
        self._incidents = Incidents()
        pool.events.subscribe(self._on_event)

    @property
    def log(self) -> List[str]:
        """The recent lines, oldest first."""
        return list(self._log)

    def add_log(self, line: str) -> None:
        self._log = [*self._log, line][-self._log_lines:]

    def close(self) -> None:
        self._events.unsubscribe(self._on_event)

    def _on_event(self, event: PoolEvent) -> None:
        if isinstance(event, Progress):
            self.call = None if event.finished else event
        elif isinstance(event, PoolClosed):
            self.call = None
            self.add_log(f"pool stopped: {event.reason}")
            self.close()
        incident = self._incidents.describe(event)
        if incident is not None:
            self.add_log(incident)
        self._on_change(event)
