"""Per-call progress: a tqdm-like line in a terminal, widgets in a notebook.

A :class:`ProgressTracker` follows one pool. When a call starts it asks the
display factory, in the calling thread, for a way to open a display later
(a notebook display must know which cell it belongs to, and only the calling
thread knows that). Everything else happens on the pool's notifier thread,
driven by the pool's events:

- a call that ends within ``delay`` seconds shows nothing (a loop of a
  thousand quick ``map`` calls must not print a thousand bars);
- a longer call gets a display, updated at most every ``interval`` seconds
  however fast its tasks finish, and closed with a one-line summary;
- a worker loss, a retry or a failure during a call is written into that
  call's display at once, opening it if needed: a crash is always shown.

The display itself is a :class:`CallDisplay`; :class:`TextDisplay` is the
terminal one, the Jupyter layer registers a widget one with
:func:`set_default_factory`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Dict, Optional

from .events import CallStarted, PoolEvent, Progress
from .incidents import Incidents

log = logging.getLogger(__name__)

DELAY = 0.5  # seconds a call runs before its display appears
INTERVAL = 0.25  # seconds between two updates of one display
OFF_VALUES = ("0", "off", "false", "no")
ENVIRONMENT_SWITCH = "FIBER_JUPYTER_PROGRESS"


class CallDisplay:
    """What shows one call's progress; the methods run on the notifier thread."""

    def update(self, progress: Progress) -> None:
        """Show the latest counts."""

    def note(self, text: str) -> None:
        """Show a line about a crash, a retry or a failure during the call."""

    def close(self, progress: Progress) -> None:
        """The call is over: show its final state and summary."""


# Called in the calling thread; returns the function that opens the display later.
DisplayFactory = Callable[[CallStarted], Callable[[], CallDisplay]]


def format_duration(seconds: float) -> str:
    """``"01:05"`` or ``"1:02:03"``, as tqdm shows elapsed and remaining time."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def counts_text(progress: Progress) -> str:
    """``"450/1000 [00:05<00:06, 90.1 tasks/s, 2 retried, 1 failed]"``."""
    rate = progress.rate
    if progress.finished or rate <= 0:
        timing = format_duration(progress.elapsed)
    else:
        remaining = (progress.total - progress.done) / rate
        timing = f"{format_duration(progress.elapsed)}<{format_duration(remaining)}"
    extras = [f"{rate:.1f} tasks/s"]
    if progress.retries:
        extras.append(f"{progress.retries} retried")
    if progress.failed:
        extras.append(f"{progress.failed} failed")
    return f"{progress.done}/{progress.total} [{timing}, {', '.join(extras)}]"


def summary_text(progress: Progress) -> str:
    """The one line a finished call leaves behind."""
    if progress.done < progress.total:
        head = f"{progress.label} stopped: {progress.done} of {progress.total} tasks done"
    else:
        head = f"{progress.label}: {progress.total} tasks done"
    tail = [f"{progress.retries} retried"] if progress.retries else []
    if progress.failed:
        tail.append(f"{progress.failed} failed")
    rest = f", {', '.join(tail)}" if tail else ""
    return f"{head} in {progress.elapsed:.1f} s ({progress.rate:.1f} tasks/s){rest}"


class TextDisplay(CallDisplay):
    """tqdm's look on a terminal: one line redrawn in place, notes above it."""

    BAR_WIDTH = 20

    def __init__(self, label: str, stream: IO[str]) -> None:
        self._label = label
        self._stream = stream
        self._line = ""
        self._bar = ""

    def update(self, progress: Progress) -> None:
        self._bar = self._bar_line(progress)
        self._draw(self._bar)

    def note(self, text: str) -> None:
        self._stream.write("\r" + " " * len(self._line) + "\r")  # the bar's line, blank
        self._stream.write(f"{self._label}: {text}\n")
        self._line = ""
        self._draw(self._bar)

    def close(self, progress: Progress) -> None:
        self._draw(summary_text(progress))
        self._stream.write("\n")
        self._stream.flush()
        self._line = ""

    def _bar_line(self, progress: Progress) -> str:
        fraction = progress.done / progress.total if progress.total else 1.0
        filled = int(fraction * self.BAR_WIDTH)
        bar = "\u2588" * filled + " " * (self.BAR_WIDTH - filled)
        return f"{self._label}: {fraction:4.0%}|{bar}| {counts_text(progress)}"

    def _draw(self, line: str) -> None:
        padding = " " * max(0, len(self._line) - len(line))
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
        self._line = line


def text_factory(stream: Optional[IO[str]] = None) -> DisplayFactory:
    """Displays written to ``stream`` (default: standard error at display time)."""

    def prepare(call: CallStarted) -> Callable[[], CallDisplay]:
        return lambda: TextDisplay(call.label, stream or sys.stderr)

    return prepare


_default_factory: Optional[DisplayFactory] = None


def set_default_factory(factory: Optional[DisplayFactory]) -> None:
    """Make ``factory`` the display of pools created later with ``progress=None``."""
    global _default_factory
    _default_factory = factory


def default_factory() -> Optional[DisplayFactory]:
    """The display for a new pool: off if the environment says so, the registered
    one (widgets in a notebook), text on a terminal, else none (logs, pipes, CI)."""
    if os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower() in OFF_VALUES:
        return None
    if _default_factory is not None:
        return _default_factory
    isatty = getattr(sys.stderr, "isatty", None)
    return text_factory() if isatty is not None and isatty() else None


@dataclass
class _Call:
    open_display: Callable[[], CallDisplay]
    display: Optional[CallDisplay] = None
    last_update: float = 0.0


class ProgressTracker:
    """Drives one display per long-running call of a pool (see the module docstring)."""

    def __init__(self, factory: DisplayFactory, delay: Optional[float] = None,
                 interval: float = INTERVAL) -> None:
        self._factory = factory
        self._delay = DELAY if delay is None else delay  # read now: a test may set DELAY
        self._interval = interval
        self._lock = threading.Lock()
        self._calls: Dict[int, _Call] = {}
        self._incidents = Incidents()

    def call_started(self, call: CallStarted) -> None:
        """Pool call observer: runs in the calling thread."""
        open_display = self._factory(call)
        with self._lock:
            self._calls[call.job_id] = _Call(open_display)

    def on_event(self, event: PoolEvent) -> None:
        """Pool event subscriber: runs on the notifier thread."""
        if isinstance(event, Progress):
            self._on_progress(event)
            return
        incident = self._incidents.describe(event)
        if incident is None:
            return
        job_id = getattr(event, "job_id", None)
        if job_id is None:
            self._note_all(incident)
        else:
            self._note(job_id, incident)

    def _on_progress(self, progress: Progress) -> None:
        call = self._get(progress.job_id)
        if call is None:
            return
        if progress.finished:
            with self._lock:
                self._calls.pop(progress.job_id, None)
            if call.display is not None:
                call.display.close(progress)
            return
        now = time.monotonic()
        if call.display is None and progress.elapsed < self._delay:
            return
        if now - call.last_update >= self._interval:
            call.last_update = now
            self._displayed(call).update(progress)

    def _note(self, job_id: int, text: str) -> None:
        call = self._get(job_id)
        if call is not None:
            self._displayed(call).note(text)

    def _note_all(self, text: str) -> None:
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            self._displayed(call).note(text)

    def _get(self, job_id: int) -> Optional[_Call]:
        with self._lock:
            return self._calls.get(job_id)

    def _displayed(self, call: _Call) -> CallDisplay:
        if call.display is None:
            call.display = call.open_display()
        return call.display
