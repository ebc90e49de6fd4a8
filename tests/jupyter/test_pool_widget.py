"""Specification of the pool widget (pool_widget.py), without a front end: its rendering,
and its size controls driven as a front end drives them, by setting their values."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import pytest

from fiber_jupyter import EventStream, PoolClosed, PoolStatus, Scaled, WorkerInfo
from fiber_jupyter.adaptive import AdaptSettings
from fiber_jupyter.jupyter.pool_widget import (USAGE_TITLE_RUNS, PoolWidget, render_counts,
                                                render_grid, render_usage)

from ..conftest import wait_for


def worker(number: int, state: str = "ready", tasks: int = 0) -> WorkerInfo:
    return WorkerInfo(f"w{number}", state, tasks, 1000 + number, "host")


def test_the_grid_has_one_square_per_worker_in_start_order_with_runs_merged():
    workers = [worker(10, tasks=2), worker(2), worker(1), worker(0, "starting"),
               worker(3, "draining", 1)]
    grid = render_grid(workers)
    runs = re.findall(r'class="\w+" title="[^"]*: (\w+)">(\u25a0+)<', grid)
    titles = re.findall(r'title="([^"]*)"', grid)
    assert [(state, len(squares)) for state, squares in runs] == [
        ("starting", 1), ("idle", 2), ("draining", 1), ("busy", 1)]
    assert titles == ["w0: starting", "w1\u2013w2 (2): idle", "w3: draining", "w10: busy"]


def test_2048_workers_make_a_small_grid_even_when_every_neighbour_differs():
    clustered = [worker(n, tasks=int(n < 1500)) for n in range(2048)]
    alternating = [worker(n, tasks=n % 2) for n in range(2048)]
    assert len(render_grid(clustered)) < 4 * 1024
    assert len(render_grid(alternating)) < 100 * 1024
    assert render_grid(alternating).count("\u25a0") == 2048


def test_each_runs_hover_text_has_its_cpu_and_memory_one_value_or_the_range():
    mib = 1024 * 1024
    workers = [worker(0)._replace(cpu_percent=99.4, memory_bytes=80 * mib),
               worker(1)._replace(cpu_percent=2.0, memory_bytes=96 * mib),
               worker(2, tasks=1)._replace(cpu_percent=100.0, memory_bytes=90 * mib),
               worker(3, "starting")]
    titles = re.findall(r'title="([^"]*)"', render_grid(workers))
    assert titles == ["w0\u2013w1 (2): idle \u00b7 cpu 2\u201399 % "
                      "\u00b7 memory 80 MiB\u201396 MiB",
                      "w2: busy \u00b7 cpu 100 % \u00b7 memory 90 MiB", "w3: starting"]


def test_a_grid_of_more_runs_than_hover_texts_with_usage_allow_names_only_states():
    mib = 1024 * 1024
    alternating = [worker(n, tasks=n % 2)._replace(cpu_percent=99.0, memory_bytes=85 * mib)
                   for n in range(2048)]
    grid = render_grid(alternating)
    assert len(grid) < 100 * 1024 and "memory" not in grid
    assert "memory 85 MiB" in render_grid(alternating[:USAGE_TITLE_RUNS])


def test_the_usage_line_has_the_totals_and_the_worker_with_the_most_memory():
    mib = 1024 * 1024
    workers = [worker(0)._replace(cpu_percent=99.0, memory_bytes=80 * mib),
               worker(1)._replace(cpu_percent=50.0, memory_bytes=1500 * mib), worker(2)]
    assert render_usage(workers) == ("cpu 149 % \u00b7 memory 1.5 GiB (2 workers) \u00b7 "
                                     "most memory: w1, 1.5 GiB, cpu 50 %")
    assert render_usage([worker(0)]) == "no usage reported yet"


def test_counts_name_every_number_of_the_status():
    status = PoolStatus("running", 8, 6, 2, 4, 2, 1, 30, 8, 120)
    assert render_counts(status) == (
        "target 8 \u00b7 live 6 \u00b7 starting 2 \u00b7 busy 4 \u00b7 idle 2 \u00b7 lost 1"
        "   |   tasks: 30 queued \u00b7 8 running \u00b7 120 done")


# The size controls ---------------------------------------------------------------------

class ScriptedPool:
    """The part of the Pool API the widget uses, recording what it asks of the pool.

    The test plays the scheduler: it delivers the Scaled events a pool would.
    ``adapt`` refuses bounds as Pool.adapt does.
    """

    name = "scripted"
    backend = "local"

    def __init__(self, target: int, adapt: Optional[Tuple[int, int]] = None) -> None:
        self.events = EventStream()
        self.asked: List[tuple] = []
        self._status = PoolStatus("running", target, target, 0, 0, target, 0, 0, 0, 0, adapt)

    def status(self) -> PoolStatus:
        return self._status

    def workers(self) -> List[WorkerInfo]:
        return []

    def scale(self, n: int) -> None:
        self.asked.append(("scale", n))

    def adapt(self, minimum: int, maximum: int) -> None:
        AdaptSettings(minimum, maximum)
        self.asked.append(("adapt", minimum, maximum))

    def scaled(self, target: int, adapt: Optional[Tuple[int, int]]) -> None:
        """What the scheduler does when the target or the mode changed."""
        self._status = self._status._replace(target=target, adapt=adapt)
        self.events.deliver(Scaled(self.name, target, target, 0, adapt))


@pytest.fixture
def widget_of():
    widgets = []

    def make(pool) -> PoolWidget:
        widgets.append(PoolWidget(pool))
        return widgets[-1]

    yield make
    for widget in widgets:  # stops its refresher thread
        widget.pool.events.deliver(PoolClosed(widget.pool.name, "terminating"))


def sizing(widget: PoolWidget) -> tuple:
    """What the size controls show: slider, box, mode, checkbox, bounds."""
    return (widget.slider.value, widget.size_box.value, widget.mode.value,
            widget.adapt_box.value, widget.adapt_min.value, widget.adapt_max.value)


def test_a_manual_pool_shows_its_mode_and_offers_bounds_up_to_twice_its_size(widget_of):
    widget = widget_of(ScriptedPool(4))
    assert sizing(widget) == (4, 4, "manual", False, 1, 8)


def test_the_mode_follows_the_pool_whoever_changed_it_without_asking_anything(widget_of):
    pool = ScriptedPool(4)
    widget = widget_of(pool)
    pool.scaled(4, (2, 6))  # e.g. %fiber_scale --adapt 2:6, or the side panel
    assert sizing(widget) == (4, 4, "adaptive 2\u20136", True, 2, 6)
    pool.scaled(5, None)
    assert sizing(widget) == (5, 5, "manual", False, 2, 6)
    assert pool.asked == []


def test_ticking_adapt_asks_the_pool_to_adapt_within_the_bounds_shown(widget_of):
    pool = ScriptedPool(4)
    widget = widget_of(pool)
    widget.adapt_min.value, widget.adapt_max.value = 2, 10
    assert pool.asked == []  # bounds alone change nothing while the pool is manual
    widget.adapt_box.value = True
    assert pool.asked == [("adapt", 2, 10)]
    assert widget.mode.value == "adaptive 2\u201310"
    widget.adapt_max.value = 12
    assert pool.asked == [("adapt", 2, 10), ("adapt", 2, 12)]


def test_while_adapting_the_slider_follows_the_target_and_never_sends_it_back(widget_of):
    pool = ScriptedPool(2, adapt=(2, 16))
    widget = widget_of(pool)
    for target in (9, 16, 3):
        pool.scaled(target, (2, 16))
        assert sizing(widget) == (target, target, "adaptive 2\u201316", True, 2, 16)
    assert pool.asked == []


@pytest.mark.parametrize("control", ["slider", "size_box"])
def test_moving_the_size_by_hand_scales_the_pool_which_ends_adapting(widget_of, control):
    pool = ScriptedPool(3, adapt=(1, 8))
    widget = widget_of(pool)
    getattr(widget, control).value = 5
    assert pool.asked == [("scale", 5)]
    assert sizing(widget) == (5, 5, "manual", False, 1, 8)


def test_unticking_adapt_keeps_the_current_target_by_hand(widget_of):
    pool = ScriptedPool(2, adapt=(1, 8))
    widget = widget_of(pool)
    pool.scaled(6, (1, 8))
    widget.adapt_box.value = False
    assert pool.asked == [("scale", 6)]
    assert sizing(widget)[:4] == (6, 6, "manual", False)


def test_bounds_the_pool_refuses_are_logged_and_the_controls_show_its_mode_again(widget_of):
    pool = ScriptedPool(4)
    widget = widget_of(pool)
    widget.adapt_min.value, widget.adapt_max.value = 8, 4
    widget.adapt_box.value = True
    assert pool.asked == []
    assert sizing(widget)[:4] == (4, 4, "manual", False)
    wait_for(lambda: "cannot adapt: adapt minimum 8 is larger than maximum 4"
             in widget.event_log.value, what="the refusal in the widget's log")


def test_a_real_pool_switches_to_adaptive_from_the_widget_and_back_by_the_slider(
        widget_of, make_pool):
    pool = make_pool(1, name="widget-adapt", progress=False)
    widget = widget_of(pool)
    widget.adapt_min.value, widget.adapt_max.value = 2, 3
    widget.adapt_box.value = True
    wait_for(lambda: pool.status().adapt == (2, 3) and pool.status().target == 2,
             what="the pool adapting, grown to its minimum")
    wait_for(lambda: sizing(widget)[:4] == (2, 2, "adaptive 2\u20133", True),
             what="the widget showing the adapted target")
    widget.slider.value = 1
    wait_for(lambda: pool.status().adapt is None and pool.status().target == 1,
             what="the pool manual again, at the slider's size")
    assert sizing(widget)[:4] == (1, 1, "manual", False)


def test_the_timeline_toggle_draws_the_recent_batches_while_it_is_on(widget_of, make_pool):
    pool = make_pool(2, name="widget-timeline", progress=False)
    widget = widget_of(pool)
    pool.map(abs, range(-12, 0), chunksize=3)
    assert widget.timeline.value == ""  # nothing drawn, nothing sent, until asked
    widget.timeline_toggle.value = True
    wait_for(lambda: widget.timeline.value.count('data-outcome="done"') == 4,
             what="the picture of the map's four batches")
    pool.map(abs, range(-6, 0), chunksize=3)
    wait_for(lambda: widget.timeline.value.count('data-outcome="done"') == 6,
             what="the picture redrawn with the next map")
    widget.timeline_toggle.value = False
    wait_for(lambda: widget.timeline.value == "", what="the picture gone")


def test_the_usage_line_follows_the_heartbeats_of_an_idle_pool(widget_of, make_pool):
    pool = make_pool(2, name="widget-usage", progress=False)
    widget = widget_of(pool)
    # The CPU share needs two heartbeats of each worker, which come with no event at all.
    wait_for(lambda: pool.workers() and all(w.cpu_percent is not None for w in pool.workers()),
             what="both workers' CPU share")
    wait_for(lambda: widget.usage.value.startswith("cpu ") and "(2 workers)" in widget.usage.value,
             what="the widget's usage line with the CPU share")
