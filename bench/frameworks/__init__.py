"""Registry of framework adapters and the handle shared by Pool-like APIs.

Every adapter module exposes ``start(n) -> handle``; a handle has
``apply(fn, args)``, ``map(fn, iterable) -> list`` and ``close()``. Modules are
named here as strings so that run.py never imports a framework itself: only
the fresh child process that measures it does.
"""

from dataclasses import dataclass

from bench.workloads import WORKLOADS

SUBJECT = "fiber_jupyter"


@dataclass(frozen=True)
class Framework:
    """One measured configuration; ``workloads`` limits a variant to some workloads."""

    name: str
    label: str
    module: str
    workloads: tuple = WORKLOADS


FRAMEWORKS = (
    Framework(SUBJECT, "fiber_jupyter.Pool", "bench.frameworks.fiber_jupyter_pool"),
    Framework("mp", "multiprocessing.Pool (fork)", "bench.frameworks.mp_pool"),
    Framework("mp-chunk1", "multiprocessing.Pool chunksize=1", "bench.frameworks.mp_chunk1",
              workloads=("W3",)),
    Framework("loky", "loky (reusable executor)", "bench.frameworks.loky_executor"),
    Framework("ipyparallel", "ipyparallel (LoadBalancedView)", "bench.frameworks.ipyparallel_view"),
    Framework("dask", "Dask distributed LocalCluster", "bench.frameworks.dask_cluster"),
    Framework("ray-pool", "Ray util.multiprocessing.Pool", "bench.frameworks.ray_pool"),
)
BY_NAME = {framework.name: framework for framework in FRAMEWORKS}


class PoolHandle:
    """Handle for any object with multiprocessing.Pool's apply/map/close/join."""

    def __init__(self, pool):
        self.pool = pool

    def apply(self, fn, args):
        """Run fn(*args) on a worker and wait for the result."""
        return self.pool.apply(fn, args)

    def map(self, fn, iterable):
        """Map with the pool's own default chunking."""
        return list(self.pool.map(fn, iterable))

    def close(self):
        """Let workers finish and exit, as a well-behaved user would."""
        self.pool.close()
        self.pool.join()
