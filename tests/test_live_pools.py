"""Specification: every pool of the process is listed, weakly, and observers see new ones."""

from __future__ import annotations

import gc

import fiber_jupyter
from fiber_jupyter import live_pools


def test_pools_are_listed_oldest_first_until_they_are_garbage():
    first = fiber_jupyter.Pool(1, name="first", progress=False)
    second = fiber_jupyter.Pool(1, name="second", progress=False)
    try:
        names = [pool.name for pool in live_pools.pools()]
        assert names.index("first") < names.index("second")
    finally:
        for pool in (first, second):
            pool.terminate()
            pool.join()
    del first, pool
    gc.collect()
    names = [pool.name for pool in live_pools.pools()]
    assert "first" not in names and "second" in names


def test_observers_learn_of_each_new_pool_until_removed():
    seen = []
    observer = live_pools.on_created(lambda pool: seen.append(pool.name))
    try:
        with fiber_jupyter.Pool(1, name="watched", progress=False):
            pass
    finally:
        live_pools.remove_observer(observer)
    with fiber_jupyter.Pool(1, name="unwatched", progress=False):
        pass
    assert seen == ["watched"]
