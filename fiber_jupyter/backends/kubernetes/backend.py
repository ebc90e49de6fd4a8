"""Workers as pods: created in parallel, watched as one stream, deleted when done.

The scheduler calls :meth:`start`, :meth:`stop` and :meth:`close` from its I/O
thread, so they only queue API requests on a small thread pool (bounded
parallelism: scaling to 512 pods does not open 512 connections). One
:class:`~.watch.PodWatch` thread reports how pods end. Every launched worker
is reported exactly once through ``on_exit``: when its pod ends (Failed,
OOMKilled, Evicted, Succeeded after a stop) or is deleted, when its pod
could not be created, or when the pool closes. An ended pod is deleted at
once: nothing is left behind.

The pool's credentials go into a Secret owned by the pool (created before the
first pod, deleted with the pool); in a cluster, the Secret and the pods are
also owned by the notebook's pod, so Kubernetes removes them if it goes.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set

from ..base import Backend, ExitCallback, WaitingCallback, WorkerExit, WorkerLaunch
from . import api_calls, manifests, pod_status
from .config import Kubernetes, KubernetesConfigError, connect, default_address
from .watch import PodWatch

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 60.0
# Workers exit when they cannot reach the master for this long (a pod has no
# pipe to its notebook, as a local worker has).
MASTER_TIMEOUT = 120.0


@dataclass
class _Pod:
    """A launched worker's pod, as far as this backend knows."""

    launch: WorkerLaunch
    name: str
    created: bool = False
    deleting: bool = False
    stop_requested: bool = False
    waiting: Optional[str] = None


