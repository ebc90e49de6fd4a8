"""Specification: ``%fiber_status`` is a fixed-width table, one row per pool."""

from __future__ import annotations

import re

from fiber_jupyter import PoolStatus
from fiber_jupyter.jupyter.status_text import StatusRow, render_status

RUNNING = PoolStatus(state="running", target=3, live=3, pending=0, busy=1, idle=2, lost=0,
                     tasks_queued=7, tasks_running=1, tasks_done=10)


def test_one_pool_is_a_group_line_a_header_and_a_row():
    assert render_status([StatusRow("pool", "local", RUNNING)]).split("\n") == [
        "                        workers                                          tasks",
        "name  backend  state    mode    target  live  pending  busy  idle  lost  queued  running"
        "  done",
        "pool  local    running  manual       3     3        0     1     2     0       7        1"
        "    10",
    ]


def test_the_mode_says_manual_or_adaptive_with_the_bounds():
    adaptive = RUNNING._replace(adapt=(1, 8))
    rows = [StatusRow("pool", "local", RUNNING), StatusRow("es", "local", adaptive)]
    lines = render_status(rows).split("\n")
    assert lines[0].index("workers") == lines[1].index("mode")  # the group's first column
    columns = [re.split(" {2,}", line) for line in lines[1:]]
    assert [cells[3] for cells in columns] == ["mode", "manual", "adaptive 1\u20138"]


def test_columns_widen_to_their_longest_cell_and_groups_move_with_them():
    big = PoolStatus(state="terminating", target=1024, live=1000, pending=24, busy=990,
                     idle=10, lost=123, tasks_queued=1000000, tasks_running=990,
                     tasks_done=12345678)
    rows = [StatusRow("pool", "local", RUNNING), StatusRow("evolution-strategies", "local", big)]
    assert render_status(rows).split("\n") == [
        " " * 44 + "workers" + " " * 42 + "tasks",
        "name                  backend  state        mode    "
        "target  live  pending  busy  idle  lost   queued  running      done",
        "pool                  local    running      manual  "
        "     3     3        0     1     2     0        7        1        10",
        "evolution-strategies  local    terminating  manual  "
        "  1024  1000       24   990    10   123  1000000      990  12345678",
    ]


def test_rows_keep_the_order_given():
    rows = [StatusRow(name, "local", RUNNING) for name in ("b", "a", "c")]
    assert [line.split()[0] for line in render_status(rows).split("\n")[2:]] == ["b", "a", "c"]


def test_no_pools_is_just_the_headers():
    assert render_status([]).split("\n") == [
        "                      workers                                        tasks",
        "name  backend  state  mode  target  live  pending  busy  idle  lost  queued  running"
        "  done",
    ]
