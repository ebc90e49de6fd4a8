"""Smoke check of a cluster started by up.sh, with the official `kubernetes` client.

    python tests/k8s/cluster/verify.py [KUBECONFIG] [--image fiber-worker:test]

Creates a hostNetwork pod (restartPolicy Never, imagePullPolicy Never) that runs
to completion, watches it to Succeeded, reads its log, lists it by label and
deletes it (watching the DELETED event). Exits non-zero on any failure.
"""
import argparse
import os
import sys
import time
import uuid

from kubernetes import client, config, watch

ap = argparse.ArgumentParser()
ap.add_argument("kubeconfig", nargs="?", default=os.environ.get("KUBECONFIG") or os.path.join(
    os.environ.get("STATE", "/tmp/fiber-jupyter-k8s"), "admin.kubeconfig"))
ap.add_argument("--image", default="localhost/busybox:local")
ap.add_argument("--timeout", type=int, default=120)
a = ap.parse_args()

config.load_kube_config(a.kubeconfig)
v1 = client.CoreV1Api()
print("server", client.VersionApi().get_code().git_version)
node = v1.read_node("localhost")
print("node localhost Ready:", [c.status for c in node.status.conditions if c.type == "Ready"][0])

name = "verify-" + uuid.uuid4().hex[:6]
label = "fiber-jupyter-k8s-verify=" + name
if "busybox" in a.image:
    cmd = ["sh", "-c", "echo hello from $(hostname) uid=$(id -u); "
           "ls /var/run/secrets/kubernetes.io/serviceaccount"]
else:  # the worker image: the same python + fiber_jupyter the notebook uses
    cmd = ["python", "-c", "import os, sys, fiber_jupyter.worker; "
           "print('hello from', os.uname().nodename, 'python', sys.version.split()[0], "
           "'uid', os.getuid())"]
pod = client.V1Pod(
    metadata=client.V1ObjectMeta(name=name, labels={"fiber-jupyter-k8s-verify": name}),
    spec=client.V1PodSpec(
        host_network=True, restart_policy="Never", termination_grace_period_seconds=1,
        containers=[client.V1Container(name="main", image=a.image, image_pull_policy="Never",
                                       command=cmd)]))

t0 = time.time()
created = v1.create_namespaced_pod("default", pod)
w = watch.Watch()
phase = None
for ev in w.stream(v1.list_namespaced_pod, "default", label_selector=label,
                   resource_version=created.metadata.resource_version, timeout_seconds=a.timeout):
    phase = ev["object"].status.phase
    print("  watch %-8s phase=%s" % (ev["type"], phase))
    if phase in ("Succeeded", "Failed"):
        w.stop()
print("pod %s finished: %s in %.1f s" % (name, phase, time.time() - t0))
log = v1.read_namespaced_pod_log(name, "default")
print("log:", log.strip().replace("\n", " | "))
pods = v1.list_namespaced_pod("default", label_selector=label).items
assert [p.metadata.name for p in pods] == [name], pods
assert pods[0].spec.host_network is True
rv = pods[0].metadata.resource_version
v1.delete_namespaced_pod(name, "default", grace_period_seconds=0)
deleted = False
for ev in w.stream(v1.list_namespaced_pod, "default", label_selector=label, resource_version=rv,
                   timeout_seconds=60):
    if ev["type"] == "DELETED":
        deleted = True
        w.stop()
assert deleted, "no DELETED event"
assert not v1.list_namespaced_pod("default", label_selector=label).items
print("deleted; watch saw DELETED")
if phase != "Succeeded":
    sys.exit("pod did not succeed: " + str(phase))
print("OK")