class KubernetesBackend(Backend):
    """Runs one pool's workers as pods of one namespace."""

    name = Kubernetes.name
    encrypts = Kubernetes.encrypts
    start_failure_hint = ("Kubernetes' reason says what to fix: the image, the pod's "
                          "resources, or the RBAC of deploy/rbac.yaml (docs/kubernetes.md)")

    def __init__(self, config: Kubernetes, on_exit: ExitCallback,
                 on_waiting: Optional[WaitingCallback] = None, pool_name: str = "pool") -> None:
        super().__init__(on_exit, on_waiting, pool_name)
        self._config = config
        self._api, self._namespace, notebook_pod = connect(config)
        self._image = config.image or _image_of(notebook_pod)
        self._owner = (manifests.owner_reference(notebook_pod, self._namespace)
                       if notebook_pod else None)
        self._pool = manifests.pool_id(pool_name)  # the pool's label value and name stem
        self._started = False
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # notified when an exit is reported
        self._pods: Dict[str, _Pod] = {}  # worker id -> its pod, until its exit is reported
        self._workers_by_pod: Dict[str, str] = {}  # pod name -> worker id
        self._created_before_list: Set[str] = set()  # created pods a relist must show
        self._closing = threading.Event()
        self._calls = ThreadPoolExecutor(config.create_parallelism,
                                         thread_name_prefix="fiber-k8s-api")
        self._secret: Optional[Future] = None
        self._watch: Optional[PodWatch] = None

    # The Backend interface ---------------------------------------------------

    @property
    def listen_host(self) -> str:
        return self._config.address or default_address()

    def natural_size(self) -> int:
        """One: a cluster's size is not the pool's to guess; give ``%fiber_pool N``."""
        return 1

    def start(self, launches: Sequence[WorkerLaunch]) -> None:
        if not launches:
            return
        self._ensure_started(launches[0])
        with self._lock:
            for launch in launches:
                pod = _Pod(launch, manifests.pod_name(self._pool, launch.worker_id))
                self._pods[launch.worker_id] = pod
                self._workers_by_pod[pod.name] = launch.worker_id
        for launch in launches:
            self._calls.submit(self._create, launch.worker_id)

    def stop(self, worker_id: str) -> None:
        with self._lock:
            pod = self._pods.get(worker_id)
            if pod is None or pod.stop_requested:
                return
            pod.stop_requested = True
            created = pod.created
        if created:
            self._calls.submit(self._delete, worker_id)

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        if self._started:
            # On the caller's thread, not the request pool: at interpreter exit (a pool
            # never closed, closed by weakref.finalize) concurrent.futures already refuses
            # new work, and the pods and the Secret would be left behind.
            self._delete_everything()
            self._await_exits()
        self._calls.shutdown(wait=True)
        if self._watch is not None:
            self._watch.stop()
            self._watch.join(timeout=CLOSE_TIMEOUT)
        # Its pooled keep-alive connections: a closed pool the notebook still holds
        # would keep them open until garbage collection.
        self._api.api_client.close()

    # Starting --------------------------------------------------------------

    def _ensure_started(self, first: WorkerLaunch) -> None:
        """Before the first pod: the pool's Secret, and its watch."""
        if self._started:
            return
        self._started = True
        secret = manifests.secret_manifest(self._pool, self._pool_name, first.address,
                                           first.secret, self._owner)
        self._secret = self._calls.submit(self._request, self._api.create_namespaced_secret,
                                          self._namespace, secret)
        self._watch = PodWatch(self._api, self._namespace, manifests.pool_selector(self._pool),
                               self._on_pod_event, self._on_pod_list, self._before_list,
                               threading.Event())
        self._watch.start()

    def _create(self, worker_id: str) -> None:
        with self._lock:
            pod = self._pods.get(worker_id)
            cancelled = pod is not None and (pod.stop_requested or self._closing.is_set())
        if pod is None or cancelled:
            self._finish(worker_id, None, "stopped before its pod was created")
            return
        try:
            self._secret.result()
            self._request(self._api.create_namespaced_pod, self._namespace,
                          self._manifest(pod.launch), also_retry=api_calls.is_quota_refusal,
                          on_retry=lambda exc: self._waiting(worker_id, exc))
        except api_calls.Closing:
            self._finish(worker_id, None, "pool closed before its pod was created")
            return
        except Exception as exc:
            self._finish(worker_id, None, f"could not create pod: {api_calls.describe(exc)}")
            return
        with self._lock:
            pod.created = True
            # Stopped, or the pool closed, while the request was in flight: the
            # close may already have deleted the pool's collection and reported
            # this worker, so its pod is deleted by name here.
            late = pod.stop_requested or self._closing.is_set()
            pod.deleting = pod.deleting or late
        if late:
            self._delete_pod(pod.name, persist=True)

    def _manifest(self, launch: WorkerLaunch) -> Dict[str, Any]:
        config = self._config
        return manifests.pod_manifest(
            pool=self._pool, pool_name=self._pool_name,
            worker_id=launch.worker_id, address=launch.address, image=self._image,
            heartbeat_interval=launch.heartbeat_interval, master_timeout=MASTER_TIMEOUT,
            owner=self._owner,
            resource_amounts=manifests.resources(config.cpu, config.memory, config.gpu),
            service_account=config.service_account, node_selector=config.node_selector,
            tolerations=config.tolerations, template=config.pod_template)

    def _waiting(self, worker_id: str, exc: Any) -> None:
        self._report_waiting(worker_id, f"quota: {api_calls.describe(exc)}")

    # Ending ----------------------------------------------------------------

    def _delete(self, worker_id: str) -> None:
        with self._lock:
            pod = self._pods.get(worker_id)
            if pod is None or pod.deleting:
                return
            pod.deleting = True
        self._delete_pod(pod.name)

    def _delete_pod(self, name: str, persist: bool = False) -> None:
        """Delete a pod by name. ``persist``: retry even while the pool closes, for a
        pod created after the close deleted the pool's collection; no one else would."""
        from kubernetes.client.exceptions import ApiException

        give_up = threading.Event() if persist else self._closing
        try:
            api_calls.call(lambda: self._api.delete_namespaced_pod(
                name, self._namespace, grace_period_seconds=0), give_up)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete pod %s: %s", name, api_calls.describe(exc))
        except api_calls.Closing:
            log.debug("closing: pod %s is deleted with the rest", name)

    def _delete_everything(self) -> None:
        """Close: every pod and the Secret of the pool, whatever their state."""
        selector = manifests.pool_selector(self._pool)
        for delete in (self._api.delete_collection_namespaced_pod,
                       self._api.delete_collection_namespaced_secret):
            try:
                api_calls.call(lambda d=delete: d(self._namespace, label_selector=selector,
                                                  grace_period_seconds=0), threading.Event())
            except Exception as exc:
                log.warning("could not delete the pool's %s: %s", delete.__name__,
                            api_calls.describe(exc))

    def _await_exits(self) -> None:
        """Wait for the watch to see every created pod go; report the rest as closed."""
        with self._ended:
            self._ended.wait_for(lambda: not any(p.created for p in self._pods.values()),
                                 CLOSE_TIMEOUT)
            remaining = list(self._pods)
        for worker_id in remaining:
            self._finish(worker_id, None, "pool closed")

    def _finish(self, worker_id: str, exit_code: Optional[int], detail: str) -> None:
        """Report a worker's end, once; delete its pod if it still exists."""
        with self._lock:
            pod = self._pods.pop(worker_id, None)
            if pod is not None:
                self._workers_by_pod.pop(pod.name, None)
                self._ended.notify_all()
        if pod is None:
            return
        self._on_exit(WorkerExit(worker_id, exit_code, detail))
        if pod.created and not pod.deleting and not self._closing.is_set():
            pod.deleting = True
            self._calls.submit(self._delete_pod, pod.name)

    # The watch -------------------------------------------------------------

    def _on_pod_event(self, kind: str, pod: Any) -> None:
        with self._lock:
            worker_id = self._workers_by_pod.get(pod.metadata.name)
        if worker_id is None:
            return
        state = pod_status.deleted(pod) if kind == "DELETED" else pod_status.outcome(pod)
        if state.ended:
            self._finish(worker_id, state.exit_code, state.detail)
        elif state.waiting is not None:
            self._report_waiting(worker_id, state.waiting)

    def _before_list(self) -> None:
        with self._lock:
            self._created_before_list = {w for w, p in self._pods.items() if p.created}

    def _on_pod_list(self, pods: List[Any]) -> None:
        """After a (re)list: pods we created that are no longer there were deleted meanwhile."""
        present = {pod.metadata.name for pod in pods}
        with self._lock:
            gone = [w for w in self._created_before_list
                    if w in self._pods and self._pods[w].name not in present]
        for worker_id in gone:
            self._finish(worker_id, None, "pod deleted")
        for pod in pods:
            self._on_pod_event("MODIFIED", pod)

    def _report_waiting(self, worker_id: str, reason: str) -> None:
        with self._lock:
            pod = self._pods.get(worker_id)
            if pod is None or pod.waiting == reason:
                return
            pod.waiting = reason
        self._on_waiting(worker_id, reason)

    def _request(self, request: Any, *args: Any, also_retry: Any = lambda exc: False,
                 on_retry: Any = lambda exc: None, **kwargs: Any) -> Any:
        return api_calls.call(lambda: request(*args, **kwargs), self._closing,
                              also_retry=also_retry, on_retry=on_retry)


def _image_of(notebook_pod: Optional[Dict[str, Any]]) -> str:
    if notebook_pod is None:
        raise KubernetesConfigError(
            "the kubernetes backend needs a worker image outside a cluster: "
            "Pool(..., backend=Kubernetes(image=...)) or %fiber_pool N --image IMAGE "
            "(an image with Python and fiber_jupyter installed; see docker/worker.Dockerfile)")
    return notebook_pod["spec"]["containers"][0]["image"]
