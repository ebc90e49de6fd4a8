"""A "process kubelet": schedules and runs the fake API's pods as local processes.

It is a plain client of the API through the official ``kubernetes`` package
(list + watch pods, ``pods/binding``, ``patch pods/status``, delete with grace
0), never a reader of the fake server's memory, so the pod lifecycle a
backend observes is produced the way a real cluster produces it: a scheduler
that binds or reports Unschedulable, a kubelet that pulls (or fails to pull),
resolves env (Secrets, the downward API), starts the container, reports
Running, exit codes, OOM kills and evictions, and finishes graceful deletions.

A pod's ``containers[0].command + args`` runs with ``subprocess.Popen`` in a
new session (with a parent-death signal, so even a SIGKILLed test process
leaves no pod behind); its other containers, init containers, probes and
volumes are ignored. Every public method is thread-safe: controls are
executed on the kubelet's own worker thread, in order with the pod events.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import math
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from .apimachinery import KUBELET_USER_AGENT, now_rfc3339, set_condition

log = logging.getLogger(__name__)

T = TypeVar("T")
SCHEDULER = "default-scheduler"
POD_IP = "127.0.0.1"
DEFAULT_CAPACITY: Dict[str, Union[str, int]] = {
    "cpu": "8", "memory": "32Gi", "pods": 110, "nvidia.com/gpu": 0}
DEFAULT_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
TERMINAL = ("Succeeded", "Failed")
# Pods are new sessions, so a signal to the test's process group misses them; if the test
# process dies without stopping the kubelet, the kernel still kills them (util-linux setpriv).
_SETPRIV = shutil.which("setpriv")
PARENT_DEATH_SIGNAL = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container's env cannot be built (CreateContainerConfigError)."""


