"""A refresh that runs on its own thread, after pokes, at most once per interval.

Views of a pool (the widget, the side panel's feed) are poked on every event,
thousands a second on a busy pool; the throttle turns that into a few
refreshes a second, and the thread that emitted the event never waits.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional


class Throttle:
    """Runs ``refresh`` after :meth:`poke`, at most every ``interval`` seconds, and, with a
    ``period``, at least that often: for what changes without an event."""

    def __init__(self, name: str, refresh: Callable[[], None], interval: float,
                 period: Optional[float] = None) -> None:
        self._refresh = refresh
        self._interval = interval
        self._period = period
        self._wanted = threading.Condition()
        self._poked = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"fiber-{name}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        with self._wanted:
            self._poked = True
            self._wanted.notify()

    def stop(self) -> None:
        """Refresh once more, then end the thread."""
        with self._wanted:
            self._stopped = True
            self._wanted.notify()

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wanted:
                self._wanted.wait_for(lambda: self._poked or self._stopped, self._period)
                self._poked, stopping = False, self._stopped
            self._refresh()
            if stopping:
                return
            with self._wanted:  # the rate limit: later pokes wait out the interval
                self._wanted.wait_for(lambda: self._stopped, self._interval)
