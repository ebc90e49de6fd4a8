"""Specification of what a pod's status means for its worker (pod_status.py)."""

from kubernetes.client import V1Pod

from fiber_jupyter.backends.kubernetes import pod_status


def pod(phase, reason=None, message=None, state=None, conditions=None):
    status = {"phase": phase, "reason": reason, "message": message,
              "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": "worker", "ready": False, "restartCount": 0,
                                        "image": "img", "imageID": "", "state": state}]
    return V1Pod.from_dict({"metadata": {"name": "fiber-es-w1"}, "status": status})


def terminated(code, reason="Error"):
    return {"terminated": {"exitCode": code, "reason": reason}}


def test_a_killed_worker_reads_like_a_local_one():
    outcome = pod_status.outcome(pod("Failed", state=terminated(137)))
    assert (outcome.ended, outcome.exit_code, outcome.detail) == (True, -9, "exit 137 (SIGKILL)")


def test_out_of_memory_and_eviction_name_their_cause():
    oom = pod_status.outcome(pod("Failed", state=terminated(137, "OOMKilled")))
    assert oom.detail == "OOMKilled (exit 137, SIGKILL)"
    evicted = pod_status.outcome(pod("Failed", "Evicted", "The node was low on resource: memory."))
    assert evicted.detail == "evicted: The node was low on resource: memory."


def test_a_worker_that_exited_normally_ended_with_its_code():
    assert pod_status.outcome(pod("Succeeded", state=terminated(0, "Completed"))).detail == "exit 0"
    assert pod_status.outcome(pod("Failed", state=terminated(3))).exit_code == 3


def test_pods_stuck_before_running_say_why():
    unschedulable = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes are available: 1 Insufficient cpu."}]
    assert pod_status.outcome(pod("Pending", conditions=unschedulable)).waiting == (
        "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.")
    pulling = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    assert pod_status.outcome(pod("Pending", state=pulling)).waiting == (
        "ImagePullBackOff: Back-off pulling image")


def test_a_pod_on_its_way_is_neither_stuck_nor_ended():
    creating = {"waiting": {"reason": "ContainerCreating"}}
    for outcome in (pod_status.outcome(pod("Pending", state=creating)),
                    pod_status.outcome(pod("Running", state={"running": {}}))):
        assert (outcome.ended, outcome.waiting) == (False, None)


def test_a_deleted_pod_ended_with_its_last_status_or_as_deleted():
    assert pod_status.deleted(pod("Running", state={"running": {}})).detail == "pod deleted"
    assert pod_status.deleted(pod("Failed", state=terminated(137, "OOMKilled"))).detail == (
        "OOMKilled (exit 137, SIGKILL)")
