"""The pool widget: counts, the size and its mode, a worker grid with the workers' CPU and
memory, the running call, a log, and on request the timeline of recent batches.

The size controls are a slider and a number box for the target, the mode
("manual" or "adaptive 1–8"), and an "adapt" checkbox with the bounds. They
act through the public API only: moving the slider or the box calls
``pool.scale`` (which also ends adapting), the checkbox and the bounds call
``pool.adapt``, unticking it keeps the current target by hand. While the pool
adapts, the slider follows the target the pool chose and never sends it back.

Threads, and who writes what:

- The size controls are written by their own observers (run where the
  kernel handles their messages: the extension's private subshell while a
  cell blocks, see ``live.py``) and by the event subscriber, with the target
  and mode of every Scaled event, whoever caused it (``%fiber_scale``, the
  side panel, the pool adapting). The observers only call ``pool.scale`` or
  ``pool.adapt``, queue puts. What the subscriber writes is not the user's:
  it writes under ``_sync_lock`` with ``_syncing`` set, and observers skip
  changes made so; a user's change arriving meanwhile waits for the lock.
- Everything else is written by one refresher thread, at most every
  REFRESH_INTERVAL seconds however many events arrive, so a pool finishing
  thousands of tasks a second sends a few small updates a second, and at
  least every USAGE_PERIOD seconds, for the workers' CPU and memory, which
  change with their heartbeats, without events.
- The timeline, a bigger picture, has a refresher of its own: at most every
  TIMELINE_INTERVAL seconds, only while its toggle is on, and of the last
  TIMELINE_SPANS batches only.

The grid is one character per worker, coloured by state, with runs of equal
state merged into one element: 2,048 workers in a few long runs are a few
kilobytes of HTML, and under 100 KB even if every neighbour differs.
"""

from __future__ import annotations

import html
import threading
from typing import Any, List, NamedTuple, Optional, Tuple

import ipywidgets

from ..errors import FiberError
from ..events import PoolClosed, PoolEvent, Scaled
from ..pool import Pool
from ..progress import counts_text
from ..status import PoolStatus, WorkerInfo, worker_order
from .live import LiveComms
from .pool_feed import PoolFeed
from .status_text import StatusRow, mode_text, render_status
from .throttle import Throttle
from .usage_text import heaviest_text, range_text, summarize, usage_text

REFRESH_INTERVAL = 0.5
USAGE_PERIOD = 2.0
TIMELINE_INTERVAL = 2.0
TIMELINE_SPANS = 1_000
LOG_LINES = 12
SLIDER_SPAN = 64  # the slider reaches at least this far, and twice the target
MAX_SIZE = 100_000
CELL = "\u25a0"
USAGE_TITLE_RUNS = 512
# state -> (short CSS class, colour): the class is repeated per run, so it is short.
STATE_STYLES = {"starting": ("fs", "#bdbdbd"), "idle": ("fi", "#81c784"),
                "busy": ("fb", "#1b5e20"), "draining": ("fd", "#fb8c00"),
                "stopping": ("fx", "#616161")}
GRID_STYLE = ("<style>.fiber-grid{font-family:monospace;line-height:1;word-break:break-all}"
              + "".join(f".fiber-grid .{css}{{color:{colour}}}"
                        for css, colour in STATE_STYLES.values()) + "</style>")


def grid_state(worker: WorkerInfo) -> str:
    """The grid's state of a worker: a ready one is busy or idle."""
    if worker.state == "ready":
        return "busy" if worker.tasks else "idle"
    return worker.state


class StateRun(NamedTuple):
    """Neighbouring workers (in start order) in one grid state."""

    state: str
    workers: List[WorkerInfo]

    def title(self, with_usage: bool) -> str:
        """``w1–w8 (8): busy · cpu 95–99 % · memory 80–96 MiB``, or ``w3: idle``."""
        first, last = self.workers[0].worker_id, self.workers[-1].worker_id
        who = first if len(self.workers) == 1 else f"{first}\u2013{last} ({len(self.workers)})"
        usage = range_text(self.workers) if with_usage else ""
        return f"{who}: {self.state}" + (f" \u00b7 {usage}" if usage else "")


