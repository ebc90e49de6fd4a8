"""Adapter for loky's reusable executor (what joblib uses), default chunksize=1."""

from loky import get_reusable_executor


class _Handle:
    """Executor API (submit/map/shutdown) seen through the harness interface."""

    def __init__(self, executor):
        self.executor = executor

    def apply(self, fn, args):
        """Submit one call and wait for its result."""
        return self.executor.submit(fn, *args).result()

    def map(self, fn, iterable):
        """Executor.map with its default chunking."""
        return list(self.executor.map(fn, iterable))

    def close(self):
        """Shut the workers down and wait for them."""
        self.executor.shutdown(wait=True)


def start(n):
    """Get a reusable executor with n workers."""
    return _Handle(get_reusable_executor(max_workers=n))
