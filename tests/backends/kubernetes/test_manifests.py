"""Specification of the pods and Secret a Kubernetes pool creates (manifests.py)."""

import base64
import os
import re

from kubernetes.client import V1Pod, V1Secret

from fiber_jupyter.backends.kubernetes import manifests

RFC_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def pod(**overrides):
    options = dict(pool="es-1a2b3c", pool_name="es", worker_id="w17",
                   address="tcp://10.0.0.5:40123", image="registry/fiber-worker:1",
                   heartbeat_interval=5.0, master_timeout=120.0, owner=None,
                   resource_amounts=manifests.resources("1", "2Gi", None),
                   service_account=None, node_selector={}, tolerations=(), template={})
    options.update(overrides)
    return manifests.pod_manifest(**options)


def test_names_are_rfc_1123_labels_whatever_the_pool_is_called():
    for name in ("My Pool_1", "x" * 100, "---", "ES.population"):
        pool = manifests.pool_id(name)
        for object_name in (manifests.pod_name(pool, "w12345"), manifests.secret_name(pool)):
            assert RFC_1123_LABEL.match(object_name), object_name
    assert manifests.pool_id("My Pool_1").startswith("my-pool-1-")
    assert manifests.pool_id("es") != manifests.pool_id("es")


def test_a_worker_pod_runs_the_worker_with_credentials_from_the_pools_secret():
    manifest = pod()
    V1Pod.from_dict(manifest)  # the client's own model accepts it
    container = manifest["spec"]["containers"][0]
    assert manifest["spec"]["restartPolicy"] == "Never"
    assert container["command"] == ["python", "-m", "fiber_jupyter.worker"]
    assert container["args"] == ["--address", "tcp://10.0.0.5:40123", "--worker-id", "w17",
                                 "--heartbeat-interval", "5.0", "--secret-from",
                                 "env:FIBER_JUPYTER_CREDENTIALS", "--master-timeout", "120.0"]
    [credentials] = [e for e in container["env"] if e["name"] == "FIBER_JUPYTER_CREDENTIALS"]
    assert credentials == {"name": "FIBER_JUPYTER_CREDENTIALS", "valueFrom": {"secretKeyRef": {
        "name": "fiber-es-1a2b3c-credentials", "key": "token"}}}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}
    assert manifest["spec"]["automountServiceAccountToken"] is False


def test_pods_carry_the_labels_that_find_them_and_the_masters_address():
    metadata = pod()["metadata"]
    kernel = metadata["labels"].pop("fiber-jupyter/kernel")
    assert metadata["labels"] == {"app.kubernetes.io/name": "fiber-jupyter",
                                  "fiber-jupyter/pool": "es-1a2b3c", "fiber-jupyter/worker": "w17"}
    assert RFC_1123_LABEL.match(kernel) and kernel.endswith(f"-{os.getpid()}")
    assert metadata["annotations"]["fiber-jupyter/master"] == "tcp://10.0.0.5:40123"
    assert manifests.pool_selector("es-1a2b3c") == (
        "app.kubernetes.io/name=fiber-jupyter,fiber-jupyter/pool=es-1a2b3c")


def test_in_a_cluster_workers_are_owned_by_the_notebook_pod():
    notebook = {"metadata": {"name": "jupyter-ada", "uid": "1234-abcd", "namespace": "lab"}}
    owner = manifests.owner_reference(notebook, "lab")
    assert pod(owner=owner)["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "jupyter-ada", "uid": "1234-abcd",
         "blockOwnerDeletion": False}]


def test_workers_in_another_namespace_than_the_notebook_have_no_owner():
    """An owner in another namespace counts as gone: the collector would delete them."""
    notebook = {"metadata": {"name": "jupyter-ada", "uid": "1234-abcd", "namespace": "lab"}}
    assert manifests.owner_reference(notebook, "batch") is None


def test_gpus_service_account_node_selector_and_tolerations_reach_the_spec():
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    spec = pod(resource_amounts=manifests.resources(None, None, 2), service_account="fiber",
               node_selector={"pool": "gpu"}, tolerations=(toleration,))["spec"]
    assert spec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert (spec["serviceAccountName"], spec["automountServiceAccountToken"]) == ("fiber", True)
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [toleration]


def test_a_pod_template_is_merged_over_the_generated_pod():
    template = {"metadata": {"labels": {"team": "rl"}},
                "spec": {"priorityClassName": "batch",
                         "containers": [{"name": "worker", "volumeMounts": [{"name": "data",
                                                                             "mountPath": "/d"}]},
                                        {"name": "sidecar", "image": "busybox"}]}}
    merged = pod(template=template)
    assert merged["metadata"]["labels"]["team"] == "rl"
    assert merged["metadata"]["labels"]["fiber-jupyter/pool"] == "es-1a2b3c"
    assert merged["spec"]["priorityClassName"] == "batch"
    worker, sidecar = merged["spec"]["containers"]
    assert worker["image"] == "registry/fiber-worker:1" and worker["volumeMounts"]
    assert sidecar == {"name": "sidecar", "image": "busybox"}


def test_the_secret_holds_the_token_base64_encoded_and_nothing_else():
    secret = manifests.secret_manifest("es-1a2b3c", "es", "tcp://10.0.0.5:1", "curve:KEYS", None)
    V1Secret.from_dict(secret)
    assert secret["metadata"]["name"] == "fiber-es-1a2b3c-credentials"
    assert secret["data"] == {"token": base64.b64encode(b"curve:KEYS").decode()}
