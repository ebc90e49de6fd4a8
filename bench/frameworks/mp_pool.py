"""Adapter for multiprocessing.Pool with fork, Python's default start method on Linux."""

import multiprocessing

from bench.frameworks import PoolHandle


def start(n):
    """Start an n-worker forked pool; map keeps Pool's default chunksize."""
    return PoolHandle(multiprocessing.get_context("fork").Pool(n))
