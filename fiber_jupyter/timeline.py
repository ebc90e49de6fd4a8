"""Where the time went: each worker's batches over time, with crashes and resizes.

The scheduler writes one ``Span`` per batch that ended on a worker (its result
arrived, its worker was lost, or it was a speculative copy that lost the race)
and one ``Mark`` per worker loss, resize or speculative copy into a
``TaskLog``. The log is bounded (the most recent ``MAX_SPANS`` spans and
``MAX_MARKS`` marks), so a pool that runs for days keeps a fixed amount of it.

``pool.timeline()`` returns a ``Timeline``, a snapshot that Jupyter shows as a
picture (SVG, no plotting library needed): one row per worker, a bar per
batch coloured by call, lost batches in red, cancelled copies hatched, losses
and resizes as marks; gaps between bars are idle time.
"""

from __future__ import annotations

import collections
import html
import threading
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence

from .events import PoolEvent, Scaled, TaskSpeculated, WorkerLost

MAX_SPANS = 20_000
MAX_MARKS = 2_000
WIDTH = 900  # pixels: a notebook's output area
# Bar colours by call, cycling; lost work is always red.
_CALL_COLOURS = ("#4c78a8", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1")
_LOST = "#e15759"


@dataclass(frozen=True)
class Span:
    """Items ``[start, stop)`` of call ``job_id`` on ``worker_id`` from ``began`` to ``ended``.

    ``outcome`` is "done", "lost" (its worker ended) or "cancelled" (a copy
    whose other copy won, or a call cancelled). Times are ``time.time()``.
    """

    worker_id: str
    job_id: int
    label: str
    start: int
    stop: int
    began: float
    ended: float
    outcome: str


@dataclass(frozen=True)
class Mark:
    """Something that happened at ``time``: a "lost" worker, a "resize", a "copy"."""

    time: float
    kind: str
    worker_id: Optional[str]
    text: str


class TaskLog:
    """The bounded record the scheduler writes and ``pool.timeline()`` reads."""

    def __init__(self, max_spans: int = MAX_SPANS, max_marks: int = MAX_MARKS) -> None:
        self._lock = threading.Lock()
        self._spans: Deque[Span] = collections.deque(maxlen=max_spans)
        self._marks: Deque[Mark] = collections.deque(maxlen=max_marks)
        self._target: Optional[int] = None

    def span(self, span: Span) -> None:
        with self._lock:
            self._spans.append(span)

    def on_event(self, event: PoolEvent) -> None:
        """Keep a mark for the events a timeline shows (of resizes, target changes only)."""
        if isinstance(event, Scaled):
            if event.target == self._target:
                return
            self._target = event.target
        mark = _mark_for(event)
        if mark is not None:
            with self._lock:
                self._marks.append(mark)

    def snapshot(self, pool_name: str) -> "Timeline":
        with self._lock:
            return Timeline(pool_name, list(self._spans), list(self._marks))


def _mark_for(event: PoolEvent) -> Optional[Mark]:
    if isinstance(event, WorkerLost):
        return Mark(event.time, "lost", event.worker_id, f"{event.worker_id} lost: {event.reason}")
    if isinstance(event, Scaled):
        return Mark(event.time, "resize", None, f"target {event.target}")
    if isinstance(event, TaskSpeculated):
        return Mark(event.time, "copy", event.worker_id,
                    f"copy of {event.start}-{event.stop - 1} from {event.running_on}")
    return None


@dataclass(frozen=True)
class Timeline:
    """A pool's recent batches and incidents; shown as a picture in Jupyter."""

    pool: str
    spans: List[Span]
    marks: List[Mark]

    def latest(self, spans: int) -> "Timeline":
        """Only the last ``spans`` batches and the marks since the first of them.

        Live views redraw the picture every few seconds; this keeps what they
        send small however long the pool has run.
        """
        kept = self.spans[-spans:] if spans > 0 else []
        since = min((span.began for span in kept), default=float("inf"))
        return Timeline(self.pool, kept, [mark for mark in self.marks if mark.time >= since])

    def workers(self) -> List[str]:
        """Worker ids in the order they first appear, the rows of the picture."""
        seen: Dict[str, None] = {}
        for span in self.spans:
            seen.setdefault(span.worker_id, None)
        for mark in self.marks:
            if mark.worker_id is not None and mark.kind == "lost":
                seen.setdefault(mark.worker_id, None)
        return list(seen)

    def busy_seconds(self) -> Dict[str, float]:
        """Seconds each worker spent on batches, the sum of its spans."""
        totals: Dict[str, float] = collections.defaultdict(float)
        for span in self.spans:
            totals[span.worker_id] += span.ended - span.began
        return dict(totals)

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def to_svg(self, width: int = WIDTH, row_height: int = 16) -> str:
        """The picture: a row per worker, time left to right."""
        rows = self.workers()
        if not self.spans:
            return _empty_svg(width, f"pool {self.pool}: no finished batches yet")
        return _Drawing(self, rows, width, row_height).svg()


class _Drawing:
    """Lays out one timeline as SVG; knows pixels, nothing about pools."""

    LABEL_WIDTH = 60
    AXIS_HEIGHT = 22

    def __init__(self, timeline: Timeline, rows: Sequence[str], width: int,
                 row_height: int) -> None:
        self.timeline = timeline
        self.row_of = {worker: index for index, worker in enumerate(rows)}
        self.width = width
        self.row_height = row_height
        self.t0 = min(span.began for span in timeline.spans)
        t1 = max(span.ended for span in timeline.spans)
        self.scale = (width - self.LABEL_WIDTH - 10) / max(t1 - self.t0, 1e-6)
        self.duration = t1 - self.t0
        self.height = self.AXIS_HEIGHT + row_height * len(rows) + 4
        self.colours: Dict[int, str] = {}

    def x(self, t: float) -> float:
        return self.LABEL_WIDTH + (t - self.t0) * self.scale

    def y(self, worker: str) -> float:
        return self.AXIS_HEIGHT + self.row_of[worker] * self.row_height

    def svg(self) -> str:
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                 f'height="{self.height}" font-family="sans-serif" font-size="10">',
                 '<defs><pattern id="fj-cancelled" width="4" height="4" '
                 'patternUnits="userSpaceOnUse"><path d="M0,4 l4,-4" stroke="#999"/>'
                 '</pattern></defs>',
                 f'<text x="2" y="12">pool {html.escape(self.timeline.pool)}: '
                 f'{len(self.timeline.spans)} batches over {self.duration:.2f} s</text>']
        parts += [self._row_label(worker) for worker in self.row_of]
        parts += [self._bar(span) for span in self.timeline.spans]
        parts += [self._mark(mark) for mark in self.timeline.marks
                  if mark.time >= self.t0 and (mark.worker_id is None
                                               or mark.worker_id in self.row_of)]
        parts.append("</svg>")
        return "".join(parts)

    def _row_label(self, worker: str) -> str:
        return (f'<text x="2" y="{self.y(worker) + self.row_height - 4}">'
                f'{html.escape(worker)}</text>')

    def _bar(self, span: Span) -> str:
        left = self.x(span.began)
        width = max(1.0, (span.ended - span.began) * self.scale)
        fill = {"lost": _LOST, "cancelled": "url(#fj-cancelled)"}.get(
            span.outcome, self._colour(span.job_id))
        title = (f"{span.label} items {span.start}-{span.stop - 1}: {span.outcome}, "
                 f"{span.ended - span.began:.3f} s")
        return (f'<rect x="{left:.1f}" y="{self.y(span.worker_id) + 2}" width="{width:.1f}" '
                f'height="{self.row_height - 4}" fill="{fill}" data-outcome="{span.outcome}">'
                f'<title>{html.escape(title)}</title></rect>')

    def _mark(self, mark: Mark) -> str:
        left = self.x(mark.time)
        if mark.worker_id is None:
            top, bottom = self.AXIS_HEIGHT, self.height
        else:
            top = self.y(mark.worker_id)
            bottom = top + self.row_height
        colour = _LOST if mark.kind == "lost" else "#555"
        return (f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top}" y2="{bottom}" '
                f'stroke="{colour}" stroke-dasharray="2,2" data-mark="{mark.kind}">'
                f'<title>{html.escape(mark.text)}</title></line>')

    def _colour(self, job_id: int) -> str:
        return self.colours.setdefault(job_id,
                                       _CALL_COLOURS[len(self.colours) % len(_CALL_COLOURS)])


def _empty_svg(width: int, text: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" '
            f'font-family="sans-serif" font-size="10"><text x="2" y="14">'
            f'{html.escape(text)}</text></svg>')
