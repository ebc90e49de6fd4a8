"""Adapter for Ray's multiprocessing.Pool drop-in, on a fresh local Ray instance."""

import ray
from ray.util.multiprocessing import Pool

from bench.frameworks import PoolHandle


class _RayPoolHandle(PoolHandle):
    """A Pool handle that also owns the Ray instance the pool runs on."""

    def close(self):
        """Close the pool, then stop the local Ray instance it ran on."""
        super().close()
        ray.shutdown()


def start(n):
    """Start Ray with n CPUs (part of start-up, as a user pays it) and an n-actor pool."""
    ray.init(num_cpus=n, include_dashboard=False)
    return _RayPoolHandle(Pool(processes=n))
