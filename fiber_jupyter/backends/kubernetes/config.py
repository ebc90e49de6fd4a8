"""What a user sets for a Kubernetes pool, and where the cluster and the notebook are.

:class:`Kubernetes` is what ``Pool(backend=Kubernetes(...))`` takes (and what
``backend="kubernetes"`` means, with the defaults): image, resources,
namespace, service account, pod template. It is also the backend factory the
scheduler calls, so building it touches no cluster; the client is loaded when
the pool starts.

Inside a cluster (``KUBERNETES_SERVICE_HOST`` set, a service account mounted)
the client uses the service account, the namespace is the notebook pod's own,
the workers default to the notebook pod's image, and they are owned by the
notebook pod, so Kubernetes removes them if the notebook pod goes. Outside,
the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``, ``context`` selectable)
is used and an image is required.
"""

from __future__ import annotations

import copy
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Optional

from ...errors import FiberError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_VARIABLE = "KUBERNETES_SERVICE_HOST"
# Seconds the first request (GET /version) may take to connect, and then to be
# answered. Without them a kubeconfig naming a host that drops packets would
# leave Pool() waiting for the operating system's TCP timeout (minutes); a
# closed port is refused at once. Generous for any cluster that is up.
PROBE_CONNECT_TIMEOUT = 5.0
PROBE_READ_TIMEOUT = 15.0
NO_CLUSTER_HINT = ("(outside a cluster, set KUBECONFIG or pass "
                   "Kubernetes(kubeconfig=..., context=...))")


class KubernetesConfigError(FiberError, ValueError):
    """The pool cannot run on Kubernetes as configured; the message says what to set."""


@dataclass(frozen=True)
class Kubernetes:
    """Options of a Kubernetes pool; every one has a default except, outside a cluster, ``image``.

    - ``image``: the workers' container image, with Python, pyzmq, cloudpickle and
      this package installed (``docker/worker.Dockerfile``); default in a
      cluster: the notebook pod's image.
    - ``namespace``: default in a cluster: the notebook's; else the context's, or "default".
    - ``cpu``, ``memory``, ``gpu``: per worker; requests and limits both.
    - ``service_account``, ``node_selector``, ``tolerations``: as in a pod spec.
    - ``pod_template``: a partial pod manifest merged over the generated one
      (``{"spec": {"priorityClassName": "batch"}}``); lists are replaced.
    - ``address``: the address of this machine workers connect to (the pool listens
      on it); default: this pod's IP in a cluster, else what this host's name
      resolves to.
    - ``kubeconfig``, ``context``: which cluster, outside one.
    - ``create_parallelism``: API requests in flight while creating or deleting pods.

    A pod that cannot start (unschedulable, image not pulled, bad config) is
    reported as waiting, with Kubernetes' reason, and fails after the pool's
    ``start_timeout``; give pools whose images take long to pull a larger one.
    """

    image: Optional[str] = None
    namespace: Optional[str] = None
    cpu: Optional[str] = None
    memory: Optional[str] = None
    gpu: Optional[int] = None
    service_account: Optional[str] = None
    node_selector: Dict[str, str] = field(default_factory=dict)
    tolerations: tuple = ()
    pod_template: Dict[str, Any] = field(default_factory=dict)
    address: Optional[str] = None
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    create_parallelism: int = 16

    name: ClassVar[str] = "kubernetes"
    encrypts: ClassVar[bool] = True

    def __call__(self, on_exit: Any, on_waiting: Any = None, pool_name: str = "pool") -> Any:
        """The scheduler's factory call: a backend for one pool."""
        from .backend import KubernetesBackend

        return KubernetesBackend(self, on_exit, on_waiting, pool_name)


