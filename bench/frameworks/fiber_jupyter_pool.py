"""Adapter for the project under test: fiber_jupyter.Pool, used like multiprocessing.Pool."""

import fiber_jupyter

from bench.frameworks import PoolHandle


def start(n):
    """Start an n-worker fiber_jupyter pool."""
    return PoolHandle(fiber_jupyter.Pool(n))
