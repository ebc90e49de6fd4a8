"""Specification: pools of pods give the serial answer under chaos, and leave nothing behind.

The Kubernetes counterparts of tests/test_chaos.py and of the leak test in
tests/test_lifecycle.py, on the API stand-in with the process kubelet. During
a map, in a seeded random order, the chaos deletes worker pods, SIGKILLs their
processes (the pods go Failed), drops the pool's watch, answers the next pod
create or delete with 429, 500 or 503, and rescales the pool. Afterwards no
pod, Secret or watch of the pool is left on the stand-in, and no thread,
descriptor or process in this one. The last tests pin two ways a closing pool
left pods behind: at interpreter exit, and a late pod whose delete failed once.

Pods run ``python -m fiber_jupyter.worker`` with this checkout as their
working directory, so workers import the task functions of tests/tasks.py.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import psutil
import pytest

import fiber_jupyter
from fiber_jupyter import WorkerLost, WorkerReady, WorkerStopped
from fiber_jupyter.backends.kubernetes import manifests

from .. import tasks
from ..conftest import worker_pids
from .clusters import Cluster, wait_for_no_pool_left, wait_live

ROOT = str(Path(__file__).resolve().parents[2])
KINDS = ("delete pod", "kill worker", "drop watch", "api error", "rescale")
API_ERRORS = (429, 500, 503)


def _backend(cluster: Cluster) -> Any:
    """The stand-in's backend, with pods that can import ``tests.tasks``."""
    return cluster.backend(pod_template={"spec": {"containers": [
        {"name": manifests.CONTAINER, "workingDir": ROOT}]}})


class PodChaos:
    """Every ``period`` s one strike; each round strikes every kind once, in a seeded order.

    A strike that finds nothing to hit (no ready worker yet, the watch between
    connections) is tried again on the next beat, so every kind lands within a
    few beats of any run. Pods are deleted straight in the stand-in's store, as
    another client would delete them, so the chaos never takes for itself the
    errors it injects for the pool's own requests.
    """

    def __init__(self, pool: fiber_jupyter.Pool, cluster: Cluster, seed: int,
                 period: float = 0.25) -> None:
        self._pool = pool
        self._cluster = cluster
        self._api = cluster.fake.api
        self._random = random.Random(seed)
        self._period = period
        self._ready: Set[str] = set()  # worker ids, as their pods' worker label
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._due: List[str] = []
        self._failure: Optional[BaseException] = None
        self.strikes: Counter = Counter()
        pool.events.subscribe(self._track)
        self._thread = threading.Thread(target=self._run, name="pod-chaos")

    def __enter__(self) -> "PodChaos":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        if self._failure is not None:
            raise AssertionError("the chaos thread failed") from self._failure

    def assert_every_kind_struck(self) -> None:
        missing = [kind for kind in KINDS if not self.strikes[kind]]
        assert not missing, f"never struck: {missing}; struck: {dict(self.strikes)}"
        assert self._api.faults_served(resource="pods") > 0, "no injected error was served"

    def _track(self, event: Any) -> None:
        with self._lock:
            if isinstance(event, WorkerReady):
                self._ready.add(manifests.slug(event.worker_id, 63))
            elif isinstance(event, (WorkerLost, WorkerStopped)):
                self._ready.discard(manifests.slug(event.worker_id, 63))

    def _run(self) -> None:
        try:
            # The period is the chaos cadence, not a synchronisation.
            while not self._stop.wait(self._period):
                if not self._due:
                    self._due = self._random.sample(KINDS, len(KINDS))
                if self._strike(self._due[0]):
                    self.strikes[self._due.pop(0)] += 1
        except BaseException as exc:  # reported by __exit__, in the test's thread
            self._failure = exc

    def _strike(self, kind: str) -> bool:
        """One strike of ``kind``; False if there was nothing to hit."""
        if kind == "delete pod":
            pod = self._ready_pod()
            return pod is not None and self._api.delete_object("pods", self._cluster.namespace,
                                                               pod)
        if kind == "kill worker":
            pod = self._ready_pod()
            return pod is not None and self._kill(pod)
        if kind == "drop watch":
            return self._api.drop_watches(resource="pods") > 0
        if kind == "api error":
            code = self._random.choice(API_ERRORS)
            self._api.fail_next(self._random.choice(("create", "delete")), "pods", code=code,
                                retry_after=0.2 if code == 429 else None)
            return True
        self._pool.scale(self._random.randint(1, 5))
        return True

    def _ready_pod(self) -> Optional[str]:
        """A random pod whose worker is ready and which is not being deleted."""
        with self._lock:
            ready = set(self._ready)
        pods = [pod["metadata"] for pod in self._api.list_objects("pods", self._cluster.namespace)]
        names = [meta["name"] for meta in pods if not meta.get("deletionTimestamp")
                 and meta["labels"].get(manifests.WORKER_LABEL) in ready]
        return self._random.choice(names) if names else None

    def _kill(self, pod: str) -> bool:
        """SIGKILL the pod's process, as the OOM killer would: the pod goes Failed."""
        try:
            pid = self._cluster.fake.kubelet.pid(pod)
            if pid is None:
                return False
            os.kill(pid, signal.SIGKILL)
        except (LookupError, ProcessLookupError):  # the pod or its process went meanwhile
            return False
        return True


