"""Pools on a cluster for the backend tests: the stand-in, or a real cluster.

The fixtures that use these live in conftest.py; the helpers are imported
by the test modules.
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List

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
RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


SQUARE = by_value("def square(x):\n    return x * x\n", "square")
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
