"""Specification: Processes as pods, and the queues and pipes they share, on the API stand-in.

The stand-in's kubelet runs each pod's command as a local process, with this
checkout as its working directory, so pods import tests/process_targets.py.
Everything else is as on a cluster: the official client, a Secret per
process, CURVE between pods and the notebook (its pools and its queue
broker), the pod's end read from the watch.

- A Process whose backend is Kubernetes runs its target in a pod, reports
  through a queue made for that backend, and ends with the exit code the
  pod's container reported (0, 1 for an exception, ``os._exit``'s code).
- ``terminate`` deletes the pod; no pod or Secret outlives a process.
- Two pods talk through a Pipe, and report to the notebook through a queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from fiber_jupyter import Pipe, Process, SimpleQueue
from fiber_jupyter.backends.kubernetes import manifests

from .. import process_targets as targets
from ..conftest import wait_for
from .clusters import API_POLL, Cluster

ROOT = str(Path(__file__).resolve().parents[2])
JOIN = 120


def _backend(cluster: Cluster) -> Any:
    """The stand-in's backend, with pods that can import ``tests.process_targets``."""
    return cluster.backend(pod_template={"spec": {"containers": [
        {"name": manifests.CONTAINER, "workingDir": ROOT}]}})


@pytest.fixture
def process_options(fake: Cluster) -> Dict[str, Any]:
    """Every Process of these tests runs in a pod of the stand-in cluster."""
    return {"backend": _backend(fake)}


def _connected(process: Process) -> int:
    return wait_for(lambda: process.pid, JOIN, f"{process.name}'s pod to connect")


def _nothing_left(cluster: Cluster) -> None:
    wait_for(lambda: not cluster.pods() and not cluster.secrets(), 30,
             "the processes' pods and Secrets to be deleted", API_POLL)


def test_a_process_runs_in_a_pod_and_reports_through_a_queue(fake, start):
    results = SimpleQueue(backend=_backend(fake))
    process = start(targets.report_pid, results)
    job_pid = results.get(timeout=JOIN)
    process.join(JOIN)
    assert (process.exitcode, process.exit_reason) == (0, "returned")
    assert process.pid == job_pid
    _nothing_left(fake)


def test_the_job_of_a_process_is_a_pod_named_after_it(fake, start, tmp_path):
    gate = tmp_path / "gate"
    process = start(targets.wait_for_file, str(gate))
    pid = _connected(process)
    [pod] = fake.pods()
    assert pod.metadata.annotations[manifests.POOL_NAME_ANNOTATION] == process.name
    assert pod.metadata.name.startswith(f"fiber-{manifests.slug(process.name, 40)}-")
    assert fake.fake.kubelet.pid(pod.metadata.name) == pid
    gate.touch()
    process.join(JOIN)
    assert process.exitcode == 0
    _nothing_left(fake)


@pytest.mark.parametrize("target, args, exitcode, reason", [
    (targets.os_exit, (3,), 3, "exit 3"),
    (targets.raise_value_error, ("in a pod",), 1, "raised ValueError: in a pod"),
    (targets.sys_exit, (4,), 4, "exit 4 (sys.exit)"),
], ids=["os._exit", "raise", "sys.exit"])
def test_a_pod_s_process_ends_with_the_code_its_container_reported(
        fake, start, target, args, exitcode, reason):
    process = start(target, *args)
    process.join(JOIN)
    assert (process.exitcode, process.exit_reason) == (exitcode, reason)
    _nothing_left(fake)


def test_terminate_deletes_the_pod(fake, start, tmp_path):
    process = start(targets.wait_for_file, str(tmp_path / "never"))
    _connected(process)
    [pod] = fake.pods()
    assert pod.status.phase == "Running"
    process.terminate()
    assert not process.is_alive() and process.exitcode < 0
    assert process.exit_reason.startswith("terminated")
    _nothing_left(fake)


def test_two_pods_talk_through_a_pipe_and_report_through_a_queue(fake, start):
    backend = _backend(fake)
    sender, receiver = Pipe(backend=backend)
    results = SimpleQueue(backend=backend)
    processes = [start(targets.send_each, sender, [1, "two", (3,)]),
                 start(targets.receive_all, receiver, results)]
    assert results.get(timeout=JOIN) == [1, "two", (3,)]
    for process in processes:
        process.join(JOIN)
        assert process.exitcode == 0
    _nothing_left(fake)
