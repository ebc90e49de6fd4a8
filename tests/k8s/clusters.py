"""Pools on a cluster for the backend tests: the stand-in, or a real cluster.

The fixtures that use these live in conftest.py; the helpers are imported
by the test modules.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List
from urllib.parse import urlsplit

import psutil
import pytest
import yaml
from kubernetes import client

import fiber_jupyter
from fiber_jupyter.backends import Kubernetes

from ..conftest import EventRecorder, by_value, wait_for

REAL_KUBECONFIG = os.environ.get("FIBER_JUPYTER_TEST_KUBECONFIG")
REAL_IMAGE = os.environ.get("FIBER_JUPYTER_TEST_IMAGE", "fiber-worker:test")
SELECTOR = "app.kubernetes.io/name=fiber-jupyter"
# The stand-in's kubelet runs the pod's command with this host's Python; the
# image only matters to its image-pull check.
FAKE_IMAGE = "python:3.11-slim"
# How often a test polls the API server for a state no event tells it about.
API_POLL = 0.2
RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


SQUARE = by_value("def square(x):\n    return x * x\n", "square")
# Blocks until the test's Gate opens: the workers share this host's network (the
# stand-in's processes, host-network pods), so they reach it on the master's address.
GATED_SQUARE = by_value("def gated_square(x, host, port):\n    import socket\n"
                        "    with socket.create_connection((host, port)) as gate:\n"
                        "        gate.recv(1)\n    return x * x\n", "gated_square")
SLOW_SQUARE = by_value("def slow_square(x):\n    import time\n    time.sleep(0.05)\n"
                       "    return x * x\n", "slow_square")


@dataclass
class Cluster:
    """Where a test's pools run: the stand-in, or a real cluster."""

    kubeconfig: str
    namespace: str
    image: str
    address: str
    core: client.CoreV1Api
    fake: Any  # the FakeCluster, or None on a real cluster
    pod_template: Dict[str, Any] = field(default_factory=dict)

    def backend(self, **options: Any) -> Kubernetes:
        return Kubernetes(**{"image": self.image, "kubeconfig": self.kubeconfig,
                             "namespace": self.namespace, "address": self.address,
                             "pod_template": self.pod_template, **options})

    def pods(self) -> List[Any]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items

    def secrets(self) -> List[Any]:
        return self.core.list_namespaced_secret(self.namespace, label_selector=SELECTOR).items


def real_cluster(api_client: client.ApiClient) -> Cluster:
    """The cluster FIBER_JUPYTER_TEST_KUBECONFIG names (see docs/kubernetes.md).

    With FIBER_JUPYTER_TEST_HOST_NETWORK=1 (a single-node cluster on this
    machine) workers use the host's network and reach the master on
    127.0.0.1, and the image must already be on the node.
    """
    template: Dict[str, Any] = {}
    address = os.environ.get("FIBER_JUPYTER_TEST_ADDRESS") or None
    if os.environ.get("FIBER_JUPYTER_TEST_HOST_NETWORK") == "1":
        template = {"spec": {"hostNetwork": True, "containers": [
            {"name": "worker", "imagePullPolicy": "Never"}]}}
        address = address or "127.0.0.1"
    return Cluster(REAL_KUBECONFIG, os.environ.get("FIBER_JUPYTER_TEST_NAMESPACE", "default"),
                   REAL_IMAGE, address, client.CoreV1Api(api_client), None, template)


class Gate:
    """A TCP gate for GATED_SQUARE: holds each task's connection until :meth:`open`."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._server = socket.create_server((host, 0))
        self.port = self._server.getsockname()[1]
        self._held: List[socket.socket] = []
        self._is_open = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="gate", daemon=True)
        self._thread.start()

    def tasks(self, values: range) -> List[tuple]:
        return [(x, self.host, self.port) for x in values]

    def wait_for_waiting(self, count: int, timeout: float = 60.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._held) >= count, timeout):
                raise AssertionError(f"{len(self._held)} tasks at the gate, not {count}, "
                                     f"after {timeout} s")

    def open(self) -> None:
        with self._changed:
            self._is_open = True
            for connection in self._held:
                _release(connection)

    def close(self) -> None:
        self.open()
        # Closing alone does not wake a thread blocked in accept() (Linux); shutting the
        # listening socket down does, so teardown does not wait out the join's timeout.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:  # closed
                return
            with self._changed:
                if self._is_open:
                    _release(connection)
                else:
                    self._held.append(connection)
                    self._changed.notify_all()


def _release(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(b"x")
    connection.close()


def kill_worker(cluster: Cluster, pod_name: str) -> None:
    """SIGKILL the worker process of a running pod, as the kernel's OOM killer would.

    The stand-in's kubelet knows the pid; on a real node (it must be this
    machine) it is every process in the container's cgroup.
    """
    if cluster.fake is not None:
        os.kill(cluster.fake.kubelet.pid(pod_name), signal.SIGKILL)
        return
    container = wait_for(lambda: _container_id(cluster, pod_name), 30,
                         f"the kubelet to report pod {pod_name}'s container", API_POLL)
    victims = [process for process in psutil.process_iter() if _in_cgroup(process, container)]
    assert victims, f"no process of container {container} on this machine: is the node here?"
    for process in victims:
        process.kill()


def _container_id(cluster: Cluster, pod_name: str) -> str:
    """The running container's id, once the kubelet has reported it ('' before)."""
    statuses = cluster.core.read_namespaced_pod(pod_name, cluster.namespace).status
    running = [status for status in statuses.container_statuses or ()
               if status.container_id and status.state.running]
    return running[0].container_id.split("://", 1)[1] if running else ""


