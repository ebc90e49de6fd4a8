"""The pods and the Secret of a pool, as manifests (plain dicts, as the API takes them).

Names are RFC 1123 labels: lower case, digits and "-", at most 63 characters
(Fiber's pod names broke on this). Every object carries the labels that find
it again: the app, the pool (a random id per pool, so two pools never share
pods), the owning kernel (its host and process), the worker; annotations
name the pool and the master's address, for ``fiber-jupyter list``.

Workers get the pool's credentials from the Secret through an environment
variable reference, never as a plain value in the pod spec, and they do not
mount a service-account token: they never call the API.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import secrets
import socket
from typing import Any, Dict, List, Optional

APP_LABEL = "app.kubernetes.io/name"
APP = "fiber-jupyter"
POOL_LABEL = "fiber-jupyter/pool"
KERNEL_LABEL = "fiber-jupyter/kernel"
WORKER_LABEL = "fiber-jupyter/worker"
MASTER_ANNOTATION = "fiber-jupyter/master"
POOL_NAME_ANNOTATION = "fiber-jupyter/pool-name"
CREDENTIALS_VARIABLE = "FIBER_JUPYTER_CREDENTIALS"
CREDENTIALS_KEY = "token"
CONTAINER = "worker"
MAX_NAME = 63


def slug(text: str, limit: int) -> str:
    """``text`` as the start of an RFC 1123 label: "My Pool_1" -> "my-pool-1"."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:limit].rstrip("-") or "pool"


def pool_id(pool_name: str) -> str:
    """A pool's label value and name stem: its name, made valid, plus random characters."""
    return f"{slug(pool_name, 40)}-{secrets.token_hex(3)}"


def pod_name(pool: str, worker_id: str) -> str:
    return f"fiber-{pool}-{slug(worker_id, 12)}"[:MAX_NAME].rstrip("-")


def secret_name(pool: str) -> str:
    return f"fiber-{pool}-credentials"[:MAX_NAME].rstrip("-")


def kernel_id() -> str:
    """This kernel as a label value: "jupyter-ada-4711" (its host, or pod, and process)."""
    return slug(f"{socket.gethostname()}-{os.getpid()}", MAX_NAME)


def pool_selector(pool: str) -> str:
    return f"{APP_LABEL}={APP},{POOL_LABEL}={pool}"


def _metadata(pool: str, pool_name: str, master: str,
              owner: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {
        "labels": {APP_LABEL: APP, POOL_LABEL: pool, KERNEL_LABEL: kernel_id()},
        "annotations": {MASTER_ANNOTATION: master, POOL_NAME_ANNOTATION: pool_name},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return metadata


def secret_manifest(pool: str, pool_name: str, master: str, token: str,
                    owner: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    metadata = _metadata(pool, pool_name, master, owner)
    metadata["name"] = secret_name(pool)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": {CREDENTIALS_KEY: base64.b64encode(token.encode()).decode()}}


def resources(cpu: Optional[str], memory: Optional[str], gpu: Optional[int]) -> Dict[str, Any]:
    """Requests equal to limits: a worker gets what it asked for, no more."""
    amounts: Dict[str, str] = {}
    if cpu:
        amounts["cpu"] = str(cpu)
    if memory:
        amounts["memory"] = str(memory)
    if gpu:
        amounts["nvidia.com/gpu"] = str(gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def worker_arguments(address: str, worker_id: str, heartbeat_interval: float,
                     master_timeout: float) -> List[str]:
    return ["--address", address, "--worker-id", worker_id,
            "--heartbeat-interval", repr(heartbeat_interval),
            "--secret-from", f"env:{CREDENTIALS_VARIABLE}",
            "--master-timeout", repr(master_timeout)]


def pod_manifest(*, pool: str, pool_name: str, worker_id: str, address: str, image: str,
                 heartbeat_interval: float, master_timeout: float,
                 owner: Optional[Dict[str, Any]], resource_amounts: Dict[str, Any],
                 service_account: Optional[str], node_selector: Dict[str, str],
                 tolerations: tuple, template: Dict[str, Any]) -> Dict[str, Any]:
    """One worker's pod: ``restartPolicy: Never``, since the pool replaces lost workers."""
    metadata = _metadata(pool, pool_name, address, owner)
    metadata["name"] = pod_name(pool, worker_id)
    metadata["labels"][WORKER_LABEL] = slug(worker_id, 63)
    container: Dict[str, Any] = {
        "name": CONTAINER, "image": image,
        "command": ["python", "-m", "fiber_jupyter.worker"],
        "args": worker_arguments(address, worker_id, heartbeat_interval, master_timeout),
        "env": [
            {"name": CREDENTIALS_VARIABLE, "valueFrom": {"secretKeyRef": {
                "name": secret_name(pool), "key": CREDENTIALS_KEY}}},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
    }
    if resource_amounts:
        container["resources"] = resource_amounts
    spec: Dict[str, Any] = {"restartPolicy": "Never", "containers": [container],
                            "automountServiceAccountToken": bool(service_account)}
    if service_account:
        spec["serviceAccountName"] = service_account
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    return merge(manifest, template)


def merge(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    """``override`` over ``base``: dicts merge key by key, anything else is replaced.

    The worker container is matched by name, so a template can add to it
    (``{"spec": {"containers": [{"name": "worker", "volumeMounts": [...]}]}}``).
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif key == "containers" and isinstance(value, list):
            merged[key] = _merge_containers(merged.get(key, []), value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_containers(base: List[Dict[str, Any]],
                      override: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    overrides = {container.get("name"): container for container in override}
    base_names = {container.get("name") for container in base}
    merged = [merge(c, overrides[c.get("name")]) if c.get("name") in overrides else c
              for c in base]
    return merged + [copy.deepcopy(c) for c in override if c.get("name") not in base_names]


def owner_reference(pod: Dict[str, Any], namespace: str) -> Optional[Dict[str, Any]]:
    """An owner reference to the notebook's pod, so its workers go when it goes; None
    for workers in another namespace, where the garbage collector would take the
    owner for gone and delete them at once."""
    if pod["metadata"].get("namespace", namespace) != namespace:
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"], "blockOwnerDeletion": False}
