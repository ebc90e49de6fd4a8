"""Specification of the pool widget's pieces that do not need a front end (pool_widget.py)."""

import re

from fiber_jupyter import PoolStatus, WorkerInfo
from fiber_jupyter.jupyter.pool_widget import render_counts, render_grid


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


def test_counts_name_every_number_of_the_status():
    status = PoolStatus("running", 8, 6, 2, 4, 2, 1, 30, 8, 120)
    assert render_counts(status) == (
        "target 8 \u00b7 live 6 \u00b7 starting 2 \u00b7 busy 4 \u00b7 idle 2 \u00b7 lost 1"
        "   |   tasks: 30 queued \u00b7 8 running \u00b7 120 done")
