"""The fake cluster's specification, written with the official ``kubernetes`` client.

Each test pins one behaviour of the real API or kubelet that a backend relies
on (or trips over), so that tests of the backend against this stand-in mean
something. Synchronisation is always on real conditions: watch events, the
server's store (woken on every write), or a polled process state, each with
a deadline.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import psutil
import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from ..conftest import wait_for
from .conftest import FakeCluster

NS = "fiber-test"
SLEEP = ["python", "-c", "import time; time.sleep(60)"]
IDLE = {"schedulerName": "manual"}  # no scheduler takes these: the kubelet leaves them alone


def pod_body(name: str, command: Optional[List[str]] = None, *,
             labels: Optional[Dict[str, str]] = None, image: str = "python:3.11-slim",
             env: Optional[List[Dict[str, Any]]] = None, **spec: Any) -> Dict[str, Any]:
    """A one-container pod manifest, ``restartPolicy: Never`` unless ``spec`` says otherwise."""
    container: Dict[str, Any] = {"name": "main", "image": image, "command": command or SLEEP}
    if env:
        container["env"] = env
    if "resources" in spec:
        container["resources"] = spec.pop("resources")
    meta: Dict[str, Any] = {"labels": labels or {}}
    meta["generateName" if name.endswith("-") else "name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"restartPolicy": "Never", "containers": [container], **spec}}


def create(cluster: FakeCluster, name: str, command: Optional[List[str]] = None,
           **kwargs: Any) -> client.V1Pod:
    return cluster.core.create_namespaced_pod(NS, pod_body(name, command, **kwargs))


def error_body(exc: ApiException) -> Dict[str, Any]:
    return json.loads(exc.body)


def events_until(cluster: FakeCluster, name: str, done: Callable[[Dict[str, Any]], bool],
                 start: Callable[[], Any] = lambda: None, timeout: int = 15,
                 **params: Any) -> List[Dict[str, Any]]:
    """Watch one pod from the current resourceVersion; run ``start``; stop at ``done``."""
    version = cluster.core.list_namespaced_pod(NS).metadata.resource_version
    start()
    seen: List[Dict[str, Any]] = []
    stream = watch.Watch()
    for event in stream.stream(cluster.core.list_namespaced_pod, NS, resource_version=version,
                               field_selector=f"metadata.name={name}", timeout_seconds=timeout,
                               **params):
        seen.append(event)
        if done(event):
            stream.stop()
            return seen
    pytest.fail(f"watch of {name} ended before the expected event; saw "
                f"{[(e['type'], phase(e)) for e in seen]}")


def phase(event: Dict[str, Any]) -> Optional[str]:
    obj = event["raw_object"]
    return (obj.get("status") or {}).get("phase")


def terminal(event: Dict[str, Any]) -> bool:
    return phase(event) in ("Succeeded", "Failed")


def container_state(pod: Dict[str, Any]) -> Dict[str, Any]:
    statuses = pod["status"].get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def waiting_reason(pod: Dict[str, Any]) -> Optional[str]:
    return (container_state(pod).get("waiting") or {}).get("reason")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_pid(cluster: FakeCluster, name: str) -> int:
    cluster.wait_for_phase(name, "Running")
    pid = cluster.kubelet.pid(name)
    assert pid is not None
    return pid


# --- objects: create, get, list ---------------------------------------------------------------

def test_create_fills_server_fields(fake_cluster: FakeCluster) -> None:
    first = create(fake_cluster, "fiber-w-", **IDLE)
    second = create(fake_cluster, "named", **IDLE)
    assert first.metadata.name.startswith("fiber-w-") and len(first.metadata.name) == 13
    assert first.metadata.namespace == NS and first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.status.phase == "Pending" and first.status.qos_class == "BestEffort"
    assert first.spec.termination_grace_period_seconds == 30
    got = fake_cluster.core.read_namespaced_pod("named", NS)
    assert got.metadata.uid == second.metadata.uid


def test_list_label_and_field_selectors(fake_cluster: FakeCluster) -> None:
    for name, labels in (("a", {"app": "fiber", "tier": "w"}), ("b", {"app": "fiber"}),
                         ("c", {"app": "other", "tier": "w"})):
        create(fake_cluster, name, labels=labels, **IDLE)

    def names(**params: Any) -> List[str]:
        listed = fake_cluster.core.list_namespaced_pod(NS, **params)
        assert int(listed.metadata.resource_version) >= max(
            [int(p.metadata.resource_version) for p in listed.items], default=0)
        return [p.metadata.name for p in listed.items]

    assert names(label_selector="app=fiber") == ["a", "b"]
    assert names(label_selector="app==other") == ["c"]
    assert names(label_selector="app!=fiber") == ["c"]
    assert names(label_selector="app in (other, nope)") == ["c"]
    assert names(label_selector="app notin (fiber)") == ["c"]
    assert names(label_selector="tier") == ["a", "c"]
    assert names(label_selector="!tier") == ["b"]
    assert names(label_selector="app=fiber,tier") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="spec.nodeName=") == ["a", "b", "c"]
    all_namespaces = fake_cluster.core.list_pod_for_all_namespaces(label_selector="app")
    assert len(all_namespaces.items) == 3


def test_errors_are_status_objects_with_real_reasons(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "dup", **IDLE)
    with pytest.raises(ApiException) as conflict:
        create(fake_cluster, "dup")
    assert conflict.value.status == 409
    assert error_body(conflict.value)["reason"] == "AlreadyExists"
    assert error_body(conflict.value)["message"] == 'pods "dup" already exists'

    with pytest.raises(ApiException) as missing:
        fake_cluster.core.read_namespaced_pod("nope", NS)
    assert missing.value.status == 404
    assert error_body(missing.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"}, "code": 404}

    with pytest.raises(ApiException) as bad_name:
        create(fake_cluster, "Fiber_Worker")
    body = error_body(bad_name.value)
    assert bad_name.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123" in body["message"]

    with pytest.raises(ApiException) as bad_selector:
        fake_cluster.core.list_namespaced_pod(NS, label_selector="app in ()")
    assert bad_selector.value.status == 400


# --- patches and updates ----------------------------------------------------------------------

def test_patch_kinds_and_status_separation(fake_cluster: FakeCluster) -> None:
    pod = create(fake_cluster, "p", labels={"a": "1", "b": "2"}, **IDLE)
    core = fake_cluster.core
    merged = core.patch_namespaced_pod("p", NS, {"metadata": {"labels": {"b": None, "c": "3"}}})
    assert merged.metadata.labels == {"a": "1", "c": "3"}
    patched = core.patch_namespaced_pod("p", NS, [
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}}])
    assert patched.metadata.annotations == {"note": "x"}
    ignored = core.patch_namespaced_pod("p", NS, {"status": {"phase": "Running"}})
    assert ignored.status.phase == "Pending"  # status goes through pods/status only
    status = core.patch_namespaced_pod_status("p", NS, {
        "metadata": {"labels": {"sneaky": "yes"}},
        "status": {"conditions": [{"type": "Example", "status": "True"}]}})
    assert "sneaky" not in status.metadata.labels  # and pods/status changes only status
    assert [c.type for c in status.status.conditions] == ["Example"]
    assert int(status.metadata.resource_version) > int(pod.metadata.resource_version)
    with pytest.raises(ApiException) as spec_change:
        core.patch_namespaced_pod("p", NS, {"spec": {"restartPolicy": "Always"}})
    assert spec_change.value.status == 422
    assert "pod updates may not change fields" in error_body(spec_change.value)["message"]
    with pytest.raises(ApiException) as stale:
        core.patch_namespaced_pod("p", NS, {"metadata": {
            "resourceVersion": pod.metadata.resource_version, "labels": {"d": "4"}}})
    assert stale.value.status == 409 and error_body(stale.value)["reason"] == "Conflict"


def test_writes_are_validated_against_the_client_models(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "strict", **IDLE)
    version = fake_cluster.api.resource_version
    incomplete = {"status": {"containerStatuses": [{"name": "main", "ready": False}]}}
    with pytest.raises(ApiException) as rejected:
        fake_cluster.core.patch_namespaced_pod_status("strict", NS, incomplete)
    assert rejected.value.status == 400
    assert "cannot be handled as a Pod" in error_body(rejected.value)["message"]
    assert fake_cluster.api.resource_version == version


def test_replace_needs_the_current_resource_version(fake_cluster: FakeCluster) -> None:
    pod = create(fake_cluster, "r", **IDLE)
    fake_cluster.core.patch_namespaced_pod("r", NS, {"metadata": {"labels": {"x": "1"}}})
    body = fake_cluster.api_client.sanitize_for_serialization(pod)
    with pytest.raises(ApiException) as stale:
        fake_cluster.core.replace_namespaced_pod("r", NS, body)
    assert stale.value.status == 409
    del body["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as unversioned:
        fake_cluster.core.replace_namespaced_pod("r", NS, body)
    assert unversioned.value.status == 422


def test_secret_data_is_base64(fake_cluster: FakeCluster) -> None:
    fake_cluster.core.create_namespaced_secret(NS, {"metadata": {"name": "s", "labels": {
        "app": "fiber"}}, "stringData": {"token": "abc"}})
    secret = fake_cluster.core.read_namespaced_secret("s", NS)
    assert secret.data == {"token": base64.b64encode(b"abc").decode()}
    assert secret.string_data is None and secret.type == "Opaque"
    listed = fake_cluster.core.list_namespaced_secret(NS, label_selector="app=fiber")
    assert [s.metadata.name for s in listed.items] == ["s"]
    with pytest.raises(ApiException) as bad:
        fake_cluster.core.create_namespaced_secret(NS, {"metadata": {"name": "b"},
                                                        "data": {"token": "not base64!"}})
    assert bad.value.status == 422
    fake_cluster.core.delete_namespaced_secret("s", NS)
    assert fake_cluster.api.get_object("secrets", NS, "s") is None


def test_unchanged_patch_writes_nothing(fake_cluster: FakeCluster) -> None:
    pod = create(fake_cluster, "same", labels={"a": "1"}, **IDLE)
    version = fake_cluster.api.resource_version
    again = fake_cluster.core.patch_namespaced_pod("same", NS, {"metadata": {"labels": {"a": "1"}}})
    assert again.metadata.resource_version == pod.metadata.resource_version
    assert fake_cluster.api.resource_version == version


# --- the pod lifecycle, seen through a watch --------------------------------------------------

@pytest.mark.parametrize("code, want_phase, want_reason", [
    (0, "Succeeded", "Completed"), (3, "Failed", "Error")])
def test_watch_sees_pending_running_and_exit_code(fake_cluster: FakeCluster, code: int,
                                                  want_phase: str, want_reason: str) -> None:
    command = ["python", "-c", f"import sys; sys.exit({code})"]
    events = events_until(fake_cluster, "job", terminal,
                          start=lambda: create(fake_cluster, "job", command))
    assert events[0]["type"] == "ADDED" and phase(events[0]) == "Pending"
    assert all(e["type"] == "MODIFIED" for e in events[1:])
    phases = [phase(e) for e in events]
    assert phases.index("Running") < len(phases) - 1 and phases[-1] == want_phase
    assert events[1]["object"].spec.node_name == "fake-node"
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(set(versions))
    terminated = events[-1]["object"].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (code, want_reason)
    assert events[-1]["object"].status.pod_ip == "127.0.0.1"


def test_killed_process_is_failed_137(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "crash")
    os.kill(running_pid(fake_cluster, "crash"), signal.SIGKILL)
    pod = fake_cluster.wait_for_phase("crash", "Failed")
    assert container_state(pod)["terminated"]["exitCode"] == 137
    assert container_state(pod)["terminated"]["reason"] == "Error"


def test_command_that_cannot_start(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "nobin", ["/nonexistent/fiber-worker"])
    pod = fake_cluster.wait_for_phase("nobin", "Failed")
    terminated = container_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "ContainerCannotRun")
    assert "/nonexistent/fiber-worker" in terminated["message"]


def test_graceful_delete_terminates_then_deletes(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "w")
    pid = running_pid(fake_cluster, "w")
    events = events_until(
        fake_cluster, "w", lambda e: e["type"] == "DELETED",
        start=lambda: fake_cluster.core.delete_namespaced_pod("w", NS, grace_period_seconds=20))
    first = events[0]["object"]
    assert events[0]["type"] == "MODIFIED" and first.metadata.deletion_timestamp is not None
    assert first.metadata.deletion_grace_period_seconds == 20
    assert phase(events[-2]) == "Failed"  # SIGTERM'd: the kubelet reports the exit first
    assert container_state(events[-2]["raw_object"])["terminated"]["exitCode"] == 143
    wait_for(lambda: not alive(pid), what="the pod's process to be gone")
    with pytest.raises(ApiException) as gone:
        fake_cluster.core.read_namespaced_pod("w", NS)
    assert gone.value.status == 404


def test_grace_period_ends_with_sigkill(fake_cluster: FakeCluster) -> None:
    stubborn = ["python", "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"]
    create(fake_cluster, "stubborn", stubborn)
    running_pid(fake_cluster, "stubborn")
    wait_for(lambda: "ready" in fake_cluster.kubelet.read_log("stubborn"), what="SIGTERM ignored")
    began = time.monotonic()
    events = events_until(
        fake_cluster, "stubborn", lambda e: e["type"] == "DELETED",
        start=lambda: fake_cluster.core.delete_namespaced_pod("stubborn", NS,
                                                              body={"gracePeriodSeconds": 1}))
    assert time.monotonic() - began >= 1
    assert container_state(events[-2]["raw_object"])["terminated"]["exitCode"] == 137


def test_unbound_pod_is_deleted_at_once(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "idle", **IDLE)
    events = events_until(fake_cluster, "idle", lambda e: e["type"] == "DELETED",
                          start=lambda: fake_cluster.core.delete_namespaced_pod("idle", NS))
    assert [e["type"] for e in events] == ["DELETED"]


def test_restart_policy_always_restarts(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "loop", ["python", "-c", "raise SystemExit(1)"],
           restartPolicy="Always")
    pod = fake_cluster.wait_for_pod(
        "loop", lambda p: (p["status"].get("containerStatuses") or [{}])[0]
        .get("restartCount", 0) >= 1, what="a restart")
    assert pod["status"]["phase"] == "Running"
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1


# --- watch protocol ---------------------------------------------------------------------------

def test_watch_resumes_from_resource_version(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "old", **IDLE)
    version = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    create(fake_cluster, "new", **IDLE)
    fake_cluster.core.patch_namespaced_pod("old", NS, {"metadata": {"labels": {"x": "y"}}})
    stream = watch.Watch()
    seen = []
    for event in stream.stream(fake_cluster.core.list_namespaced_pod, NS,
                               resource_version=version, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            stream.stop()
    assert seen == [("ADDED", "new"), ("MODIFIED", "old")]


def test_watch_from_compacted_version_is_410_then_relist_works(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "a", **IDLE)
    old = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    create(fake_cluster, "b", **IDLE)
    fake_cluster.api.compact()
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(fake_cluster.core.list_namespaced_pod, NS,
                                      resource_version=old, timeout_seconds=5):
            pass
    assert gone.value.status == 410 and "Expired" in gone.value.reason
    fresh = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    events = events_until(fake_cluster, "c", lambda e: e["type"] == "ADDED",
                          start=lambda: create(fake_cluster, "c", **IDLE))
    assert int(events[0]["object"].metadata.resource_version) > int(fresh)


def test_expire_next_watch_hook(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.expire_next_watch()
    version = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(fake_cluster.core.list_namespaced_pod, NS,
                                      resource_version=version, timeout_seconds=5):
            pass
    assert gone.value.status == 410


def test_server_side_timeout_and_final_bookmark(fake_cluster: FakeCluster) -> None:
    began = time.monotonic()
    events = list(watch.Watch().stream(fake_cluster.core.list_namespaced_pod, NS,
                                       timeout_seconds=1, allow_watch_bookmarks=True))
    assert 0.9 <= time.monotonic() - began < 3
    assert [e["type"] for e in events] == ["BOOKMARK"]
    # The client leaves BOOKMARK objects as dicts: a watch loop must not read .metadata.
    assert isinstance(events[0]["object"], dict)
    assert events[0]["object"]["metadata"]["resourceVersion"]


def test_watch_label_selector_sees_objects_leave(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "m", labels={"app": "fiber"}, **IDLE)
    version = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    fake_cluster.core.patch_namespaced_pod("m", NS, {"metadata": {"labels": {"app": "x"}}})
    stream = watch.Watch()
    for event in stream.stream(fake_cluster.core.list_namespaced_pod, NS,
                               label_selector="app=fiber", resource_version=version,
                               timeout_seconds=5):
        assert (event["type"], event["object"].metadata.labels) == ("DELETED", {"app": "x"})
        stream.stop()
        break
    else:
        pytest.fail("no event: a pod leaving the selection must be DELETED for the watcher")


# --- environment and secrets ------------------------------------------------------------------

PRINT_ENV = ["python", "-c", "import os, sys; print(' '.join(os.environ.get(k, '-') for k in "
             "sys.argv[1:]), flush=True)", "TOKEN", "PLAIN", "POD_IP", "POD_NAME", "POD_NS",
             "HOSTNAME", "EXPANDED"]


def test_secret_and_downward_api_env_reach_the_process(fake_cluster: FakeCluster) -> None:
    fake_cluster.core.create_namespaced_secret(NS, {"metadata": {"name": "creds"}, "data": {
        "token": base64.b64encode(b"s3cret-value").decode()}})
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
           {"name": "PLAIN", "value": "plain"},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "EXPANDED", "value": "$(PLAIN)-x"}]
    create(fake_cluster, "envy", PRINT_ENV, env=env)
    fake_cluster.wait_for_phase("envy", "Succeeded")
    expected = "s3cret-value plain 127.0.0.1 envy fiber-test envy plain-x\n"
    assert fake_cluster.kubelet.read_log("envy") == expected
    assert fake_cluster.core.read_namespaced_pod_log("envy", NS) == expected


def test_missing_secret_waits_with_config_error(fake_cluster: FakeCluster) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    create(fake_cluster, "waits", PRINT_ENV, env=env)
    pod = fake_cluster.wait_for_pod(
        "waits", lambda p: waiting_reason(p) == "CreateContainerConfigError")
    assert pod["status"]["phase"] == "Pending"
    assert container_state(pod)["waiting"]["message"] == 'secret "later" not found'
    fake_cluster.core.create_namespaced_secret(NS, {"metadata": {"name": "later"},
                                                    "stringData": {"other": "x"}})
    pod = fake_cluster.wait_for_pod("waits", lambda p: "couldn't find key" in str(
        container_state(p).get("waiting", {}).get("message")))
    assert container_state(pod)["waiting"]["message"] == \
        "couldn't find key token in Secret fiber-test/later"
    fake_cluster.core.patch_namespaced_secret("later", NS, {"stringData": {"token": "t"}})
    fake_cluster.wait_for_phase("waits", "Succeeded")  # the kubelet retries, as the real one


# --- scheduling and the node ------------------------------------------------------------------

def scheduled_condition(pod: Dict[str, Any]) -> Dict[str, Any]:
    return next((c for c in pod["status"].get("conditions") or []
                 if c["type"] == "PodScheduled"), {})


def test_unschedulable_on_capacity_until_it_frees(fake_cluster: FakeCluster) -> None:
    fake_cluster.kubelet.set_capacity({"cpu": "1", "memory": "1Gi"})
    one_cpu = {"requests": {"cpu": "1", "memory": "100Mi"}}
    create(fake_cluster, "first", resources=one_cpu)
    fake_cluster.wait_for_phase("first", "Running")
    create(fake_cluster, "second", resources=one_cpu)
    pod = fake_cluster.wait_for_pod("second", lambda p: scheduled_condition(p).get("reason")
                                    == "Unschedulable")
    assert scheduled_condition(pod)["status"] == "False"
    assert scheduled_condition(pod)["message"].startswith(
        "0/1 nodes are available: 1 Insufficient cpu.")
    assert not pod["spec"].get("nodeName") and pod["status"]["phase"] == "Pending"
    fake_cluster.core.delete_namespaced_pod("first", NS, grace_period_seconds=0)
    fake_cluster.wait_for_phase("second", "Running")


def test_unschedulable_gpu_and_memory_reported_together(fake_cluster: FakeCluster) -> None:
    big = {"limits": {"nvidia.com/gpu": "1", "memory": "64Gi"}}
    create(fake_cluster, "big", resources=big)
    pod = fake_cluster.wait_for_pod("big", lambda p: scheduled_condition(p).get("message"))
    assert scheduled_condition(pod)["message"].startswith(
        "0/1 nodes are available: 1 Insufficient memory, 1 Insufficient nvidia.com/gpu.")
    fake_cluster.kubelet.set_capacity({"nvidia.com/gpu": 1, "memory": "128Gi"})
    fake_cluster.wait_for_phase("big", "Running")


def test_unschedulable_on_node_selector(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "picky", nodeSelector={"fiber/pool": "gpu"})
    pod = fake_cluster.wait_for_pod("picky", lambda p: scheduled_condition(p).get("message"))
    assert "didn't match Pod's node affinity/selector" in scheduled_condition(pod)["message"]
    fake_cluster.kubelet.set_node_labels({"fiber/pool": "gpu"})
    fake_cluster.wait_for_phase("picky", "Running")


def test_image_pull_failure(fake_cluster: FakeCluster) -> None:
    reasons = [waiting_reason(e["raw_object"]) for e in events_until(
        fake_cluster, "noimage", lambda e: waiting_reason(e["raw_object"]) == "ImagePullBackOff",
        start=lambda: create(fake_cluster, "noimage", image="registry.example/does-not-exist:1"))]
    assert "ErrImagePull" in reasons
    pod = fake_cluster.pod("noimage")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert pod["spec"]["nodeName"] == "fake-node"
    fake_cluster.kubelet.set_unpullable(["python:3.11-slim"])
    create(fake_cluster, "configured")
    fake_cluster.wait_for_pod("configured", lambda p: waiting_reason(p) in (
        "ErrImagePull", "ImagePullBackOff"))


def test_oom_kill(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "hungry")
    running_pid(fake_cluster, "hungry")
    fake_cluster.kubelet.oom("hungry")
    pod = fake_cluster.wait_for_phase("hungry", "Failed")
    terminated = container_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_eviction(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "evictee")
    pid = running_pid(fake_cluster, "evictee")
    fake_cluster.kubelet.evict("evictee")
    pod = fake_cluster.wait_for_phase("evictee", "Failed")
    assert pod["status"]["reason"] == "Evicted"
    assert pod["status"]["message"].startswith("The node was low on resource: memory.")
    assert any(c["type"] == "DisruptionTarget" for c in pod["status"]["conditions"])
    wait_for(lambda: not alive(pid), what="the evicted process to be gone")


# --- fault hooks ------------------------------------------------------------------------------

def test_quota_refusal_stores_nothing(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.fail_next("create", "pods", code=403)
    with pytest.raises(ApiException) as refused:
        create(fake_cluster, "q")
    body = error_body(refused.value)
    assert refused.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"].startswith('pods "q" is forbidden: exceeded quota')
    assert fake_cluster.pod("q") is None
    assert create(fake_cluster, "q").metadata.name == "q"


def test_throttling_surfaces_on_writes(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.fail_next("create", "pods", code=429, retry_after=2)
    with pytest.raises(ApiException) as throttled:
        create(fake_cluster, "t", **IDLE)
    assert throttled.value.status == 429 and throttled.value.headers["Retry-After"] == "2"
    assert error_body(throttled.value)["reason"] == "TooManyRequests"
    assert error_body(throttled.value)["details"]["retryAfterSeconds"] == 2
    assert fake_cluster.pod("t") is None


def test_throttled_reads_are_retried_inside_the_client(fake_cluster: FakeCluster) -> None:
    """urllib3's default Retry obeys Retry-After on 429/503 for GET: the caller never sees
    the 429, only the delay (so a backend's own retry loop does not run for reads)."""
    fake_cluster.api.fail_next("list", "pods", code=429, retry_after=1)
    began = time.monotonic()
    assert fake_cluster.core.list_namespaced_pod(NS).items == []
    assert time.monotonic() - began >= 1
    assert fake_cluster.api.count("list", "pods") == 2


def test_server_errors(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.fail_next("get", "*", count=2, code=500)
    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            fake_cluster.core.read_namespaced_secret("any", NS)
        assert failed.value.status == 500
        assert error_body(failed.value)["reason"] == "InternalError"
    with pytest.raises(ApiException) as missing:
        fake_cluster.core.read_namespaced_secret("any", NS)
    assert missing.value.status == 404


def test_served_faults_are_counted(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.fail_next("create", "pods", count=2, code=503)
    for _ in range(2):
        with pytest.raises(ApiException):
            create(fake_cluster, "s", **IDLE)
    create(fake_cluster, "s", **IDLE)
    assert fake_cluster.api.faults_served("create", "pods", 503) == 2
    assert fake_cluster.api.faults_served(code=500) == 0


def test_delete_object_bypasses_faults_and_counters(fake_cluster: FakeCluster) -> None:
    create(fake_cluster, "gone", **IDLE)
    fake_cluster.api.fail_next("delete", "pods", code=500)
    fake_cluster.api.reset_counts()
    assert fake_cluster.api.delete_object("pods", NS, "gone")
    assert fake_cluster.pod("gone") is None and fake_cluster.api.count() == 0
    assert not fake_cluster.api.delete_object("pods", NS, "gone")
    with pytest.raises(ApiException) as injected:  # still waiting for the code under test
        fake_cluster.core.delete_namespaced_pod("gone", NS)
    assert injected.value.status == 500


def test_delay_hook(fake_cluster: FakeCluster) -> None:
    fake_cluster.api.set_delay(0.3, "list", "pods")
    began = time.monotonic()
    fake_cluster.core.list_namespaced_pod(NS)
    assert time.monotonic() - began >= 0.3
    fake_cluster.api.set_delay(0, "list", "pods")
    began = time.monotonic()
    fake_cluster.core.list_namespaced_pod(NS)
    assert time.monotonic() - began < 0.3


class BackgroundWatch:
    """A watch consumed by a thread: its events, then any exception, then "end", queued."""

    def __init__(self, cluster: FakeCluster, **params: Any) -> None:
        self.events: "queue.Queue[Any]" = queue.Queue()
        self.stream = watch.Watch()
        self.thread = threading.Thread(target=self._run, args=(cluster, params), daemon=True)
        self.thread.start()

    def _run(self, cluster: FakeCluster, params: Dict[str, Any]) -> None:
        try:
            for event in self.stream.stream(cluster.core.list_namespaced_pod, NS, **params):
                self.events.put((event["type"], event["object"].metadata.name))
        except Exception as exc:  # handed to the test
            self.events.put(exc)
        self.events.put("end")

    def next(self) -> Any:
        return self.events.get(timeout=5)


def test_dropped_watch_abruptly_raises_in_the_client(fake_cluster: FakeCluster) -> None:
    background = BackgroundWatch(fake_cluster, timeout_seconds=30)
    fake_cluster.wait_for(lambda: fake_cluster.api.open_watches() == 1)
    assert fake_cluster.api.drop_watches() == 1
    assert isinstance(background.next(), urllib3.exceptions.ProtocolError)
    assert background.next() == "end"


def test_cleanly_dropped_watch_is_resumed_by_the_client(fake_cluster: FakeCluster) -> None:
    version = fake_cluster.core.list_namespaced_pod(NS).metadata.resource_version
    background = BackgroundWatch(fake_cluster, resource_version=version)
    fake_cluster.wait_for(lambda: fake_cluster.api.open_watches() == 1)
    create(fake_cluster, "before", **IDLE)
    assert background.next() == ("ADDED", "before")
    assert fake_cluster.api.drop_watches(abrupt=False) == 1
    fake_cluster.wait_for(lambda: fake_cluster.api.count("watch", "pods") == 2 and
                          fake_cluster.api.open_watches() == 1, what="the client to re-watch")
    create(fake_cluster, "after", **IDLE)
    assert background.next() == ("ADDED", "after")  # resumed from its resourceVersion
    background.stream.stop()
    fake_cluster.api.drop_watches(abrupt=False)
    background.thread.join(timeout=5)
    assert not background.thread.is_alive()


# --- collections, garbage collection, counters ------------------------------------------------

def test_deletecollection_by_label(fake_cluster: FakeCluster) -> None:
    for name, pool in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        create(fake_cluster, name, labels={"pool": pool}, **IDLE)
        fake_cluster.core.create_namespaced_secret(
            NS, {"metadata": {"name": f"s-{name}", "labels": {"pool": pool}}})
    fake_cluster.core.delete_collection_namespaced_pod(NS, label_selector="pool=a")
    fake_cluster.core.delete_collection_namespaced_secret(NS, label_selector="pool in (a)")
    assert [p.metadata.name for p in fake_cluster.core.list_namespaced_pod(NS).items] == ["b1"]
    assert [s.metadata.name for s in
            fake_cluster.core.list_namespaced_secret(NS, label_selector="pool").items] == ["s-b1"]


def owned_by(owner: client.V1Pod) -> Dict[str, Any]:
    return {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": owner.metadata.name,
                                 "uid": owner.metadata.uid}]}


def test_dependents_are_collected_with_their_owner(fake_cluster: FakeCluster) -> None:
    notebook = create(fake_cluster, "notebook")
    worker = pod_body("worker")
    worker["metadata"].update(owned_by(notebook))
    fake_cluster.core.create_namespaced_pod(NS, worker)
    fake_cluster.core.create_namespaced_secret(NS, {"metadata": {"name": "creds",
                                                                 **owned_by(notebook)}})
    worker_pid = running_pid(fake_cluster, "worker")
    fake_cluster.core.delete_namespaced_pod("notebook", NS, grace_period_seconds=1)
    fake_cluster.wait_for_deleted("worker")
    assert fake_cluster.api.get_object("secrets", NS, "creds") is None
    wait_for(lambda: not alive(worker_pid), what="the dependent's process to be gone")


def test_dangling_owner_reference_is_collected(fake_cluster: FakeCluster) -> None:
    ghost = client.V1Pod(metadata=client.V1ObjectMeta(name="ghost", uid="0000-gone"))
    body = pod_body("orphan", **IDLE)
    body["metadata"].update(owned_by(ghost))
    created = fake_cluster.core.create_namespaced_pod(NS, body)
    assert created.metadata.name == "orphan"
    assert fake_cluster.pod("orphan") is None


def test_request_counters_separate_the_kubelet(fake_cluster: FakeCluster) -> None:
    fake_cluster.wait_for(lambda: fake_cluster.api.open_watches(include_kubelet=True) == 1)
    fake_cluster.api.reset_counts()
    create(fake_cluster, "c1", ["python", "-c", "pass"])
    create(fake_cluster, "c2", ["python", "-c", "pass"])
    fake_cluster.core.read_namespaced_pod("c1", NS)
    fake_cluster.core.list_namespaced_pod(NS)
    fake_cluster.wait_for_phase("c1", "Succeeded")
    fake_cluster.wait_for_phase("c2", "Succeeded")
    assert fake_cluster.api.counts() == {("create", "pods", False): 2,
                                         ("get", "pods", False): 1, ("list", "pods", False): 1}
    assert fake_cluster.api.count("create", "pods/binding", include_kubelet=True) == 2
    assert fake_cluster.api.count("patch", "pods/status", include_kubelet=True) >= 4


def test_kubectl_lists_pods(fake_cluster: FakeCluster) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    create(fake_cluster, "visible", **IDLE)
    local = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    listed = subprocess.run(["kubectl", "--kubeconfig", fake_cluster.kubeconfig, "get",
                             "pods", "-o", "name"], capture_output=True, text=True, timeout=30,
                            check=True, env=local)
    assert listed.stdout.split() == ["pod/visible"]


ORPHAN_SCRIPT = """
import sys, tempfile, pathlib
from tests.k8s.conftest import new_api_client, write_kubeconfig
from tests.k8s.fake_api import FakeKubeApi
from tests.k8s.kubelet import ProcessKubelet
from kubernetes import client
api = FakeKubeApi().start()
folder = pathlib.Path(tempfile.mkdtemp())
kubeconfig = write_kubeconfig(folder / "kubeconfig", api.url, "unused")
kubelet = ProcessKubelet(new_api_client(kubeconfig), log_dir=folder).start()
core = client.CoreV1Api(new_api_client(kubeconfig))
core.create_namespaced_pod("default", {"metadata": {"name": "orphan"}, "spec": {
    "containers": [{"name": "c", "image": "python", "command": %r}]}})
api.wait_for(lambda: (api.get_object("pods", "default", "orphan") or {}).get(
    "status", {}).get("phase") == "Running", 20)
print(kubelet.pid("orphan", "default"), flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv is missing")
def test_pods_die_with_a_killed_test_process() -> None:
    """Pods are new sessions; if the process hosting the kubelet is killed outright (a CI
    timeout), the kernel's parent-death signal still takes them down."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    host = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT % (SLEEP,)], cwd=root,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(host.stdout.readline())  # type: ignore[union-attr]
        assert alive(pid)
    finally:
        host.kill()
        host.wait()
        host.stdin.close()  # type: ignore[union-attr]
        host.stdout.close()  # type: ignore[union-attr]
    wait_for(lambda: not alive(pid), what="the orphaned pod process to be killed")