def _work(seed: int, count: int = 3000) -> List[tuple]:
    """(i, seconds) pairs of mixed short lengths: 15 s of work, so about 4 s on four
    workers and more under chaos: rounds enough for every kind of strike."""
    durations = random.Random(seed).choices([0, 0.002, 0.005, 0.008, 0.01], k=count)
    return list(enumerate(durations))


def _pool_under_chaos(pools: Any, cluster: Cluster) -> fiber_jupyter.Pool:
    return pools(4, backend=_backend(cluster), max_retries=100, heartbeat_timeout=2.0)


def _drain(results: Any, timeout: float) -> List[Any]:
    """Every result of an imap iterator; a lost one fails the test instead of hanging it."""
    arrived = []
    while True:
        try:
            arrived.append(results.next(timeout=timeout))
        except StopIteration:
            return arrived


def _terminate_and_check_nothing_is_left(pool: fiber_jupyter.Pool, cluster: Cluster) -> None:
    pool.terminate()
    pool.join()
    # Pods are deleted with grace 0 and the stand-in removes them at once: nothing
    # should be left to wait for, so the wait is short.
    wait_for_no_pool_left(cluster, timeout=5)
    api, kubelet = cluster.fake.api, cluster.fake.kubelet
    cluster.fake.wait_for(lambda: api.open_watches() == 0, 10, "the pool's watch to end")
    cluster.fake.wait_for(lambda: not kubelet.running_pids(), 30, "the pods' processes to end")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_map_under_pod_chaos_gives_the_serial_answer(fake, pools, seed):
    pool = _pool_under_chaos(pools, fake)
    work = _work(seed)
    with PodChaos(pool, fake, seed) as chaos:
        results = pool.starmap_async(tasks.slow_square, work, chunksize=4).get(timeout=120)
    assert results == [x * x for x, _ in work]
    chaos.assert_every_kind_struck()
    assert pool.status().lost >= 1
    _terminate_and_check_nothing_is_left(pool, fake)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2])
def test_imap_unordered_under_pod_chaos_yields_each_result_exactly_once(fake, pools, seed):
    pool = _pool_under_chaos(pools, fake)
    work = _work(seed + 100)
    with PodChaos(pool, fake, seed) as chaos:
        results = pool.imap_unordered(tasks.slow_square_pair, work, chunksize=4)
        arrived = Counter(_drain(results, timeout=60))
    twice = {value: n for value, n in arrived.items() if n > 1}
    assert not twice, f"results that arrived more than once: {twice}"
    missing = {x * x for x, _ in work} - set(arrived)
    assert not missing, f"{len(missing)} results never arrived"
    chaos.assert_every_kind_struck()
    _terminate_and_check_nothing_is_left(pool, fake)


# Leaks ------------------------------------------------------------------------------------

# Threads of the stand-in and of its kubelet (which has one per pod process, while it
# waits on it): the pods' processes are counted as processes.
FAKE_CLUSTER_THREADS = ("fake-kube-apiserver", "kubelet-")


