"""The kernel's pools by name: what the magics start, find and shut down.

A notebook refers to its pools by name (``%fiber_scale 8 --name es``), so the
registry is the one place that maps names to pools, and it owns them. When
the extension loads it registers :meth:`PoolRegistry.shutdown_at_exit` with
atexit, so a kernel that exits normally (shutdown, restart) terminates and
joins every pool it started instead of leaving its workers to notice, one by
one, that the kernel's end of their pipe closed.

There is no lock: magics and the atexit hook both run on the kernel's main
thread. Anything that calls in from another thread must bring one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional

from ..backends import Kubernetes
from ..errors import FiberError
from ..pool import Pool

log = logging.getLogger(__name__)


class UnknownPoolError(FiberError, LookupError):
    """No pool of this kernel has the name asked for; the message lists those that exist."""


class DuplicatePoolError(FiberError, ValueError):
    """A pool of that name already exists; shut it down first to start another."""


@dataclass(frozen=True)
class PoolOptions:
    """Settings fixed when a pool starts, remembered because the Pool does not report them."""

    backend: str
    max_retries: int
    # Remote backends' per-worker hints, e.g. {"cpu": "1", "image": "registry/worker:1"}.
    hints: Dict[str, Any] = field(default_factory=dict)

    def backend_factory(self) -> Any:
        """What Pool(backend=...) gets: the name, or a Kubernetes backend with the hints."""
        if self.backend == Kubernetes.name and self.hints:
            return Kubernetes(**self.hints)
        return self.backend


class _Entry(NamedTuple):
    pool: Pool
    options: PoolOptions


class PoolRegistry:
    """The pools of one kernel, by name, in the order they were started."""

    def __init__(self) -> None:
        # name -> the pool and how it was started, e.g.
        #     {"pool": _Entry(<Pool>, PoolOptions("local", 2))}
        self._entries: Dict[str, _Entry] = {}

    def create(self, name: str, processes: Optional[int], options: PoolOptions) -> Pool:
        """Start a pool called ``name`` (``processes=None``: the backend's natural size)."""
        if name in self._entries:
            raise DuplicatePoolError(f"a pool named {name!r} already exists")
        pool = Pool(processes, name=name, backend=options.backend_factory(),
                    max_retries=options.max_retries)
        self._entries[name] = _Entry(pool, options)
        return pool

    def get(self, name: str) -> Pool:
        return self._entry(name).pool

    def options(self, name: str) -> PoolOptions:
        return self._entry(name).options

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> List[str]:
        return list(self._entries)

    def pools(self) -> List[Pool]:
        return [entry.pool for entry in self._entries.values()]

    def shutdown(self, name: str) -> Pool:
        """Terminate the pool, wait until its workers have exited, and forget it."""
        pool = self._entry(name).pool
        pool.terminate()
        pool.join()
        del self._entries[name]
        return pool

    def shutdown_all(self) -> List[Pool]:
        """Shut down every pool, oldest first; returns them."""
        return [self.shutdown(name) for name in self.names()]

    def shutdown_at_exit(self) -> None:
        """The atexit hook: shut everything down and log it (nobody is left to read a reply)."""
        for pool in self.shutdown_all():
            log.info("shut down pool %r at kernel exit", pool.name)

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none yet"
            raise UnknownPoolError(f"no pool named {name!r} (this kernel's pools: {known})"
                                   ) from None
