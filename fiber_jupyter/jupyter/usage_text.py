"""Workers' CPU and memory in words, as the pool widget and the side panel show them.

Workers report their own CPU time and resident memory with each heartbeat
(``usage.py``); ``pool.workers()`` carries the latest. Views show the pool's
total, the worker holding the most memory (the first place to look for a
leak, or for a population member that grew too big), and, in the widget's
grid, the range over each run of workers.

Pure functions of ``WorkerInfo`` lists, so the words are tested without a pool.
"""

from __future__ import annotations

from typing import Iterable, List, NamedTuple, Optional

from ..status import WorkerInfo

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


class UsageSummary(NamedTuple):
    """Totals over the workers that reported; None (and 0 reporting) before any did."""

    cpu_percent: Optional[float]
    memory_bytes: Optional[int]
    reporting: int
    heaviest: Optional[WorkerInfo]


def format_bytes(count: int) -> str:
    """``412 MiB``, ``3.2 GiB``: binary units, one decimal below ten, whole numbers above."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            break
        value /= 1024
    return f"{value:.0f} {unit}" if value >= 10 or unit == "B" else f"{value:.1f} {unit}"


def _with_cpu(percent: Optional[float], rest: str) -> str:
    """``cpu 99 % · rest``; just ``rest`` until the CPU share is known (after two heartbeats)."""
    return rest if percent is None else f"cpu {percent:.0f} % \u00b7 {rest}"


def summarize(workers: Iterable[WorkerInfo]) -> UsageSummary:
    reported = [worker for worker in workers if worker.memory_bytes is not None]
    if not reported:
        return UsageSummary(None, None, 0, None)
    cpus = [worker.cpu_percent for worker in reported if worker.cpu_percent is not None]
    return UsageSummary(sum(cpus) if cpus else None,
                        sum(worker.memory_bytes or 0 for worker in reported), len(reported),
                        max(reported, key=lambda worker: worker.memory_bytes or 0))


def usage_text(summary: UsageSummary) -> str:
    """``cpu 187 % · memory 412 MiB (8 workers)``."""
    if summary.memory_bytes is None:
        return "no usage reported yet"
    plural = "" if summary.reporting == 1 else "s"
    return _with_cpu(summary.cpu_percent, f"memory {format_bytes(summary.memory_bytes)} "
                                          f"({summary.reporting} worker{plural})")


def heaviest_text(worker: WorkerInfo) -> str:
    """``most memory: w3, 96 MiB, cpu 99 %``."""
    cpu = "" if worker.cpu_percent is None else f", cpu {worker.cpu_percent:.0f} %"
    return f"most memory: {worker.worker_id}, {format_bytes(worker.memory_bytes or 0)}{cpu}"


def range_text(workers: List[WorkerInfo]) -> str:
    """A run of workers' CPU and memory: one value each, or ``low–high`` over the run."""
    cpus = [worker.cpu_percent for worker in workers if worker.cpu_percent is not None]
    memories = [worker.memory_bytes for worker in workers if worker.memory_bytes is not None]
    parts = []
    if cpus:
        parts.append(_span(min(cpus), max(cpus), lambda value: f"{value:.0f}", "cpu ", " %"))
    if memories:
        parts.append(_span(min(memories), max(memories), format_bytes, "memory ", ""))
    return " \u00b7 ".join(parts)


def _span(low, high, form, prefix: str, suffix: str) -> str:
    text = form(low) if form(low) == form(high) else f"{form(low)}\u2013{form(high)}"
    return f"{prefix}{text}{suffix}"
