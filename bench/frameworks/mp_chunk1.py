"""Adapter for multiprocessing.Pool forced to one task per message (W3 only).

It shows what default chunking buys multiprocessing, i.e. the per-message cost.
"""

from bench.frameworks import PoolHandle, mp_pool


class _ChunksizeOneHandle(PoolHandle):
    """Same pool, but map sends one task per message."""

    def map(self, fn, iterable):
        """Map sending every task in its own message."""
        return self.pool.map(fn, iterable, chunksize=1)


def start(n):
    """Start a forked n-worker pool whose map uses chunksize=1."""
    return _ChunksizeOneHandle(mp_pool.start(n).pool)