def state_runs(workers: List[WorkerInfo]) -> List[StateRun]:
    """Workers in start order, equal neighbours merged."""
    runs: List[StateRun] = []
    for worker in sorted(workers, key=lambda worker: worker_order(worker.worker_id)):
        state = grid_state(worker)
        if runs and runs[-1].state == state:
            runs[-1].workers.append(worker)
        else:
            runs.append(StateRun(state, [worker]))
    return runs


def render_grid(workers: List[WorkerInfo]) -> str:
    """Workers in start order, one coloured square each, equal neighbours merged.

    Each run's hover text names its workers and their CPU and memory, unless
    there are more than USAGE_TITLE_RUNS runs: then only their state, so the
    grid stays under 100 KB however the states of 2,048 workers alternate.
    """
    runs = state_runs(workers)
    with_usage = len(runs) <= USAGE_TITLE_RUNS
    spans = "".join(
        f'<span class="{STATE_STYLES[run.state][0]}" title="{html.escape(run.title(with_usage))}">'
        f"{CELL * len(run.workers)}</span>" for run in runs)
    return f'{GRID_STYLE}<div class="fiber-grid">{spans}</div>'


def render_counts(status: PoolStatus) -> str:
    return html.escape(
        f"target {status.target} \u00b7 live {status.live} \u00b7 starting {status.pending}"
        f" \u00b7 busy {status.busy} \u00b7 idle {status.idle} \u00b7 lost {status.lost}"
        f"   |   tasks: {status.tasks_queued} queued \u00b7 {status.tasks_running} running"
        f" \u00b7 {status.tasks_done} done")


def render_usage(workers: List[WorkerInfo]) -> str:
    """The pool's total CPU and memory, and the worker holding the most memory."""
    summary = summarize(workers)
    heaviest = "" if summary.heaviest is None else f" \u00b7 {heaviest_text(summary.heaviest)}"
    return html.escape(usage_text(summary) + heaviest)


def _bound_box(description: str, value: int) -> ipywidgets.BoundedIntText:
    return ipywidgets.BoundedIntText(value=value, min=1, max=MAX_SIZE, description=description,
                                     style={"description_width": "initial"},
                                     layout=ipywidgets.Layout(width="110px"))


