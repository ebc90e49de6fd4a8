"""Specification: where a notebook pod finds itself, and kubeconfigs a pool cannot use.

A kubeconfig that is missing, is not YAML, lacks the context asked for, or
names an API server that does not answer fails ``Pool()`` itself with a
``KubernetesConfigError`` naming the file, the context or the server, and
leaves no thread behind (so a corrected pool can start at once). The server
is asked once, at once: an unreachable one is not found out only after the
pool gave up on five pods.
"""

from __future__ import annotations

import socket
import threading

import pytest

import fiber_jupyter
from fiber_jupyter import KubernetesConfigError
from fiber_jupyter.backends.kubernetes import Kubernetes
from fiber_jupyter.backends.kubernetes.config import own_pod_name

NO_CLUSTER_HINT = ("(outside a cluster, set KUBECONFIG or pass "
                   "Kubernetes(kubeconfig=..., context=...))")


def test_the_pod_name_is_the_hostname_in_an_ordinary_pod():
    assert own_pod_name({"HOSTNAME": "jupyter-ada"}) == "jupyter-ada"


def test_pod_name_from_the_downward_api_wins_over_a_host_network_pods_hostname():
    assert own_pod_name({"HOSTNAME": "node-7", "POD_NAME": "jupyter-ada"}) == "jupyter-ada"


# Kubeconfigs a pool cannot use ---------------------------------------------------------------

def kubeconfig_for(path, server: str, context: str = "nowhere"):
    """A kubeconfig with one context, current, for ``server``."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n"
        "users:\n- name: u\n  user:\n    token: not-a-secret\n"
        f"contexts:\n- name: {context}\n  context:\n    cluster: c\n    user: u\n"
        f"current-context: {context}\n")
    return path


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, so nothing else takes it, never
    listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def start_pool(kubeconfig, **options):
    return fiber_jupyter.Pool(1, name="misconfigured", backend=Kubernetes(
        image="python:3.11-slim", kubeconfig=str(kubeconfig), **options))


def threads_left():
    return [t.name for t in threading.enumerate() if t.name.endswith("-misconfigured")]


@pytest.mark.timeout(30)
def test_a_kubeconfig_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(KubernetesConfigError) as caught:
        start_pool(missing)
    assert str(caught.value) == (f"no Kubernetes cluster to run on: no kubeconfig at {missing} "
                                 f"{NO_CLUSTER_HINT}")
    assert threads_left() == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text, problem", [
    ("clusters:\n\t- name: c\n",
     "is not valid YAML: while scanning for the next token found character '\\t' that "
     "cannot start any token in \"{path}\", line 2, column 1"),
    ("- clusters\n- users\n",
     "is not a kubeconfig: list indices must be integers or slices, not str"),
], ids=["not YAML", "YAML but not a kubeconfig"])
def test_a_kubeconfig_that_cannot_be_read_is_named_with_the_problem(tmp_path, text, problem):
    broken = tmp_path / "kubeconfig"
    broken.write_text(text)
    with pytest.raises(KubernetesConfigError) as caught:
        start_pool(broken)
    assert str(caught.value) == (f"no Kubernetes cluster to run on: {broken} "
                                 f"{problem.format(path=broken)}")
    assert threads_left() == []


@pytest.mark.timeout(30)
def test_a_context_the_kubeconfig_lacks_is_named(tmp_path, closed_port):
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(KubernetesConfigError) as caught:
        start_pool(kubeconfig, context="staging")
    assert str(caught.value) == ("no Kubernetes cluster to run on: Invalid kube-config file. "
                                 f"Expected object with name staging in {kubeconfig}/contexts "
                                 f"list {NO_CLUSTER_HINT}")
    assert threads_left() == []


@pytest.mark.timeout(30)
def test_an_api_server_that_refuses_connections_fails_the_pool_at_once_naming_it(
        tmp_path, closed_port):
    server = f"http://127.0.0.1:{closed_port}"
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", server)
    with pytest.raises(KubernetesConfigError) as caught:
        start_pool(kubeconfig)
    assert str(caught.value) == (f"cannot reach the Kubernetes API server at {server} "
                                 f"(context 'nowhere' of {kubeconfig}): "
                                 "[Errno 111] Connection refused")
    assert threads_left() == []
