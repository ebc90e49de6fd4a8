"""Fixtures: a fake cluster (API stand-in + process kubelet) per test, torn down fully.

``fake_cluster`` is cheap (about 50 ms): a server thread on a free port of
127.0.0.1, a kubeconfig that points at it over plain HTTP with a random bearer
token, and a kubelet that runs pods as processes. Teardown stops the kubelet
first (every pod process killed and reaped), then the server.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar, Union

import pytest
from kubernetes import client, config

from . import clusters
from .fake_api import FakeKubeApi
from .kubelet import ProcessKubelet

log = logging.getLogger(__name__)

T = TypeVar("T")
NAMESPACE = "fiber-test"


def write_kubeconfig(path: Path, server: str, token: str, namespace: str = NAMESPACE) -> Path:
    """A kubeconfig with one context (current) for ``server`` over plain HTTP."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: fake\n  cluster:\n    server: {server}\n"
        f"users:\n- name: fake-user\n  user:\n    token: {token}\n"
        "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake-user\n"
        f"    namespace: {namespace}\n"
        "current-context: fake\n")
    path.chmod(0o600)
    return path


def new_api_client(kubeconfig: Union[str, Path]) -> client.ApiClient:
    """An ApiClient of its own, loaded from ``kubeconfig``; the global default is untouched."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration,
                            persist_config=False)
    return client.ApiClient(configuration)


@dataclass
class FakeCluster:
    """One test's cluster: the server, its kubelet, and a client for the test itself."""

    url: str
    kubeconfig: str  # a str: load_kube_config(config_file=...) fails on a Path
    namespace: str
    api: FakeKubeApi
    kubelet: ProcessKubelet
    api_client: client.ApiClient
    core: client.CoreV1Api

    def pod(self, name: str, namespace: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The pod as stored (a dict, or None): no request is made or counted."""
        return self.api.get_object("pods", namespace or self.namespace, name)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
        """``predicate()`` once truthy; re-checked on every API write (and twice a second);
        fails the test after ``timeout``."""
        try:
            return self.api.wait_for(predicate, timeout, what)
        except TimeoutError as exc:
            pytest.fail(str(exc))

    def wait_for_pod(self, name: str, predicate: Callable[[Dict[str, Any]], bool],
                     timeout: float = 10.0, what: str = "",
                     namespace: Optional[str] = None) -> Dict[str, Any]:
        """The stored pod once ``predicate(pod)`` holds."""
        def check() -> Optional[Dict[str, Any]]:
            pod = self.pod(name, namespace)
            return pod if pod is not None and predicate(pod) else None
        return self.wait_for(check, timeout, what or f"pod {name}")

    def wait_for_phase(self, name: str, phase: str, timeout: float = 10.0,
                       namespace: Optional[str] = None) -> Dict[str, Any]:
        return self.wait_for_pod(name, lambda p: p["status"].get("phase") == phase, timeout,
                                 f"pod {name} to be {phase}", namespace)

    def wait_for_deleted(self, name: str, timeout: float = 10.0,
                         namespace: Optional[str] = None) -> None:
        self.wait_for(lambda: self.pod(name, namespace) is None, timeout,
                      f"pod {name} to be deleted")


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    """A fresh API stand-in and process kubelet; namespace ``fiber-test`` in the kubeconfig."""
    # kubectl (client-go) sends no bearer token over plain HTTP, so the server does not
    # demand one here; the Python client still sends this dummy token, as it would a real one.
    token = secrets.token_urlsafe(24)
    api = FakeKubeApi().start()
    kubelet: Optional[ProcessKubelet] = None
    own: Optional[client.ApiClient] = None
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, token)
        kubelet = ProcessKubelet(new_api_client(kubeconfig), log_dir=tmp_path / "pods",
                                 default_namespace=NAMESPACE)
        api.log_source = lambda namespace, name: kubelet.log_path(name, namespace)
        kubelet.start()
        own = new_api_client(kubeconfig)
        yield FakeCluster(api.url, str(kubeconfig), NAMESPACE, api, kubelet, own,
                          client.CoreV1Api(own))
    finally:
        if kubelet is not None:
            kubelet.stop()
            leftover = kubelet.running_pids()
            assert not leftover, f"kubelet left processes running: {leftover}"
        if own is not None:
            own.close()
        api.stop()


@pytest.fixture
def k8s_core(fake_cluster: FakeCluster) -> client.CoreV1Api:
    """The test's own CoreV1Api on the fake cluster."""
    return fake_cluster.core


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Mark every test that runs on the real cluster: ``-m real_cluster`` is that tier."""
    for item in items:
        params = getattr(item, "callspec", None)
        on_real = params is not None and params.params.get("cluster") == "real cluster"
        if on_real or "real" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_cluster)


# Pools on a cluster, for the backend and CLI tests (helpers in clusters.py) ----------------


@pytest.fixture
def pools() -> Iterator[Callable[..., Any]]:
    """Pools terminated and joined at the end of the test, whatever happened."""
    import fiber_jupyter

    made: List[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        made.append(fiber_jupyter.Pool(*args, **kwargs))
        return made[-1]

    yield make
    for pool in made:
        pool.terminate()
        pool.join()


@pytest.fixture
def fake(fake_cluster: FakeCluster) -> "clusters.Cluster":
    """The stand-in, as the Cluster the backend tests use."""
    return clusters.Cluster(str(fake_cluster.kubeconfig), fake_cluster.namespace,
                            clusters.FAKE_IMAGE, "127.0.0.1", fake_cluster.core, fake_cluster)


@pytest.fixture(params=["stand-in", "real cluster"])
def cluster(request: pytest.FixtureRequest) -> Iterator["clusters.Cluster"]:
    """The stand-in, and a real cluster when FIBER_JUPYTER_TEST_KUBECONFIG names one."""
    if request.param == "stand-in":
        yield request.getfixturevalue("fake")
        return
    yield request.getfixturevalue("real")


@pytest.fixture
def gate(cluster: "clusters.Cluster") -> Iterator["clusters.Gate"]:
    """Tasks (GATED_SQUARE) that wait on the test; opened at the end whatever happened."""
    opened = clusters.Gate(cluster.address)
    yield opened
    opened.close()


@pytest.fixture
def real() -> Iterator["clusters.Cluster"]:
    """The real cluster FIBER_JUPYTER_TEST_KUBECONFIG names, for what only a real one does."""
    if not clusters.REAL_KUBECONFIG:
        pytest.skip("no real cluster: set FIBER_JUPYTER_TEST_KUBECONFIG (docs/kubernetes.md)")
    api_client = new_api_client(Path(clusters.REAL_KUBECONFIG))
    real_cluster = clusters.real_cluster(api_client)
    yield real_cluster
    try:
        clusters.wait_for_no_pool_left(real_cluster)
    finally:
        api_client.close()