def in_cluster(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether this process runs in a pod with a service account."""
    environ = os.environ if environ is None else environ
    return IN_CLUSTER_VARIABLE in environ and (SERVICE_ACCOUNT_DIR / "token").exists()


def own_namespace() -> Optional[str]:
    """The namespace of this pod (in a cluster), from its service account."""
    path = SERVICE_ACCOUNT_DIR / "namespace"
    return path.read_text().strip() if path.exists() else None


def own_pod_name(environ: Optional[Mapping[str, str]] = None) -> str:
    """This pod's name: ``POD_NAME`` (downward API) if set, else the hostname.

    The hostname is the pod's name except in a ``hostNetwork`` pod, where it
    is the node's: such a notebook pod must set ``POD_NAME``.
    """
    environ = os.environ if environ is None else environ
    return environ.get("POD_NAME") or environ.get("HOSTNAME") or socket.gethostname()


def _notebook_pod(api: Any, namespace: str) -> Dict[str, Any]:
    """The pod this notebook runs in: the workers' owner and default image."""
    from kubernetes.client.exceptions import ApiException

    name = own_pod_name()
    try:
        return api.read_namespaced_pod(name, namespace).to_dict()
    except ApiException as exc:
        raise KubernetesConfigError(
            f"cannot read this notebook's pod {name!r} in namespace {namespace!r}: "
            f"{exc.status} {exc.reason} (a hostNetwork pod must set POD_NAME from the "
            f"downward API; the service account needs get on pods)") from None


def default_address() -> str:
    """Where workers reach this process: the pod IP in a cluster, else the address this
    host's name resolves to (it must be reachable from the cluster's pods)."""
    return os.environ.get("POD_IP") or socket.gethostbyname(socket.gethostname())


def connect(config: Kubernetes) -> tuple:
    """(CoreV1Api, namespace, the notebook's pod or None).

    From the service account in a cluster, else from the kubeconfig.
    """
    import yaml
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    # One connection per API request in flight, plus the watch and a list.
    configuration.connection_pool_maxsize = config.create_parallelism + 2
    if in_cluster():
        kube_config.load_incluster_config(client_configuration=configuration)
        api = client.CoreV1Api(client.ApiClient(configuration))
        namespace = config.namespace or own_namespace() or "default"
        return api, namespace, _notebook_pod(api, own_namespace() or namespace)
    # KUBECONFIG as it is now: the client reads it once, when first imported.
    kubeconfig = config.kubeconfig or os.environ.get("KUBECONFIG") or None
    where = kubeconfig or kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    if not any(os.path.exists(os.path.expanduser(path)) for path in where.split(os.pathsep)):
        # The client would say "Invalid kube-config file", naming no file.
        raise KubernetesConfigError(
            f"no Kubernetes cluster to run on: no kubeconfig at {where} {NO_CLUSTER_HINT}")
    try:
        kube_config.load_kube_config(config_file=kubeconfig, context=config.context,
                                     client_configuration=configuration)
        contexts, active = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    except (kube_config.ConfigException, OSError) as exc:
        raise KubernetesConfigError(
            f"no Kubernetes cluster to run on: {exc} {NO_CLUSTER_HINT}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # YAML's messages span lines
        raise KubernetesConfigError(
            f"no Kubernetes cluster to run on: {where} is not valid YAML: {detail}") from None
    except TypeError as exc:  # YAML, but a list or a string where the client wants a mapping
        raise KubernetesConfigError(
            f"no Kubernetes cluster to run on: {where} is not a kubeconfig: {exc}") from None
    chosen = next((c for c in contexts if c["name"] == config.context), active)
    namespace = config.namespace or chosen["context"].get("namespace") or "default"
    _check_reachable(configuration, f"context {chosen['name']!r} of {where}")
    return client.CoreV1Api(client.ApiClient(configuration)), namespace, None


def _check_reachable(configuration: Any, source: str) -> None:
    """Fail now, naming the server, if the API server does not answer at all.

    Otherwise the first requests are those creating the pool's Secret and
    pods, and an unreachable server would surface only after the pool gave
    up on five workers. Any HTTP answer, even an error, means it is reachable.
    """
    import urllib3
    from kubernetes import client

    probing = copy.copy(configuration)
    probing.retries = False  # one attempt: urllib3 retries a timeout three more times
    api_client = client.ApiClient(probing)
    try:
        client.VersionApi(api_client).get_code(
            _request_timeout=(PROBE_CONNECT_TIMEOUT, PROBE_READ_TIMEOUT))
        return
    except urllib3.exceptions.HTTPError as exc:
        why = _innermost(exc)
    except client.exceptions.ApiException as exc:
        if exc.status:  # an HTTP answer, even an error: the server is there
            return
        why = " ".join(str(exc.reason).split())  # status 0: the client's wrapped TLS failure
    finally:
        api_client.close()
    raise KubernetesConfigError(
        f"cannot reach the Kubernetes API server at {configuration.host} ({source}): {why}")


def _innermost(exc: BaseException) -> str:
    """The root cause of a urllib3 error, e.g. "[Errno 111] Connection refused"."""
    while True:
        inner = getattr(exc, "reason", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            return str(exc)
        exc = inner