class _Process:
    """A started container: its Popen, reaped by exactly one thread.

    Signals go to the whole process group, and only while the leader is not
    reaped, so a recycled pid can never be signalled by mistake.
    """

    def __init__(self, popen: "subprocess.Popen[bytes]") -> None:
        self.popen = popen
        self.exited = threading.Event()
        self._lock = threading.Lock()
        self._reaped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal_group(self, sig: int) -> None:
        with self._lock:
            if not self._reaped:
                try:
                    os.killpg(self.popen.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def wait_and_reap(self) -> int:
        """Wait for the leader; kill what is left of its group, as a container's end does."""
        try:
            os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        self.exited.set()
        self.signal_group(signal.SIGKILL)
        with self._lock:
            code = self.popen.wait()
            self._reaped = True
        return code


@dataclass(eq=False)
class PodRun:
    """What the kubelet knows of one pod bound to its node."""

    pod: Dict[str, Any]
    log_path: Path
    sandbox: Path
    state: str = "waiting"  # waiting | running | backoff | terminated
    reason: str = "ContainerCreating"
    message: Optional[str] = None
    process: Optional[_Process] = None
    run_id: int = 0
    container_id: str = ""
    started_at: Optional[str] = None
    started_mono: float = 0.0
    finished_at: Optional[str] = None
    exit_code: Optional[int] = None
    kill_reason: Optional[str] = None  # OOMKilled, Evicted, DeadlineExceeded
    pod_reason: Optional[str] = None
    pod_message: Optional[str] = None
    restarts: int = 0
    last_state: Dict[str, Any] = field(default_factory=dict)
    next_attempt: float = 0.0
    terminating: bool = False
    deleting: bool = False
    start_time: str = field(default_factory=now_rfc3339)
    sent: Optional[Dict[str, Any]] = None

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def container(self) -> Dict[str, Any]:
        return self.pod["spec"]["containers"][0]

    @property
    def active(self) -> bool:
        """Counts against the node's capacity (a finished pod does not)."""
        return self.state != "terminated"


class ProcessKubelet:
    """Scheduler + kubelet for one fake node, driven only through the API.

    ``api_client``: an ApiClient for the cluster; its User-Agent is set to
    :data:`KUBELET_USER_AGENT` so the fake server can tell this traffic apart.
    ``namespace``: watch one namespace (default: all). ``default_namespace``:
    what the name-based controls (``oom``, ``pid``, ``log_path``...) assume.
    ``base_env``: added to every container's minimal environment.
    """

    def __init__(self, api_client: client.ApiClient, *, log_dir: Union[str, Path],
                 node_name: str = "fake-node", namespace: Optional[str] = None,
                 default_namespace: str = "default",
                 capacity: Optional[Mapping[str, Union[str, int]]] = None,
                 labels: Optional[Mapping[str, str]] = None, unpullable: Iterable[str] = (),
                 base_env: Optional[Mapping[str, str]] = None, retry_interval: float = 0.25,
                 crash_backoff: Tuple[float, float] = (0.5, 5.0)) -> None:
        api_client.user_agent = f"{KUBELET_USER_AGENT}/1.0"
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.namespace = namespace
        self.default_namespace = default_namespace
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(base_env or {})
        self.retry_interval = retry_interval
        self.crash_backoff = crash_backoff
        self._capacity = {**DEFAULT_CAPACITY, **(capacity or {})}
        self._labels = {"kubernetes.io/hostname": node_name, **DEFAULT_LABELS, **(labels or {})}
        self._unpullable = set(unpullable)
        self._runs: Dict[str, PodRun] = {}
        self._pending: Dict[str, Dict[str, Any]] = {}
        self._names: Dict[Tuple[str, str], str] = {}
        self._logs: Dict[Tuple[str, str], Path] = {}
        self._processes: Dict[int, _Process] = {}
        self._processes_lock = threading.Lock()
        self._waiters: List[threading.Thread] = []
        self._queue: "queue.Queue[Tuple[Any, ...]]" = queue.Queue()
        self._stopping = threading.Event()
        self._watch: Optional[watch.Watch] = None
        self._threads: List[threading.Thread] = []
        self._last_maintenance = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "ProcessKubelet":
        for target, name in ((self._work, "kubelet-worker"), (self._watch_pods, "kubelet-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop watching, kill every process started (whole groups) and wait for them."""
        self._stopping.set()
        watcher = self._threads[1] if len(self._threads) > 1 else None
        deadline = time.monotonic() + 10
        while watcher is not None and watcher.is_alive() and time.monotonic() < deadline:
            if self._watch is not None:
                self._watch.stop()
            watcher.join(0.05)
        self._queue.put(("stop",))
        for thread in self._threads:
            thread.join(timeout=10)
        with self._processes_lock:
            processes = list(self._processes.values())
        for process in processes:
            process.signal_group(signal.SIGKILL)
        for waiter in list(self._waiters):
            waiter.join(timeout=10)
        self.api_client.close()

    def running_pids(self) -> List[int]:
        """Pids of container processes not yet reaped."""
        with self._processes_lock:
            return [pid for pid, p in self._processes.items() if not p.exited.is_set()]

    # --- controls (thread-safe) ---------------------------------------------------------------

    @property
    def capacity(self) -> Dict[str, Union[str, int]]:
        return self._call(lambda: dict(self._capacity))

    @property
    def node_labels(self) -> Dict[str, str]:
        return self._call(lambda: dict(self._labels))

    def set_capacity(self, resources: Mapping[str, Union[str, int]]) -> None:
        """Change the node's capacity (merged); pending pods are scheduled again."""
        self._call(lambda: self._capacity.update(resources))

    def set_node_labels(self, labels: Mapping[str, str]) -> None:
        """Replace the node's extra labels (hostname/os/arch stay)."""
        def change() -> None:
            self._labels = {"kubernetes.io/hostname": self.node_name, **DEFAULT_LABELS,
                            **labels}
        self._call(change)

    def set_unpullable(self, images: Iterable[str]) -> None:
        """Images that fail to pull (besides any containing ``does-not-exist``)."""
        chosen = set(images)
        self._call(lambda: setattr(self, "_unpullable", chosen))

    def oom(self, name: str, namespace: Optional[str] = None) -> None:
        """The kernel's OOM killer: SIGKILL, reported as OOMKilled, exit code 137."""
        self._call(lambda: self._kill(self._run_named(name, namespace), "OOMKilled"))

    def evict(self, name: str, namespace: Optional[str] = None,
              message: str = "The node was low on resource: memory. Threshold quantity: "
                             "100Mi, available: 50Mi. ") -> None:
        """Node-pressure eviction: the pod is killed and left Failed, reason Evicted."""
        def evict() -> None:
            run = self._run_named(name, namespace)
            run.pod_reason, run.pod_message = "Evicted", message
            self._kill(run, "Evicted")
        self._call(evict)

    def pid(self, name: str, namespace: Optional[str] = None) -> Optional[int]:
        """The running container's pid (also its process group), if it runs."""
        def lookup() -> Optional[int]:
            process = self._run_named(name, namespace).process
            return process.pid if process is not None and not process.exited.is_set() else None
        return self._call(lookup)

    def log_path(self, name: str, namespace: Optional[str] = None) -> Optional[Path]:
        """The latest log file of the pod called ``name`` (kept after the pod is deleted)."""
        return self._logs.get((namespace or self.default_namespace, name))

    def read_log(self, name: str, namespace: Optional[str] = None) -> str:
        path = self.log_path(name, namespace)
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def _call(self, function: Callable[[], T], timeout: float = 15.0) -> T:
        """Run ``function`` on the worker thread, in order with pod events; its result."""
        if self._stopping.is_set() or not self._threads:
            raise RuntimeError("the kubelet is not running")
        done: "queue.Queue[Tuple[bool, Any]]" = queue.Queue()
        self._queue.put(("call", function, done))
        ok, value = done.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def _run_named(self, name: str, namespace: Optional[str]) -> PodRun:
        uid = self._names.get((namespace or self.default_namespace, name))
        run = self._runs.get(uid or "")
        if run is None:
            raise LookupError(f"pod {name} does not run on {self.node_name}")
        return run

    # --- the watch ----------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        version: Optional[str] = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch_from(version)
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                else:
                    self._pause_after_failure(exc)
            except Exception as exc:  # a dropped connection, the server going away
                self._pause_after_failure(exc)

    def _pause_after_failure(self, exc: Exception) -> None:
        if not self._stopping.is_set():
            log.debug("kubelet watch interrupted (%s); resuming", type(exc).__name__)
            self._stopping.wait(0.1)

    def _list_function(self) -> Tuple[Callable[..., Any], Tuple[Any, ...]]:
        if self.namespace:
            return self.core.list_namespaced_pod, (self.namespace,)
        return self.core.list_pod_for_all_namespaces, ()

    def _relist(self) -> str:
        function, args = self._list_function()
        response = function(*args, _preload_content=False)
        try:
            data = json.loads(response.data)
        finally:
            response.release_conn()
        client.V1PodList.from_dict(data)  # the fake's list must validate, like its events
        self._queue.put(("relist", data["items"]))
        return data["metadata"]["resourceVersion"]

    def _watch_from(self, version: str) -> str:
        function, args = self._list_function()
        self._watch = watch.Watch()
        if self._stopping.is_set():
            return version
        for event in self._watch.stream(function, *args, resource_version=version,
                                        timeout_seconds=60, allow_watch_bookmarks=True):
            raw = event["raw_object"]
            version = raw["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                self._queue.put(("event", event["type"], raw))
        return version

    # --- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_interval)
            except queue.Empty:
                item = ("tick",)
            if item[0] == "stop":
                return
            try:
                self._handle(item)
                if time.monotonic() - self._last_maintenance >= self.retry_interval:
                    self._maintain()
            except ApiException as exc:  # retried by the next maintenance pass
                log.warning("kubelet: API call failed while handling %s: %s %s", item[0],
                            exc.status, exc.reason)
            except Exception:  # keep the node alive; the test will see the pod stuck
                log.exception("kubelet: handling %s failed", item[0])

    def _handle(self, item: Tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "event":
            self._on_event(item[1], item[2])
        elif kind == "relist":
            self._on_relist(item[1])
        elif kind == "exited":
            self._on_exit(item[1], item[2], item[3])
        elif kind == "call":
            try:
                result = (True, item[1]())
            except Exception as exc:  # handed to the caller's thread
                result = (False, exc)
            item[2].put(result)
            self._schedule_pending()

    def _on_relist(self, pods: List[Dict[str, Any]]) -> None:
        present = {pod["metadata"]["uid"] for pod in pods}
        for uid in [u for u in self._runs if u not in present]:
            self._forget(uid, None)
        for uid in [u for u in self._pending if u not in present]:
            del self._pending[uid]
        for pod in pods:
            self._observe(pod)

    def _on_event(self, kind: str, pod: Dict[str, Any]) -> None:
        if kind == "DELETED":
            self._forget(pod["metadata"]["uid"], pod)
        else:
            self._observe(pod)

    def _observe(self, pod: Dict[str, Any]) -> None:
        uid, spec, meta = pod["metadata"]["uid"], pod["spec"], pod["metadata"]
        if not spec.get("nodeName"):
            if not meta.get("deletionTimestamp") and spec.get("schedulerName") == SCHEDULER:
                self._pending[uid] = pod
                self._schedule_pending()
            return
        self._pending.pop(uid, None)
        if spec["nodeName"] != self.node_name:
            return
        run = self._runs.get(uid)
        if run is None:
            if (pod.get("status") or {}).get("phase") in TERMINAL:
                return  # finished before this kubelet started
            run = self._admit(pod)
        else:
            run.pod = pod
        if meta.get("deletionTimestamp"):
            self._begin_termination(run)

    def _forget(self, uid: str, pod: Optional[Dict[str, Any]]) -> None:
        """The pod is gone from the API: kill what still runs (force deletion)."""
        self._pending.pop(uid, None)
        run = self._runs.pop(uid, None)
        if run is None:
            return
        if run.process is not None and not run.process.exited.is_set():
            grace = int(((pod or run.pod)["metadata"].get("deletionGracePeriodSeconds") or 0))
            self._stop_process(run.process, grace)
        self._schedule_pending()

    def _maintain(self) -> None:
        """Retries: waiting containers, crash back-offs, unschedulable pods; deadlines."""
        self._last_maintenance = now = time.monotonic()
        for run in list(self._runs.values()):
            if run.terminating:
                continue
            if run.state in ("waiting", "backoff") and run.next_attempt <= now:
                self._try_start(run)
            elif run.state == "running":
                self._check_deadline(run, now)
            if run.sent is None:  # its last status patch failed
                self._publish(run)
        self._schedule_pending()

    # --- scheduling ---------------------------------------------------------------------------

    def _schedule_pending(self) -> None:
        """One scheduling pass: pods in priority then creation order, each bound if it fits."""
        if not self._pending:
            return
        order = sorted(self._pending.values(), key=lambda p: (
            -(p["spec"].get("priority") or 0), p["metadata"]["creationTimestamp"],
            p["metadata"]["name"]))
        active = [r.pod for r in self._runs.values() if r.active]
        used: Dict[str, Decimal] = {}
        for pod in active:
            _add_requests(used, pod)
        for pod in order:
            problem = self._unfit(pod, used, len(active))
            if problem:
                self._report_unschedulable(pod, problem)
            elif self._bind(pod):
                self._pending.pop(pod["metadata"]["uid"], None)
                active.append(pod)
                _add_requests(used, pod)

    def _unfit(self, pod: Dict[str, Any], used: Dict[str, Decimal], running: int) -> Optional[str]:
        """The scheduler's message if the pod does not fit this node, else None."""
        selector = pod["spec"].get("nodeSelector") or {}
        if any(self._labels.get(k) != v for k, v in selector.items()):
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        reasons = []
        if running + 1 > int(self._capacity.get("pods", 110)):
            reasons.append("1 Too many pods")
        for name, amount in sorted(pod_requests(pod).items()):
            capacity = parse_quantity(self._capacity.get(name, 0))
            if amount > 0 and used.get(name, Decimal(0)) + amount > capacity:
                reasons.append(f"1 Insufficient {name}")
        if not reasons:
            return None
        return f"0/1 nodes are available: {', '.join(reasons)}."

    def _report_unschedulable(self, pod: Dict[str, Any], message: str) -> None:
        status = pod.get("status") or {}
        old = next((c for c in status.get("conditions") or []
                    if c.get("type") == "PodScheduled"), None)
        if old and old.get("status") == "False" and old.get("message") == message:
            return
        new_status = json.loads(json.dumps(status))
        set_condition(new_status, "PodScheduled", "False", "Unschedulable", message)
        self._patch_status(pod, {"conditions": new_status["conditions"]})
        pod.setdefault("status", {})["conditions"] = new_status["conditions"]

    def _bind(self, pod: Dict[str, Any]) -> bool:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
        try:
            # The real API answers a Status, which the generated client cannot read as a
            # V1Binding (kubernetes-client/python#547): take the raw response.
            response = self.core.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False)
            response.read()  # an unread body would poison the pooled connection
            response.release_conn()
        except ApiException as exc:
            if exc.status in (404, 409):
                self._pending.pop(meta["uid"], None)
                return False
            raise
        bound = json.loads(json.dumps(pod))
        bound["spec"]["nodeName"] = self.node_name
        self._admit(bound)
        return True

    # --- running ------------------------------------------------------------------------------

    def _admit(self, pod: Dict[str, Any]) -> PodRun:
        meta = pod["metadata"]
        stem = f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        sandbox = self.log_dir / stem
        sandbox.mkdir(parents=True, exist_ok=True)
        run = PodRun(pod, self.log_dir / f"{stem}.log", sandbox)
        self._runs[run.uid] = run
        self._names[(run.namespace, run.name)] = run.uid
        self._logs[(run.namespace, run.name)] = run.log_path
        if meta.get("deletionTimestamp"):
            self._begin_termination(run)
        else:
            self._try_start(run)
        return run

    def _try_start(self, run: PodRun) -> None:
        run.next_attempt = time.monotonic() + self.retry_interval
        image = run.container.get("image", "")
        if "does-not-exist" in image or image in self._unpullable:
            backoff = run.reason in ("ErrImagePull", "ImagePullBackOff")
            self._wait(run, "ImagePullBackOff" if backoff else "ErrImagePull",
                       f'Back-off pulling image "{image}"' if backoff else
                       f'failed to pull and unpack image "{image}": failed to resolve '
                       f'reference "{image}": {image}: not found')
            return
        try:
            env = self._container_env(run)
        except ConfigError as exc:
            self._wait(run, "CreateContainerConfigError", str(exc))
            return
        self._launch(run, env)

    def _wait(self, run: PodRun, reason: str, message: str) -> None:
        run.reason, run.message = reason, message
        if run.state != "backoff":
            run.state = "waiting"
        self._publish(run)

    def _launch(self, run: PodRun, env: Dict[str, str]) -> None:
        container = run.container
        argv = [expand(a, env) for a in (container.get("command") or []) +
                (container.get("args") or [])]
        run.run_id += 1
        run.container_id = f"containerd://{secrets.token_hex(32)}"
        run.started_at, run.started_mono = now_rfc3339(), time.monotonic()
        try:
            process = self._spawn(run, argv, env)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = (f"failed to create containerd task: failed to create shim task: OCI "
                       f"runtime create failed: runc create failed: unable to start container "
                       f"process: exec: \"{argv[0] if argv else ''}\": {reason}: unknown")
            self._finish(run, 128, "ContainerCannotRun", message)
            return
        run.process, run.state, run.reason, run.message = process, "running", "", None
        log.debug("kubelet: started %s/%s as pid %d", run.namespace, run.name, process.pid)
        self._publish(run)

    def _spawn(self, run: PodRun, argv: List[str], env: Dict[str, str]) -> _Process:
        if not argv:
            raise ValueError("no command specified")
        working_dir = run.container.get("workingDir")
        if working_dir and not Path(working_dir).is_dir():
            log.warning("kubelet: workingDir %s does not exist here; using the sandbox",
                        working_dir)
            working_dir = None
        cwd = Path(working_dir or run.sandbox)
        _check_executable(argv[0], env["PATH"], cwd)
        with open(run.log_path, "ab") as output:
            popen = subprocess.Popen(PARENT_DEATH_SIGNAL + argv, env=env, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        process = _Process(popen)
        with self._processes_lock:
            self._processes[popen.pid] = process
        self._waiters = [t for t in self._waiters if t.is_alive()]
        waiter = threading.Thread(target=self._reap, args=(run.uid, run.run_id, process),
                                  name=f"kubelet-wait-{popen.pid}", daemon=True)
        self._waiters.append(waiter)
        waiter.start()
        return process

    def _reap(self, uid: str, run_id: int, process: _Process) -> None:
        code = process.wait_and_reap()
        with self._processes_lock:
            self._processes.pop(process.pid, None)
        self._queue.put(("exited", uid, run_id, code))

    def _on_exit(self, uid: str, run_id: int, returncode: int) -> None:
        run = self._runs.get(uid)
        if run is None or run.run_id != run_id:
            return
        run.process = None
        code = returncode if returncode >= 0 else 128 - returncode
        reason = "OOMKilled" if run.kill_reason == "OOMKilled" else \
            "Completed" if code == 0 else "Error"
        self._finish(run, code, reason, None)

    def _finish(self, run: PodRun, code: int, reason: str, message: Optional[str]) -> None:
        run.exit_code, run.reason, run.message = code, reason, message
        run.finished_at = now_rfc3339()
        policy = run.pod["spec"].get("restartPolicy", "Always")
        restart = not run.terminating and run.pod_reason is None and \
            (policy == "Always" or (policy == "OnFailure" and code != 0))
        if restart:
            run.last_state = {"terminated": self._terminated(run)}
            run.restarts += 1
            run.state, run.reason = "backoff", "CrashLoopBackOff"
            delay = min(self.crash_backoff[0] * 2 ** (run.restarts - 1), self.crash_backoff[1])
            run.message = (f"back-off {delay:g}s restarting failed container="
                           f"{run.container['name']} pod={run.name}_{run.namespace}({run.uid})")
            run.next_attempt = time.monotonic() + delay
        else:
            run.state = "terminated"
        self._publish(run)
        if run.terminating:
            self._delete_finished(run)
        self._schedule_pending()

    def _kill(self, run: PodRun, reason: str) -> None:
        run.kill_reason = reason
        if run.process is not None:
            run.process.signal_group(signal.SIGKILL)
        elif run.state != "terminated":
            self._finish(run, 137, "Error", None)

    def _check_deadline(self, run: PodRun, now: float) -> None:
        deadline = run.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and now - run.started_mono > deadline and not run.pod_reason:
            run.pod_reason = "DeadlineExceeded"
            run.pod_message = "Pod was active on the node longer than the specified deadline"
            self._kill(run, "DeadlineExceeded")

    # --- termination --------------------------------------------------------------------------

    def _begin_termination(self, run: PodRun) -> None:
        if run.terminating:
            return
        run.terminating = True
        grace = run.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = run.pod["spec"].get("terminationGracePeriodSeconds", 30)
        if run.process is not None and not run.process.exited.is_set():
            self._stop_process(run.process, int(grace))
        else:
            self._delete_finished(run)

    def _stop_process(self, process: _Process, grace: int) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds (off the worker thread)."""
        process.signal_group(signal.SIGTERM)

        def escalate() -> None:
            if not process.exited.wait(grace):
                process.signal_group(signal.SIGKILL)

        killer = threading.Thread(target=escalate, name=f"kubelet-kill-{process.pid}",
                                  daemon=True)
        self._waiters.append(killer)
        killer.start()

    def _delete_finished(self, run: PodRun) -> None:
        if run.deleting:
            return
        run.deleting = True
        options = client.V1DeleteOptions(grace_period_seconds=0,
                                          preconditions=client.V1Preconditions(uid=run.uid))
        try:
            self.core.delete_namespaced_pod(run.name, run.namespace, body=options,
                                            grace_period_seconds=0)
        except ApiException as exc:
            if exc.status not in (404, 409):
                run.deleting = False
                raise

    # --- status -------------------------------------------------------------------------------

    def _publish(self, run: PodRun) -> None:
        status = self._status(run)
        if status == run.sent:
            return
        body = dict(status)
        for key in ("reason", "message"):
            body.setdefault(key, None)  # a merge patch removes what is no longer true
        try:
            self._patch_status(run.pod, body)
            run.sent = status
        except ApiException as exc:
            if exc.status != 404:  # 404: the pod is gone, its DELETED event is coming
                run.sent = None  # the next maintenance pass tries again
                log.warning("kubelet: status of %s/%s not written (%s)", run.namespace,
                            run.name, exc.status)

    def _patch_status(self, pod: Dict[str, Any], status: Dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.core.patch_namespaced_pod_status(
            meta["name"], meta["namespace"], {"status": status},
            _content_type="application/merge-patch+json")

    def _status(self, run: PodRun) -> Dict[str, Any]:
        phase = self._phase(run)
        status: Dict[str, Any] = {
            "phase": phase, "hostIP": POD_IP, "hostIPs": [{"ip": POD_IP}], "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}], "startTime": run.start_time,
            "conditions": self._conditions(run, phase),
            "containerStatuses": [self._container_status(run)],
            "qosClass": (run.pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        if run.pod_reason:
            status["reason"], status["message"] = run.pod_reason, run.pod_message
        return status

    @staticmethod
    def _phase(run: PodRun) -> str:
        if run.state == "running" or run.state == "backoff":
            return "Running"
        if run.state == "terminated":
            return "Succeeded" if run.exit_code == 0 and not run.pod_reason else "Failed"
        return "Pending"

    def _conditions(self, run: PodRun, phase: str) -> List[Dict[str, Any]]:
        previous = {"conditions": json.loads(json.dumps((run.sent or {}).get("conditions")
                                                        or (run.pod.get("status") or {})
                                                        .get("conditions") or []))}
        ready = run.state == "running"
        why = {"Succeeded": "PodCompleted", "Failed": "PodFailed"}.get(phase, "ContainersNotReady")
        unready = None if ready else f"containers with unready status: [{run.container['name']}]"
        set_condition(previous, "PodReadyToStartContainers", "True")
        set_condition(previous, "Initialized", "True")
        set_condition(previous, "Ready", "True" if ready else "False",
                      None if ready else why, unready)
        set_condition(previous, "ContainersReady", "True" if ready else "False",
                      None if ready else why, unready)
        set_condition(previous, "PodScheduled", "True")
        if run.pod_reason == "Evicted":
            set_condition(previous, "DisruptionTarget", "True", "TerminationByKubelet",
                          run.pod_message)
        return previous["conditions"]

    def _container_status(self, run: PodRun) -> Dict[str, Any]:
        container = run.container
        image = container.get("image", "")
        started = run.state in ("running", "terminated") and bool(run.container_id)
        entry: Dict[str, Any] = {
            "name": container["name"], "image": image, "imageID": image_id(image)
            if started or run.restarts else "", "ready": run.state == "running",
            "restartCount": run.restarts, "started": run.state == "running",
            "lastState": run.last_state, "state": self._state(run)}
        if run.container_id:
            entry["containerID"] = run.container_id
        return entry

    def _state(self, run: PodRun) -> Dict[str, Any]:
        if run.state == "running":
            return {"running": {"startedAt": run.started_at}}
        if run.state == "terminated" and run.exit_code is not None:
            return {"terminated": self._terminated(run)}
        waiting: Dict[str, Any] = {"reason": run.reason}
        if run.message:
            waiting["message"] = run.message
        return {"waiting": waiting}

    @staticmethod
    def _terminated(run: PodRun) -> Dict[str, Any]:
        terminated: Dict[str, Any] = {
            "exitCode": run.exit_code, "reason": run.reason,
            "startedAt": run.started_at, "finishedAt": run.finished_at}
        if run.container_id:
            terminated["containerID"] = run.container_id
        if run.message:
            terminated["message"] = run.message
        return terminated

    # --- environment --------------------------------------------------------------------------

    def _container_env(self, run: PodRun) -> Dict[str, str]:
        """A minimal base env (PATH starts at this venv's bin), then envFrom, then env."""
        env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin",
                                        "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin",
                                        "/bin"]),
               "HOSTNAME": run.name, "HOME": str(run.sandbox), **self.base_env}
        for source in run.container.get("envFrom") or []:
            env.update(self._env_from(run, source))
        for variable in run.container.get("env") or []:
            value = self._env_value(run, variable, env)
            if value is not None:
                env[variable["name"]] = value
        return env

    def _env_from(self, run: PodRun, source: Dict[str, Any]) -> Dict[str, str]:
        prefix = source.get("prefix", "")
        ref = source.get("secretRef")
        if ref is None:
            ref = source.get("configMapRef") or {}
            if ref.get("optional"):
                return {}
            raise ConfigError(f'configmap "{ref.get("name")}" not found')
        data = self._secret_data(run.namespace, ref["name"], bool(ref.get("optional")))
        return {prefix + key: value for key, value in (data or {}).items()}

    def _env_value(self, run: PodRun, variable: Dict[str, Any],
                   env: Dict[str, str]) -> Optional[str]:
        source = variable.get("valueFrom")
        if source is None:
            return expand(variable.get("value", ""), env)
        if "secretKeyRef" in source:
            return self._secret_key(run, source["secretKeyRef"])
        if "fieldRef" in source:
            return field_ref(run.pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            return self._resource_ref(run, source["resourceFieldRef"])
        ref = source.get("configMapKeyRef") or {}
        if ref.get("optional"):
            return None
        raise ConfigError(f'configmap "{ref.get("name")}" not found')

    def _secret_key(self, run: PodRun, ref: Dict[str, Any]) -> Optional[str]:
        optional = bool(ref.get("optional"))
        data = self._secret_data(run.namespace, ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in Secret "
                              f"{run.namespace}/{ref['name']}")
        return data[ref["key"]]

    def _secret_data(self, namespace: str, name: str, optional: bool) -> Optional[Dict[str, str]]:
        """The Secret's decoded data, read through the API (values never logged)."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                if optional:
                    return None
                raise ConfigError(f'secret "{name}" not found') from None
            raise ConfigError(f"failed to get secret {namespace}/{name}: {exc.status}") from None
        return {key: base64.b64decode(value).decode("utf-8", "replace")
                for key, value in (secret.data or {}).items()}

    def _resource_ref(self, run: PodRun, ref: Dict[str, Any]) -> str:
        """``limits.cpu`` and friends; an unset limit is the node's capacity, as real."""
        part, _, name = ref["resource"].partition(".")
        resources = run.container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if part == "requests":
            amount = requests.get(name, limits.get(name, 0))
        else:
            amount = limits.get(name, self._capacity.get(name, 0))
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(parse_quantity(amount) / divisor))


def _check_executable(command: str, path: str, cwd: Path) -> None:
    """What the container runtime checks before exec (the launcher would hide it)."""
    if "/" in command:
        target = cwd / command
        if not target.exists():
            raise OSError(errno.ENOENT, f"stat {command}: no such file or directory")
        if target.is_dir() or not os.access(target, os.X_OK):
            raise OSError(errno.EACCES, "permission denied")
    elif shutil.which(command, path=path) is None:
        raise OSError(errno.ENOENT, "executable file not found in $PATH")


def _add_requests(used: Dict[str, Decimal], pod: Mapping[str, Any]) -> None:
    for name, amount in pod_requests(pod).items():
        used[name] = used.get(name, Decimal(0)) + amount


def pod_requests(pod: Mapping[str, Any]) -> Dict[str, Decimal]:
    """What the scheduler counts for a pod: containers' requests (limits where unset)."""
    total: Dict[str, Decimal] = {}
    for container in pod["spec"].get("containers") or []:
        resources = container.get("resources") or {}
        amounts = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, amount in amounts.items():
            total[name] = total.get(name, Decimal(0)) + parse_quantity(amount)
    return total


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` references as the kubelet expands them; ``$$`` escapes; unknown stay."""
    def replace(match: "re.Match[str]") -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    """The downward API's env fields."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
              "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.podIP": POD_IP, "status.podIPs": POD_IP, "status.hostIP": POD_IP,
              "status.hostIPs": POD_IP}
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ConfigError(f"unsupported fieldPath: {path}")


def image_id(image: str) -> str:
    """A plausible ``imageID``: the repository and a digest derived from the reference."""
    repository = image.split("@")[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    if "/" not in repository:
        repository = f"docker.io/library/{repository}"
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