def _footprint(cluster: Cluster) -> Dict[str, int]:
    """What pools could leave: on the stand-in, and in this process.

    The stand-in's threads and the server ends of its connections are left
    out: they mirror client connections, whose ends are counted here as
    descriptors, and close a moment after them.
    """
    api, namespace = cluster.fake.api, cluster.namespace
    me = psutil.Process()
    threads = [t for t in threading.enumerate() if not t.name.startswith(FAKE_CLUSTER_THREADS)
               and not t.name.endswith("(process_request_thread)")]
    return {"pods": len(api.list_objects("pods", namespace)),
            "secrets": len(api.list_objects("secrets", namespace)),
            "watches": api.open_watches(),
            "threads": len(threads),
            "fds": me.num_fds() - len(_server_ends(cluster)),
            # Pods' processes, not every child: a session's JupyterLab server and its
            # browser start and end helper processes of their own meanwhile.
            "processes": len(worker_pids())}


def _server_ends(cluster: Cluster) -> List[Any]:
    port = int(cluster.fake.api.url.rsplit(":", 1)[1])
    return [c for c in psutil.Process().net_connections("tcp") if c.laddr.port == port]


def _quiet(cluster: Cluster) -> bool:
    """Nothing closing: the kubelet has reaped every pod process, and the stand-in has
    closed the server end of every connection its client closed (it notices a closed
    watch within half a second). Other children of this process (a session's
    JupyterLab server) are not pods."""
    helpers = [t for t in threading.enumerate() if t.name.startswith(("kubelet-wait-",
                                                                      "kubelet-kill-"))]
    closing = [c for c in _server_ends(cluster) if c.status == psutil.CONN_CLOSE_WAIT]
    return not helpers and not closing and not worker_pids()


def _quiet_footprint(cluster: Cluster) -> Dict[str, int]:
    cluster.fake.wait_for(lambda: _quiet(cluster), 30,
                          "pod processes to be reaped and closed connections to close")
    gc.collect()
    return _footprint(cluster)


def _one_cycle(cluster: Cluster, baseline: Optional[Dict[str, int]]) -> fiber_jupyter.Pool:
    """Create, use, terminate and join a pool: its pods, Secret and threads are gone
    at once (its pods' processes and its watch's server end go a moment later)."""
    pool = fiber_jupyter.Pool(2, backend=_backend(cluster))
    assert pool.map(tasks.square, range(20)) == [x * x for x in range(20)]
    pool.terminate()
    pool.join()
    if baseline is not None:
        now = _footprint(cluster)
        assert (now["pods"], now["secrets"], now["threads"]) == (0, 0, baseline["threads"])
    return pool


@pytest.mark.timeout(300)
def test_100_create_use_terminate_cycles_leak_nothing_on_the_cluster_or_here(fake):
    # Every pool is kept, as a notebook keeps its variables: what a closed pool
    # holds must be released when it is joined, not when it is garbage collected.
    kept = [_one_cycle(fake, None)]  # warm-up: imports, the kubelet's connections
    before = _quiet_footprint(fake)
    assert (before["pods"], before["secrets"], before["watches"]) == (0, 0, 0)
    for _ in range(100):
        kept.append(_one_cycle(fake, before))
    assert _quiet_footprint(fake) == before


EXIT_WITHOUT_CLOSING = """
import fiber_jupyter
from fiber_jupyter.backends import Kubernetes
pool = fiber_jupyter.Pool(2, backend=Kubernetes(image={image!r}, kubeconfig={kubeconfig!r},
                                               namespace={namespace!r}, address={address!r}))
print(pool.map(abs, [-1, -2, -3]))
"""


def test_a_pool_never_closed_leaves_nothing_on_the_cluster_at_interpreter_exit(fake):
    script = EXIT_WITHOUT_CLOSING.format(image=fake.image, kubeconfig=fake.kubeconfig,
                                         namespace=fake.namespace, address=fake.address)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout) == (0, "[1, 2, 3]\n"), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    wait_for_no_pool_left(fake, timeout=5)


def test_a_pod_created_as_the_pool_closes_is_deleted_despite_a_server_error(fake, pools):
    pool = pools(1, backend=_backend(fake))
    wait_live(pool, 1)
    api = fake.fake.api
    held = api.hold_next("create", "pods")
    pool.scale(2)
    held.wait_arrived()
    api.fail_next("delete", "pods", code=503)
    closer = threading.Thread(target=lambda: (pool.terminate(), pool.join()))
    closer.start()
    fake.fake.wait_for(lambda: api.count("deletecollection", "secrets") == 1, 30,
                       "the pool's pods and Secret to be deleted")
    held.release()  # created now, after the collection was deleted; its delete fails once
    closer.join(60)
    assert api.faults_served("delete", "pods", 503) == 1
    wait_for_no_pool_left(fake, timeout=5)
