"""A worker's own CPU time and resident memory, sent with its heartbeats.

Measured by the worker process itself, so it is the same on every backend: a
local process and a pod report alike, with no metrics server needed. The
master turns successive CPU times into a percentage (``CpuMeter``).
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Optional, Tuple

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resource_use() -> Tuple[float, int]:
    """CPU seconds used so far (all threads) and resident bytes now, of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, _resident_bytes(usage.ru_maxrss)


def _resident_bytes(peak: int) -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:  # no /proc (macOS): the peak will have to do
        return peak if sys.platform == "darwin" else peak * 1024


class CpuMeter:
    """CPU percent of one worker between its last two heartbeats (100 = one core)."""

    def __init__(self) -> None:
        self.percent: Optional[float] = None
        self._last: Optional[Tuple[float, float]] = None

    def sample(self, cpu_seconds: float, now: float) -> None:
        if self._last is not None and now > self._last[1]:
            used = max(0.0, cpu_seconds - self._last[0])
            self.percent = 100.0 * used / (now - self._last[1])
        self._last = (cpu_seconds, now)
