"""Contract of the local backend: start, stop, and one exit report per worker."""

from __future__ import annotations

import queue

import pytest

from fiber_jupyter.backends import WorkerExit, WorkerLaunch, backend_factory
from fiber_jupyter.backends.local import LocalBackend

from ..conftest import is_pid_alive, worker_pids


@pytest.fixture
def backend():
    exits: "queue.Queue[WorkerExit]" = queue.Queue()
    local = LocalBackend(on_exit=exits.put)
    local.exits = exits
    yield local
    local.close()


def _launch(worker_id: str, address: str = "tcp://127.0.0.1:9") -> WorkerLaunch:
    # Port 9 (discard) has no listener: the worker keeps trying to connect.
    return WorkerLaunch(worker_id, address, "secret", heartbeat_interval=1.0)


def test_a_stopped_worker_is_killed_and_reported_once_with_its_signal(backend):
    backend.start([_launch("w0")])
    (pid,) = _wait_for_workers(1)
    backend.stop("w0")
    exit = backend.exits.get(timeout=30)
    assert exit == WorkerExit("w0", -9)
    assert exit.describe() == "exit -9 (SIGKILL)"
    assert not is_pid_alive(pid)
    backend.stop("w0")  # idempotent
    assert backend.exits.empty()


def test_a_worker_that_fails_reports_its_exit_code(backend):
    backend.start([_launch("w1", address="not-an-endpoint")])
    exit = backend.exits.get(timeout=30)
    assert exit.worker_id == "w1" and exit.exit_code == 1
    assert exit.describe() == "exit 1"


def test_close_kills_every_worker_and_reports_each(backend):
    backend.start([_launch(f"w{i}") for i in range(3)])
    _wait_for_workers(3)
    backend.close()
    reported = sorted(backend.exits.get(timeout=1).worker_id for _ in range(3))
    assert reported == ["w0", "w1", "w2"]
    assert worker_pids() == []


def test_natural_size_is_the_cpu_count_and_workers_listen_on_loopback(backend):
    import os
    assert backend.natural_size() == os.cpu_count()
    assert backend.listen_host == "127.0.0.1"


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError,
                       match=r"unknown backend 'yarn'; choose one of: kubernetes, local"):
        backend_factory("yarn")


def _wait_for_workers(count: int) -> list:
    from ..conftest import wait_for
    return wait_for(lambda: len(worker_pids()) == count and worker_pids(), what=f"{count} workers")
