"""Specification: the kernel's registry starts pools by name, finds them, and shuts them down."""

from __future__ import annotations

import logging
import os

import pytest

from fiber_jupyter import FiberError, Scaled
from fiber_jupyter.jupyter.registry import (DuplicatePoolError, PoolOptions, PoolRegistry,
                                            UnknownPoolError)

from ..conftest import EventRecorder, worker_pids

LOCAL = PoolOptions(backend="local", max_retries=2)


@pytest.fixture
def registry():
    pools = PoolRegistry()
    yield pools
    pools.shutdown_all()


def test_a_created_pool_is_found_by_name_with_the_options_it_started_with(registry):
    pool = registry.create("es", 2, PoolOptions(backend="local", max_retries=5))
    assert registry.get("es") is pool
    assert "es" in registry and "other" not in registry
    assert (pool.name, pool.backend, pool.status().target) == ("es", "local", 2)
    assert registry.options("es") == PoolOptions(backend="local", max_retries=5)


def test_without_a_size_a_pool_takes_the_backends_natural_size(registry):
    assert registry.create("natural", None, LOCAL).status().target == os.cpu_count()


def test_pools_are_listed_in_the_order_they_were_started(registry):
    started = [registry.create(name, 1, LOCAL) for name in ("b", "a", "c")]
    assert registry.names() == ["b", "a", "c"]
    assert registry.pools() == started


def test_a_second_pool_of_the_same_name_is_refused_and_the_first_keeps_running(registry):
    first = registry.create("es", 1, LOCAL)
    with pytest.raises(DuplicatePoolError) as caught:
        registry.create("es", 1, LOCAL)
    assert str(caught.value) == "a pool named 'es' already exists"
    assert registry.get("es") is first and first.status().state == "running"


def test_an_unknown_name_is_an_error_listing_the_pools_that_exist(registry):
    with pytest.raises(UnknownPoolError) as caught:
        registry.get("es")
    assert str(caught.value) == "no pool named 'es' (this kernel's pools: none yet)"
    registry.create("a", 1, LOCAL)
    registry.create("b", 1, LOCAL)
    with pytest.raises(UnknownPoolError) as caught:
        registry.shutdown("es")
    assert str(caught.value) == "no pool named 'es' (this kernel's pools: a, b)"
    assert isinstance(caught.value, (FiberError, LookupError))


def test_a_pool_the_backend_cannot_run_is_not_registered(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(FiberError, match="no Kubernetes cluster to run on"):
        registry.create("k8s", 1, PoolOptions(backend="kubernetes", max_retries=2))
    assert registry.names() == []


def test_shutdown_terminates_joins_and_forgets_the_pool(registry):
    pool = registry.create("es", 2, LOCAL)
    recorder = EventRecorder(pool)
    if pool.status().live != 2:  # checked after subscribing, so the event cannot slip by
        recorder.next(Scaled, where=lambda event: event.live == 2)
    assert len(worker_pids()) == 2
    assert registry.shutdown("es") is pool
    assert pool.status().state == "stopped"
    assert worker_pids() == []  # joined: the workers are gone when shutdown returns
    assert "es" not in registry


def test_shutdown_all_stops_every_pool_oldest_first(registry):
    started = [registry.create(name, 1, LOCAL) for name in ("b", "a")]
    assert registry.shutdown_all() == started
    assert [pool.status().state for pool in started] == ["stopped", "stopped"]
    assert registry.names() == []


def test_the_exit_hook_shuts_everything_down_and_logs_each_pool(registry, caplog):
    pools = [registry.create(name, 1, LOCAL) for name in ("a", "b")]
    with caplog.at_level(logging.INFO, logger="fiber_jupyter.jupyter.registry"):
        registry.shutdown_at_exit()
    assert [pool.status().state for pool in pools] == ["stopped", "stopped"]
    assert caplog.messages == ["shut down pool 'a' at kernel exit",
                               "shut down pool 'b' at kernel exit"]
