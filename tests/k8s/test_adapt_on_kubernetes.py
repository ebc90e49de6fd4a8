"""Specification: an adaptive pool of pods asks Kubernetes for no more pods than its maximum,
however long they stay pending, and gives its surplus back once it is idle.

On the API stand-in with the process kubelet. A slow or full cluster is a
node with room for one pod (:class:`Node`): the kubelet's scheduler leaves
every further pod Pending, with ``PodScheduled=False, Unschedulable``, as a
real scheduler does, until the test makes room.

What the pool asked for is counted where the asking happens, on the server:
its pod creations (``api.count``), and every pod the API ever held, from a
watch opened before the pool (:class:`PodCensus`), never from a snapshot that
could miss a pod created and deleted in between. Tasks wait on a gate the
test opens, so the backlog lasts as long as a test needs it.
"""

from __future__ import annotations

import threading
from contextlib import closing
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from kubernetes import client, watch

from fiber_jupyter import Progress, Scaled, WorkerLost, WorkerStopped, WorkerWaiting
from fiber_jupyter.backends.kubernetes import manifests

from ..conftest import EventRecorder
from .clusters import GATED_SQUARE, SELECTOR, Cluster, Gate, wait_live

FULL = "Unschedulable: 0/1 nodes are available: 1 Too many pods."
# Evaluations of the backlog to watch while pods pend: a running call's Progress events
# and the adaptive evaluations share the scheduler's tick (one per PROGRESS_INTERVAL),
# so each Progress event marks about one more evaluation.
EVALUATIONS = 10


class PodCensus:
    """The namespace's fiber pods as one watch sees them, from before the first pool.

    ``ever``: every pod the API ever held (pod name -> worker id); ``present``:
    those it holds now; ``most_at_once``: the most it held at any moment.
    """

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self._core = core
        self._namespace = namespace
        self._changed = threading.Condition()
        self.ever: Dict[str, str] = {}
        self.present: Dict[str, str] = {}
        self.most_at_once = 0
        self._failure: Optional[BaseException] = None
        self._closing = False
        self._watch = watch.Watch()
        listing = core.list_namespaced_pod(namespace, label_selector=SELECTOR)
        assert not listing.items, "the census must start before the first pod"
        self._thread = threading.Thread(target=self._follow, name="pod-census", daemon=True,
                                        args=(listing.metadata.resource_version,))
        self._thread.start()

    def wait_until(self, predicate: Callable[["PodCensus"], bool], timeout: float,
                   what: str) -> None:
        """Re-checked on every pod the watch sees come or go; fails the test after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self) or self._failure, timeout):
                pytest.fail(f"timed out after {timeout} s waiting for {what}; pods now: "
                            f"{sorted(self.present)}, ever: {sorted(self.ever)}")
        self._check()

    def close(self) -> None:
        self._closing = True
        self._watch.stop()  # shuts the socket down: the stream ends at once
        self._thread.join(10)
        assert not self._thread.is_alive(), "the census watch did not stop"
        self._check()

    def _check(self) -> None:
        if self._failure is not None:
            raise AssertionError("the census lost its watch; its counts are incomplete") \
                from self._failure

    def _follow(self, version: str) -> None:
        try:
            for event in self._watch.stream(self._core.list_namespaced_pod, self._namespace,
                                            label_selector=SELECTOR, resource_version=version):
                self._record(event["type"], event["object"].metadata)
        except BaseException as exc:  # reported in the test's thread by wait_until and close
            if not self._closing:
                with self._changed:
                    self._failure = exc
                    self._changed.notify_all()

    def _record(self, kind: str, meta: Any) -> None:
        with self._changed:
            if kind == "ADDED":
                worker = (meta.labels or {}).get(manifests.WORKER_LABEL, "")
                self.ever[meta.name] = self.present[meta.name] = worker
            elif kind == "DELETED":
                self.present.pop(meta.name, None)
            self.most_at_once = max(self.most_at_once, len(self.present))
            self._changed.notify_all()


class Node:
    """The stand-in's one node, with room for as many pods as the test says."""

    def __init__(self, cluster: Cluster) -> None:
        self._kubelet = cluster.fake.kubelet
        self._room = self._kubelet.capacity["pods"]

    def fit(self, pods: int) -> None:
        """Room for ``pods`` pods; the scheduler leaves any further one Unschedulable."""
        self._kubelet.set_capacity({"pods": pods})

    def make_room(self) -> None:
        """The node's usual room: pods pending for want of it are scheduled now."""
        self._kubelet.set_capacity({"pods": self._room})