class PoolWidget(ipywidgets.VBox):
    """A live view of one pool, with the controls to resize it or let it adapt."""

    def __init__(self, pool: Pool, live: Optional[LiveComms] = None) -> None:
        self.pool = pool
        status = pool.status()
        self._sync_lock = threading.RLock()
        self._syncing = False
        # The mode last shown: the pool's (min, max) while it adapts, else None.
        self._adapt: Optional[Tuple[int, int]] = None
        self.header = ipywidgets.HTML()
        self.counts = ipywidgets.HTML()
        self.slider = ipywidgets.IntSlider(
            value=status.target, min=1, max=max(SLIDER_SPAN, 2 * status.target),
            description="workers", continuous_update=False)
        self.size_box = ipywidgets.BoundedIntText(value=status.target, min=1, max=MAX_SIZE,
                                                  layout=ipywidgets.Layout(width="90px"))
        self.mode = ipywidgets.Label()
        self.adapt_box = ipywidgets.Checkbox(description="adapt", indent=False,
                                             layout=ipywidgets.Layout(width="auto"))
        # Bounds offered before the pool ever adapted: down to one, up to twice its size.
        minimum, maximum = status.adapt or (1, max(2, 2 * status.target))
        self.adapt_min = _bound_box("min", minimum)
        self.adapt_max = _bound_box("max", maximum)
        self.grid = ipywidgets.HTML()
        self.usage = ipywidgets.HTML()
        self.running_call = ipywidgets.HTML()
        self.event_log = ipywidgets.HTML()
        self.timeline_toggle = ipywidgets.ToggleButton(description="timeline",
                                                       tooltip="each worker's recent batches")
        self.timeline = ipywidgets.HTML()
        super().__init__([self.header, self.counts,
                          ipywidgets.HBox([self.slider, self.size_box, self.mode]),
                          ipywidgets.HBox([self.adapt_box, self.adapt_min, self.adapt_max]),
                          self.grid, self.usage, self.running_call, self.event_log,
                          self.timeline_toggle, self.timeline])
        self._show_sizing(status.target, status.adapt)
        for control in (self.slider, self.size_box):
            control.observe(self._on_size_asked, "value")
        for control in (self.adapt_box, self.adapt_min, self.adapt_max):
            control.observe(self._on_mode_asked, "value")
        self.timeline_toggle.observe(self._on_timeline_toggled, "value")
        if live is not None:
            for control in (self.slider, self.size_box, self.adapt_box, self.adapt_min,
                            self.adapt_max, self.timeline_toggle):
                live.add(control.comm)
        self._refresher = Throttle(f"widget-{pool.name}", self._refresh, REFRESH_INTERVAL,
                                   USAGE_PERIOD)
        self._timeline_drawer = Throttle(f"timeline-{pool.name}", self._draw_timeline,
                                         TIMELINE_INTERVAL)
        self._feed = PoolFeed(pool, self._on_event, LOG_LINES)
        self._refresher.poke()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        """The widget, and for front ends without widgets the table ``%fiber_status`` shows."""
        bundle = super()._repr_mimebundle_(**kwargs)
        table = render_status([StatusRow(self.pool.name, self.pool.backend, self.pool.status())])
        return {**bundle, "text/plain": table}

    def _on_size_asked(self, change: dict) -> None:
        """The slider or the box moved: that size, by hand (adapting ends)."""
        with self._sync_lock:
            if not self._syncing:
                self._scale(change["new"])

    def _on_mode_asked(self, change: dict) -> None:
        """The checkbox or a bound changed: adapt within the bounds, or keep the size by hand."""
        with self._sync_lock:
            if self._syncing:
                return
            if self.adapt_box.value:
                self._start_adapting((self.adapt_min.value, self.adapt_max.value))
            elif change["owner"] is self.adapt_box:
                self._scale(self.slider.value)
            # else: bounds edited while the pool is manual, kept for the checkbox

    def _scale(self, size: int) -> None:
        self._show_sizing(size, None)
        try:
            self.pool.scale(size)
        except FiberError as exc:
            self._report(f"cannot scale: {exc}")

    def _start_adapting(self, bounds: Tuple[int, int]) -> None:
        try:
            self.pool.adapt(*bounds)
        except FiberError as exc:  # e.g. min above max: the controls go back to the pool's mode
            self._report(f"cannot adapt: {exc}")
            self._show_sizing(self.slider.value, self._adapt)
        else:
            self._show_sizing(self.slider.value, bounds)

    def _on_timeline_toggled(self, change: dict) -> None:
        self._timeline_drawer.poke()

    def _report(self, line: str) -> None:
        self._feed.add_log(line)
        self._refresher.poke()

    def _show_sizing(self, target: int, adapt: Optional[Tuple[int, int]]) -> None:
        """Show a target and mode in the controls, as the pool's, not as the user's asking."""
        with self._sync_lock:
            self._syncing = True
            try:
                if target > self.slider.max:
                    self.slider.max = 2 * target
                self.slider.value = self.size_box.value = target
                self._adapt = adapt
                self.mode.value = mode_text(adapt)
                self.adapt_box.value = adapt is not None
                if adapt is not None:
                    self.adapt_min.value, self.adapt_max.value = adapt
            finally:
                self._syncing = False

    def _on_event(self, event: PoolEvent) -> None:
        if isinstance(event, Scaled):
            self._show_sizing(event.target, event.adapt)
        if isinstance(event, PoolClosed):
            self._refresher.stop()
            self._timeline_drawer.stop()
        else:
            self._refresher.poke()
            if self.timeline_toggle.value:
                self._timeline_drawer.poke()

    def _refresh(self) -> None:
        status = self.pool.status()
        self.header.value = (f"<b>{html.escape(self.pool.name)}</b> \u00b7 "
                            f"{html.escape(self.pool.backend)} \u00b7 {status.state}")
        self.counts.value = render_counts(status)
        workers = self.pool.workers()
        self.grid.value = render_grid(workers)
        self.usage.value = render_usage(workers)
        call = self._feed.call
        self.running_call.value = ("" if call is None else
                                   html.escape(f"{call.label}: {counts_text(call)}"))
        self.event_log.value = "<br>".join(html.escape(line) for line in self._feed.log)

    def _draw_timeline(self) -> None:
        """The picture while the toggle is on; nothing (and no cost) while it is off."""
        if self.timeline_toggle.value:
            self.timeline.value = self.pool.timeline().latest(TIMELINE_SPANS).to_svg()
        else:
            self.timeline.value = ""
