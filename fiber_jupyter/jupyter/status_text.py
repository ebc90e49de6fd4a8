"""Pool status as a fixed-width text table, as ``%fiber_status`` shows it.

One row per pool; a group line names the worker and task counts so the
column headers can stay one short word each (cut after ``queued`` here)::

                            workers                                                tasks
    name  backend  state    mode          target  live  pending  busy  idle  lost  queued
    pool  local    running  manual             3     3        0     0     3     0       0
    es    local    running  adaptive 1–8       5     5        0     5     0     0     120

The mode says who sets the target: the user (``manual``, ``pool.scale``) or
the backlog, within bounds (``adaptive 1–8``, ``pool.adapt``).

Text columns are left-aligned, counts right-aligned, columns two spaces apart.
A pure function of its input, so the format is tested without a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

from ..adaptive import AdaptSettings
from ..status import PoolStatus

GAP = "  "


class StatusRow(NamedTuple):
    """What one table row shows: a pool's name and backend, and its status snapshot."""

    name: str
    backend: str
    status: PoolStatus


@dataclass(frozen=True)
class _Column:
    header: str
    group: str
    cell: Callable[[StatusRow], object]
    numeric: bool = True


def mode_text(adapt: Optional[Tuple[int, int]]) -> str:
    """``"manual"``, or ``"adaptive 1–8"`` for the bounds of ``status().adapt``."""
    return "manual" if adapt is None else AdaptSettings(*adapt).describe()


def _count(group: str, header: str, field: str) -> _Column:
    return _Column(header, group, lambda row: getattr(row.status, field))


COLUMNS = (
    _Column("name", "", lambda row: row.name, numeric=False),
    _Column("backend", "", lambda row: row.backend, numeric=False),
    _Column("state", "", lambda row: row.status.state, numeric=False),
    _Column("mode", "workers", lambda row: mode_text(row.status.adapt), numeric=False),
    *(_count("workers", field, field)
      for field in ("target", "live", "pending", "busy", "idle", "lost")),
    _count("tasks", "queued", "tasks_queued"),
    _count("tasks", "running", "tasks_running"),
    _count("tasks", "done", "tasks_done"),
)


def render_status(rows: Sequence[StatusRow]) -> str:
    """The table for ``rows``, in the order given (just the headers when empty)."""
    cells = [[column.header for column in COLUMNS]]
    cells += [[str(column.cell(row)) for column in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [_group_line(widths)] + [_row_line(line, widths) for line in cells]
    return "\n".join(lines)


def _row_line(cells: List[str], widths: List[int]) -> str:
    padded = (cell.rjust(width) if column.numeric else cell.ljust(width)
              for cell, width, column in zip(cells, widths, COLUMNS))
    return GAP.join(padded).rstrip()


def _group_line(widths: List[int]) -> str:
    """Each group's name, starting where its first column starts."""
    line = ""
    start = 0
    for width, column, previous in zip(widths, COLUMNS, (None, *COLUMNS)):
        if column.group and (previous is None or previous.group != column.group):
            line = line.ljust(start) + column.group
        start += width + len(GAP)
    return line