def _in_cgroup(process: psutil.Process, container: str) -> bool:
    try:
        return container in Path(f"/proc/{process.pid}/cgroup").read_text()
    except OSError:  # gone meanwhile
        return False


def wait_for_no_pool_left(cluster: Cluster, timeout: float = 60.0) -> None:
    """After a test: every pool's pods and Secret are gone (deleted pods may still be
    shutting down, so this waits), or the test fails naming what is left."""
    def left() -> List[str]:
        return [f"pod {pod.metadata.name} ({pod.status.phase})" for pod in cluster.pods()] + [
            f"secret {secret.metadata.name}" for secret in cluster.secrets()]

    try:
        wait_for(lambda: not left(), timeout, "the test's pools to leave nothing behind",
                 API_POLL)
    except pytest.fail.Exception:
        pytest.fail(f"left behind on the cluster: {', '.join(left())}")


def wait_live(pool: fiber_jupyter.Pool, count: int, timeout: float = 60.0) -> None:
    recorder = EventRecorder(pool)
    if pool.status().live != count:
        recorder.next(fiber_jupyter.Scaled, timeout, where=lambda e: e.live == count)




@contextlib.contextmanager
def service_account_from_rbac_manifest(cluster: Cluster, directory: Path) -> Iterator[tuple]:
    """The ServiceAccount, Role and RoleBinding of deploy/rbac.yaml, and a kubeconfig as it.

    Yields (kubeconfig path, a function that deletes the RoleBinding); removes all three.
    """
    documents = list(yaml.safe_load_all(RBAC_MANIFEST.read_text()))
    rbac = client.RbacAuthorizationV1Api(cluster.core.api_client)
    namespace = cluster.namespace
    creators = {"ServiceAccount": cluster.core.create_namespaced_service_account,
                "Role": rbac.create_namespaced_role,
                "RoleBinding": rbac.create_namespaced_role_binding}
    for document in documents:
        creators[document["kind"]](namespace, document)
    try:
        token = _service_account_token(cluster, "fiber-jupyter")
        kubeconfig = _token_kubeconfig(cluster.kubeconfig, token, namespace, directory)

        def unbind() -> None:
            rbac.delete_namespaced_role_binding("fiber-jupyter", namespace)

        yield kubeconfig, unbind
    finally:
        for delete in (lambda: rbac.delete_namespaced_role_binding("fiber-jupyter", namespace),
                       lambda: rbac.delete_namespaced_role("fiber-jupyter", namespace),
                       lambda: cluster.core.delete_namespaced_service_account("fiber-jupyter",
                                                                              namespace)):
            try:
                delete()
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise


def _service_account_token(cluster: Cluster, name: str, timeout: float = 60.0) -> str:
    """The token the controller-manager puts in the account's token Secret."""
    def token() -> str:
        account = cluster.core.read_namespaced_service_account(name, cluster.namespace)
        for reference in account.secrets or ():
            secret = cluster.core.read_namespaced_secret(reference.name, cluster.namespace)
            if secret.data and "token" in secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return ""

    return wait_for(token, timeout, f"a token for service account {name}")


def _token_kubeconfig(admin: str, token: str, namespace: str, directory: Path) -> str:
    """The admin kubeconfig's cluster, with the service account as its user."""
    config = yaml.safe_load(Path(admin).read_text())
    context = {"cluster": config["clusters"][0]["name"], "user": "account",
               "namespace": namespace}
    config["users"] = [{"name": "account", "user": {"token": token}}]
    config["contexts"] = [{"name": "account", "context": context}]
    config["current-context"] = "account"
    path = directory / "account.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@contextlib.contextmanager
def notebook_pod(cluster: Cluster, script: str) -> Iterator[str]:
    """A pod that stands for a notebook in the cluster: ``python -c script`` in the
    worker image, as the fiber-jupyter service account, on the host's network.

    In-cluster configuration finds the API server through KUBERNETES_SERVICE_HOST,
    the ``kubernetes`` Service's address; this node has no service proxy, so the
    pod is given the server's own loopback address. Yields the pod's name;
    deletes it if the test has not.
    """
    server = urlsplit(yaml.safe_load(Path(cluster.kubeconfig).read_text())
                      ["clusters"][0]["cluster"]["server"])
    name = f"notebook-{uuid.uuid4().hex[:8]}"
    env = {"KUBERNETES_SERVICE_HOST": server.hostname, "KUBERNETES_SERVICE_PORT": str(server.port),
           "POD_IP": cluster.address, "PYTHONUNBUFFERED": "1"}
    container = {"name": "notebook", "image": cluster.image, "imagePullPolicy": "Never",
                 "command": ["python", "-c", script],
                 "env": [{"name": k, "value": v} for k, v in env.items()] + [
                     {"name": "POD_NAME",
                      "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    cluster.core.create_namespaced_pod(cluster.namespace, {
        "metadata": {"name": name},
        "spec": {"hostNetwork": True, "restartPolicy": "Never",
                 "serviceAccountName": "fiber-jupyter", "containers": [container]}})
    try:
        yield name
    finally:
        with contextlib.suppress(client.exceptions.ApiException):
            cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)


def pod_log(cluster: Cluster, name: str) -> str:
    """The pod's log so far ('' before its container started)."""
    try:
        return cluster.core.read_namespaced_pod_log(name, cluster.namespace) or ""
    except client.exceptions.ApiException:
        return ""
