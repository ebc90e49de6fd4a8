"""Specification: ``pool.timeline()`` shows each worker's batches over time, with losses,
copies and resizes, in bounded memory, as a picture Jupyter can display."""

from __future__ import annotations

import os
import signal
import xml.etree.ElementTree as ElementTree

import pytest

from fiber_jupyter import TaskRetried, WorkerReady
from fiber_jupyter.timeline import Mark, Span, TaskLog, Timeline

from . import tasks
from .conftest import EventRecorder, wait_for

SVG = "{http://www.w3.org/2000/svg}"


def _items(spans, outcome="done"):
    return sorted(x for s in spans if s.outcome == outcome for x in range(s.start, s.stop))


def test_each_batch_of_a_map_is_a_done_span_on_the_worker_that_ran_it(make_pool):
    pool = make_pool(2)
    pool.map(tasks.square, range(40), chunksize=4)
    timeline = pool.timeline()
    assert _items(timeline.spans) == list(range(40))
    assert set(timeline.workers()) <= {w.worker_id for w in pool.workers()}
    assert all(s.began <= s.ended for s in timeline.spans)


@pytest.mark.timeout(60)
def test_a_killed_workers_batch_is_lost_there_and_done_elsewhere_with_a_mark(make_pool):
    pool = make_pool(2)
    events = EventRecorder(pool)
    result = pool.starmap_async(tasks.slow_square, [(x, 0.05) for x in range(40)], chunksize=1)
    victim = events.next(WorkerReady)
    wait_for(lambda: pool.status().tasks_done >= 4, what="the map to be under way")
    os.kill(victim.pid, signal.SIGKILL)
    retried = events.next(TaskRetried)
    result.get(timeout=60)
    timeline = pool.timeline()
    lost = [s for s in timeline.spans if s.outcome == "lost"]
    assert {s.worker_id for s in lost} == {victim.worker_id}
    assert retried.start in _items(lost, "lost")
    assert _items(timeline.spans) == list(range(40))
    assert [m.worker_id for m in timeline.marks if m.kind == "lost"] == [victim.worker_id]


@pytest.mark.timeout(60)
def test_a_speculative_copy_that_lost_the_race_is_cancelled_on_its_worker(make_pool, tmp_path):
    pool = make_pool(2)
    jobs = [(x, str(tmp_path), 120) for x in range(20)]
    pool.starmap(tasks.square_or_straggle, jobs, chunksize=1)
    timeline = pool.timeline()
    assert 0 in _items(timeline.spans, "cancelled")
    assert _items(timeline.spans) == list(range(20))
    assert any(m.kind == "copy" for m in timeline.marks)


def test_the_log_keeps_only_the_most_recent_spans():
    log = TaskLog(max_spans=10)
    for x in range(25):
        log.span(Span("w0", 1, "map(f)", x, x + 1, float(x), x + 0.5, "done"))
    assert [s.start for s in log.snapshot("p").spans] == list(range(15, 25))


def test_the_latest_spans_keep_the_marks_from_the_first_of_them_on():
    spans = [Span("w0", 1, "map(f)", x, x + 1, float(x), x + 0.5, "done") for x in range(10)]
    marks = [Mark(2.5, "lost", "w1", "w1 lost"), Mark(7.5, "resize", None, "target 3")]
    latest = Timeline("p", spans, marks).latest(3)
    assert [s.start for s in latest.spans] == [7, 8, 9]
    assert latest.marks == [marks[1]]
    assert Timeline("p", spans, marks).latest(0).spans == []


def test_the_picture_has_a_row_per_worker_and_a_bar_per_span():
    spans = [Span("w0", 1, "map(f)", 0, 2, 10.0, 11.0, "done"),
             Span("w1", 1, "map(f)", 2, 4, 10.0, 10.5, "lost"),
             Span("w2", 1, "map(f)", 2, 4, 10.5, 11.5, "done")]
    svg = ElementTree.fromstring(Timeline("p", spans, []).to_svg())
    bars = svg.findall(f"{SVG}rect")
    assert [bar.get("data-outcome") for bar in bars] == ["done", "lost", "done"]
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    assert labels[1:] == ["w0", "w1", "w2"]
    assert float(bars[0].get("width")) > float(bars[1].get("width"))


def test_an_empty_timeline_says_so():
    assert "no finished batches yet" in Timeline("p", [], []).to_svg()