@pytest.fixture
def census(fake: Cluster) -> Iterator[PodCensus]:
    opened = PodCensus(fake.core, fake.namespace)
    yield opened
    opened.close()


@pytest.fixture
def gate(fake: Cluster) -> Iterator[Gate]:
    """Tasks (GATED_SQUARE) that wait on the test; opened at the end whatever happened."""
    opened = Gate(fake.address)
    yield opened
    opened.close()


@pytest.fixture
def node(fake: Cluster) -> Node:
    return Node(fake)


def unschedulable(cluster: Cluster) -> List[str]:
    """Names of the pods the API holds Pending because no node has room for them."""
    return sorted(pod["metadata"]["name"]
                  for pod in cluster.fake.api.list_objects("pods", cluster.namespace)
                  if pod["status"].get("phase") == "Pending"
                  and any(c["type"] == "PodScheduled" and c["status"] == "False"
                          and c.get("reason") == "Unschedulable"
                          for c in pod["status"].get("conditions") or ()))


def wait_unschedulable(cluster: Cluster, count: int) -> List[str]:
    def held() -> Optional[List[str]]:
        names = unschedulable(cluster)
        return names if len(names) == count else None
    return cluster.fake.wait_for(held, 30, f"{count} pods to be Pending, Unschedulable")


def watch_evaluations(pool: Any) -> None:
    """Wait until the pool has evaluated its backlog EVALUATIONS more times."""
    ticks = EventRecorder(pool)
    for _ in range(EVALUATIONS):
        ticks.next(Progress)


def squares(count: int) -> List[int]:
    return [x * x for x in range(count)]


class TestPendingPods:
    """Pods still pending count toward the target: waiting for them never asks for more."""

    MAXIMUM = 4
    BACKLOG = 100  # tasks, 25 times the maximum
    # Until a task finishes, the pool knows only that each running task has taken at
    # least the call's age; 100 tasks to finish in 50 s then ask for one more worker per
    # half second of age, so the target climbs 1, 2, 3, 4 over several evaluations, each
    # made while the pods asked for before it are still pending.
    CLIMB = 50.0

    def test_a_backlog_on_a_full_cluster_creates_no_more_pods_than_the_maximum(
            self, fake, pools, gate, census, node):
        api = fake.fake.api
        # One pod runs: the backlog is measured only by tasks that run, and grows no
        # pool before one does. Every pod the pool asks for after it stays pending.
        node.fit(1)
        pool = pools(1, backend=fake.backend(), name="adaptive")
        wait_live(pool, 1)
        recorder = EventRecorder(pool)
        pool.adapt(1, self.MAXIMUM, target_duration=self.CLIMB)  # idle_after: 60 s, no shrink
        result = pool.starmap_async(GATED_SQUARE, gate.tasks(range(self.BACKLOG)), chunksize=1)

        recorder.next(Scaled, where=lambda e: e.target == self.MAXIMUM)
        held = wait_unschedulable(fake, self.MAXIMUM - 1)
        census.wait_until(lambda c: len(c.ever) >= self.MAXIMUM, 30, "the pods to be seen")
        waiting = recorder.collect(WorkerWaiting, self.MAXIMUM - 1)
        assert {event.reason for event in waiting} == {FULL}
        watch_evaluations(pool)
        assert api.count("create", "pods") == self.MAXIMUM
        assert len(census.ever) == census.most_at_once == self.MAXIMUM
        assert unschedulable(fake) == held, "the same pods still pend: none was replaced"
        status = pool.status()
        assert (status.target, status.live, status.pending) == (self.MAXIMUM, 1,
                                                                self.MAXIMUM - 1)

        node.make_room()
        gate.wait_for_waiting(self.MAXIMUM)  # every pod's worker runs a task of the call
        gate.open()
        assert result.get(timeout=60) == squares(self.BACKLOG)
        assert api.count("create", "pods") == self.MAXIMUM
        assert api.count("delete", "pods") == api.count("deletecollection", "pods") == 0
        assert census.present == census.ever, "a pod was deleted (and so replaced)"
        assert pool.status().lost == 0


