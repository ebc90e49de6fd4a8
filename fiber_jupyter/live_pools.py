"""Every pool of this process, for front ends that show them all (the side panel).

A notebook makes pools with ``%fiber_pool`` and with ``Pool(...)`` in its own
code; a panel that follows the notebook's kernel must see both. Pools are
held weakly, so being listed never keeps a pool (and its workers) alive, and
observers learn of each new pool as it is created, before it can emit its
first event.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Callable, List

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger(__name__)

PoolObserver = Callable[["Pool"], None]

_lock = threading.Lock()
_pools: List["weakref.ref[Pool]"] = []  # in creation order
_observers: List[PoolObserver] = []


def track(pool: "Pool") -> None:
    """Called by each Pool as it is created: list it and tell the observers."""
    with _lock:
        _pools.append(weakref.ref(pool))
        observers = list(_observers)
    for observer in observers:
        try:
            observer(pool)
        except Exception:
            log.exception("pool observer %r failed on pool %s", observer, pool.name)


def pools() -> List["Pool"]:
    """The pools not yet garbage-collected, oldest first (stopped ones included)."""
    with _lock:
        alive = [pool for pool in (ref() for ref in _pools) if pool is not None]
        _pools[:] = [weakref.ref(pool) for pool in alive]
    return alive


def on_created(observer: PoolObserver) -> PoolObserver:
    """Call ``observer(pool)`` for every pool created from now on."""
    with _lock:
        _observers.append(observer)
    return observer


def remove_observer(observer: PoolObserver) -> None:
    with _lock:
        if observer in _observers:
            _observers.remove(observer)
