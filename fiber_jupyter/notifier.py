"""The pool's notifier thread: runs user callbacks and event subscribers.

Both are user code of unknown speed. Running them here, in order, keeps them
off the scheduler's I/O thread (which must keep answering heartbeats) and off
the caller's thread (which may be blocked waiting for the very result whose
callback is running).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

log = logging.getLogger(__name__)

_STOP = None


class Notifier:
    """A single daemon thread draining a queue of calls."""

    def __init__(self, name: str) -> None:
        self._calls: "queue.SimpleQueue[Optional[Callable[[], None]]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"fiber-notifier-{name}",
                                        daemon=True)
        self._thread.start()

    def post(self, call: Callable[[], None]) -> None:
        """Run ``call()`` on the notifier thread after everything posted before it."""
        self._calls.put(call)

    def close(self) -> None:
        """Run what is queued, then stop; safe to call more than once."""
        if self._thread.is_alive():
            self._calls.put(_STOP)
            if threading.current_thread() is not self._thread:
                self._thread.join()

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is _STOP:
                return
            try:
                call()
            except Exception:
                log.exception("fiber_jupyter callback %r failed", call)