class TestUnschedulableForLong:
    """Pods pending past the start timeout are lost workers; each is replaced by one pod."""

    MAXIMUM = 3
    START_TIMEOUT = 2.0  # a worker on this machine connects within about 0.3 s

    def test_pods_that_never_schedule_are_replaced_one_for_one_never_beyond_the_maximum(
            self, fake, pools, gate, census, node):
        api = fake.fake.api
        node.fit(1)
        # heartbeat_timeout / 6: how often the pool looks for workers that never connected.
        pool = pools(1, backend=fake.backend(), start_timeout=self.START_TIMEOUT,
                     heartbeat_timeout=3)
        wait_live(pool, 1)
        recorder = EventRecorder(pool)
        pool.adapt(1, self.MAXIMUM, target_duration=0.01)
        result = pool.starmap_async(GATED_SQUARE, gate.tasks(range(30)), chunksize=1)

        surplus = self.MAXIMUM - 1
        lost = recorder.collect(WorkerLost, surplus)
        assert {event.reason for event in lost} == {
            f"did not connect within {self.START_TIMEOUT:.0f} s: {FULL}"}
        census.wait_until(lambda c: len(c.ever) >= 1 + 2 * surplus, 30,
                          "the lost workers' replacements to be created")
        assert census.most_at_once == self.MAXIMUM
        gone = {worker for name, worker in census.ever.items() if name not in census.present}
        assert gone <= {event.worker_id for event in recorder.of(WorkerLost)}, \
            "a pod was deleted with no worker lost"

        node.make_room()
        gate.wait_for_waiting(self.MAXIMUM)
        gate.open()
        assert result.get(timeout=60) == squares(30)
        status = pool.status()
        assert (status.target, status.live) == (self.MAXIMUM, self.MAXIMUM)
        assert api.count("create", "pods") == self.MAXIMUM + status.lost
        assert census.most_at_once == self.MAXIMUM


class TestShrinking:
    """Idle past ``idle_after``, the pool gives its surplus back: it deletes those pods.

    On the stand-in and on a real cluster (the real-cluster tier).
    """

    MAXIMUM = 3

    def test_after_the_work_the_surplus_pods_are_deleted_down_to_the_minimum(self, cluster,
                                                                             pools):
        with closing(PodCensus(cluster.core, cluster.namespace)) as census, \
                closing(Gate(cluster.address)) as gate:
            pool = pools(1, backend=cluster.backend(), name="shrinking")
            wait_live(pool, 1, timeout=120)
            recorder = EventRecorder(pool)
            pool.adapt(1, self.MAXIMUM, idle_after=1.0, target_duration=0.01)
            result = pool.starmap_async(GATED_SQUARE, gate.tasks(range(30)), chunksize=1)
            gate.wait_for_waiting(self.MAXIMUM, timeout=120)  # grown to the maximum, all busy
            gate.open()
            assert result.get(timeout=60) == squares(30)

            stopped = {e.worker_id for e in recorder.collect(WorkerStopped, self.MAXIMUM - 1,
                                                             timeout=120)}
            census.wait_until(lambda c: len(c.present) == 1, 120,
                              "the surplus pods to be deleted")
            [kept] = pool.workers()
            assert set(census.present.values()) == {kept.worker_id}
            assert {census.ever[name] for name in census.ever
                    if name not in census.present} == stopped
            assert len(census.ever) == census.most_at_once == self.MAXIMUM
            if cluster.fake is not None:  # requests counted by the stand-in's server
                assert cluster.fake.api.count("delete", "pods") == self.MAXIMUM - 1
                assert cluster.fake.api.count("create", "pods") == self.MAXIMUM
            status = pool.status()
            assert (status.target, status.live, status.lost) == (1, 1, 0)
