"""Adapter for the project under test: fiber_jupyter.Pool, used like multiprocessing.Pool."""

import threading

# The names, not just the package (whose names load on first use): the import the report
# times is then the whole of what a pool needs, as for every other framework.
from fiber_jupyter import Pool, Scaled

from bench.frameworks import PoolHandle

# Generous: only reached if workers cannot start at all.
READY_TIMEOUT_S = 60


class FiberHandle(PoolHandle):
    """A pool handle that can wait until every worker has connected.

    fiber_jupyter starts workers as fresh interpreters (as Ray, Dask and
    ipyparallel do), while multiprocessing forks them instantly; W2-W6 measure
    a pool that is up, so they wait for all workers before timing.
    """

    def wait_ready(self):
        """Block until the pool's live worker count reaches its target."""
        ready = threading.Event()

        def on_event(event):
            if isinstance(event, Scaled) and event.live >= event.target:
                ready.set()

        self.pool.events.subscribe(on_event)
        try:
            status = self.pool.status()
            if status.live < status.target and not ready.wait(READY_TIMEOUT_S):
                status = self.pool.status()
                raise RuntimeError(f"pool not ready after {READY_TIMEOUT_S} s: {status}")
        finally:
            self.pool.events.unsubscribe(on_event)


def start(n):
    """Start an n-worker fiber_jupyter pool."""
    return FiberHandle(Pool(n))
