"""Specification of the Kubernetes backend: real pools, the official client, pods as processes.

Everything here runs a real Pool whose backend talks to the API stand-in
through a kubeconfig, over HTTP, with the official client; the process
kubelet runs each pod's command, so real workers connect back to the master
over CURVE-encrypted ZeroMQ. Tests in :class:`TestOnAnyCluster` also run
against a real cluster when ``FIBER_JUPYTER_TEST_KUBECONFIG`` names one (see
docs/kubernetes.md); the others need the stand-in's fault and kubelet hooks.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

import pytest

import fiber_jupyter
from fiber_jupyter.backends.kubernetes import manifests
from fiber_jupyter import (BrokenPoolError, TaskRetried, WorkerLost, WorkerStopped,
                           WorkerWaiting)

from ..conftest import EventRecorder, by_value, wait_for
from .clusters import (API_POLL, GATED_SQUARE, SLOW_SQUARE, SQUARE, kill_worker, notebook_pod,
                       pod_log, service_account_from_rbac_manifest, wait_live)


class TestOnAnyCluster:
    """What a user sees on any cluster: pods that run tasks, scale, heal and go away."""

    def test_a_pool_of_pods_runs_tasks_and_leaves_no_pod_or_secret(self, cluster, pools):
        pool = pools(3, backend=cluster.backend(), name="es")
        assert pool.map(SQUARE, range(20)) == [x * x for x in range(20)]
        assert len(cluster.pods()) == 3
        [secret] = cluster.secrets()
        assert secret.metadata.labels["fiber-jupyter/pool"].startswith("es-")
        pool.terminate()
        pool.join()
        assert cluster.pods() == [] and cluster.secrets() == []

    def test_scaling_creates_and_deletes_pods(self, cluster, pools):
        pool = pools(1, backend=cluster.backend())
        wait_live(pool, 1)
        recorder = EventRecorder(pool)
        pool.scale(3)
        wait_live(pool, 3)
        assert len(cluster.pods()) == 3
        pool.scale(1)
        recorder.collect(WorkerStopped, 2)
        wait_for(lambda: len(cluster.pods()) == 1, 30, "the stopped workers' pods to be deleted",
                 API_POLL)
        assert pool.map(SQUARE, range(5)) == [0, 1, 4, 9, 16]

    def test_a_deleted_pod_is_a_lost_worker_whose_tasks_run_again(self, cluster, pools):
        pool = pools(2, backend=cluster.backend())
        wait_live(pool, 2)
        recorder = EventRecorder(pool)
        result = pool.map_async(SLOW_SQUARE, range(60), chunksize=1)
        recorder.next(fiber_jupyter.Progress, where=lambda p: p.done >= 4)
        victim = cluster.pods()[0].metadata.name
        cluster.core.delete_namespaced_pod(victim, cluster.namespace, grace_period_seconds=0)
        lost = recorder.next(WorkerLost)
        assert lost.reason in ("pod deleted", "exit 137 (SIGKILL)", "exit 143 (SIGTERM)")
        assert result.get(timeout=120) == [x * x for x in range(60)]
        wait_live(pool, 2)

    def test_a_killed_worker_fails_its_pod_and_its_task_runs_on_the_replacement(
            self, cluster, pools, gate):
        pool = pools(1, backend=cluster.backend())
        recorder = EventRecorder(pool)
        result = pool.starmap_async(GATED_SQUARE, gate.tasks(range(6)), chunksize=1)
        gate.wait_for_waiting(1)
        [pod] = cluster.pods()
        kill_worker(cluster, pod.metadata.name)
        lost = recorder.next(WorkerLost)
        assert (lost.reason, lost.exit_code) == ("exit 137 (SIGKILL)", -9)
        retried = recorder.next(TaskRetried)
        assert retried.worker_id != lost.worker_id
        gate.open()
        assert result.get(timeout=120) == [x * x for x in range(6)]
        replacement = manifests.pod_name(pod.metadata.labels["fiber-jupyter/pool"],
                                         retried.worker_id)
        wait_for(lambda: [p.metadata.name for p in cluster.pods()] == [replacement], 30,
                 "the failed pod to be deleted, its replacement to remain", API_POLL)

    def test_scaling_up_and_down_during_a_map_keeps_every_result(self, cluster, pools, gate):
        pool = pools(1, backend=cluster.backend())
        recorder = EventRecorder(pool)
        result = pool.starmap_async(GATED_SQUARE, gate.tasks(range(12)), chunksize=1)
        gate.wait_for_waiting(1)
        pool.scale(3)
        gate.wait_for_waiting(3)  # the new pods' workers took tasks of the running map
        assert len(cluster.pods()) == 3 and not result.ready()
        pool.scale(1)
        gate.open()
        assert result.get(timeout=120) == [x * x for x in range(12)]
        recorder.collect(WorkerStopped, 2)
        wait_for(lambda: len(cluster.pods()) == 1, 30, "the stopped workers' pods to be deleted",
                 API_POLL)


# A notebook in a pod: a pool with the in-cluster defaults (the notebook pod's image,
# namespace and owner), left running as a kernel would be.
IN_CLUSTER_NOTEBOOK = """
import time
from fiber_jupyter import Pool
from fiber_jupyter.backends import Kubernetes
pool = Pool(2, backend=Kubernetes(pod_template={template!r}))
print("mapped", pool.map(abs, [-1, -2, -3]))
time.sleep(3600)
"""


class TestOnRealClusters:
    """What only a real cluster does: enforce a memory limit, collect garbage."""

    def test_a_worker_over_its_memory_limit_is_oomkilled_and_its_task_named(self, real, pools):
        hog = by_value("def hog(megabytes):\n    return len(bytearray(megabytes << 20))\n", "hog")
        pool = pools(1, backend=real.backend(memory="96Mi"), max_retries=0)
        assert pool.apply(hog, (10,)) == 10 << 20
        recorder = EventRecorder(pool)
        result = pool.apply_async(hog, (400,))
        assert recorder.next(WorkerLost).reason == "OOMKilled (exit 137, SIGKILL)"
        with pytest.raises(fiber_jupyter.WorkerLostError, match=r"OOMKilled \(exit 137"):
            result.get(timeout=60)


    def test_deleting_the_notebook_pod_deletes_its_workers_and_their_secret(
            self, real, tmp_path):
        script = IN_CLUSTER_NOTEBOOK.format(template=real.pod_template)
        with service_account_from_rbac_manifest(real, tmp_path), \
                notebook_pod(real, script) as notebook:
            wait_for(lambda: "mapped [1, 2, 3]" in pod_log(real, notebook), 120,
                     "the notebook pod's pool to run a map", API_POLL)
            workers = real.pods()
            assert len(workers) == 2 and len(real.secrets()) == 1
            for owned in workers + real.secrets():
                [owner] = owned.metadata.owner_references
                assert (owner.kind, owner.name) == ("Pod", notebook)
            real.core.delete_namespaced_pod(notebook, real.namespace, grace_period_seconds=0)
            wait_for(lambda: real.pods() == [] and real.secrets() == [], 120,
                     "the garbage collector to delete the workers and their Secret", API_POLL)


class TestConfiguration:
    def test_kubeconfig_set_in_a_running_kernel_is_the_one_used(self, fake, pools,
                                                                 monkeypatch):
        """The official client reads KUBECONFIG once, at import: a notebook that sets it
        later (os.environ["KUBECONFIG"] = ...) must still get that cluster."""
        monkeypatch.setenv("KUBECONFIG", fake.kubeconfig)
        backend = fake.backend(kubeconfig=None)
        pool = pools(1, backend=backend)
        assert pool.map(SQUARE, range(3)) == [0, 1, 4]


class TestCredentials:
    def test_workers_get_the_credentials_from_the_pools_secret_only(self, fake, pools):
        pool = pools(1, backend=fake.backend())
        wait_live(pool, 1)
        token = pool._scheduler._credentials.token  # the one place a test may read it
        assert token.startswith("curve:")
        [pod] = fake.fake.api.list_objects("pods", fake.namespace)
        assert token not in repr(pod)
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["FIBER_JUPYTER_CREDENTIALS"]["valueFrom"]["secretKeyRef"]["key"] == "token"
        assert pod["spec"]["automountServiceAccountToken"] is False


class TestLosses:
    """Pod failures the stand-in can inject, each reported as Kubernetes says it."""

    def _lose(self, fake, pools, harm: Callable[[str], None]) -> WorkerLost:
        pool = pools(1, backend=fake.backend())
        wait_live(pool, 1)
        recorder = EventRecorder(pool)
        [pod] = fake.pods()
        harm(pod.metadata.name)
        lost = recorder.next(WorkerLost)
        wait_live(pool, 1)
        assert pool.apply(SQUARE, (7,)) == 49
        fake.fake.wait_for_deleted(pod.metadata.name, 30)
        return lost

    def test_a_worker_process_killed_with_sigkill(self, fake, pools):
        lost = self._lose(fake, pools, lambda name: os.kill(fake.fake.kubelet.pid(name),
                                                            signal.SIGKILL))
        assert (lost.reason, lost.exit_code) == ("exit 137 (SIGKILL)", -9)

    def test_an_oom_killed_worker(self, fake, pools):
        lost = self._lose(fake, pools, fake.fake.kubelet.oom)
        assert lost.reason == "OOMKilled (exit 137, SIGKILL)"

    def test_an_evicted_worker(self, fake, pools):
        lost = self._lose(fake, pools, fake.fake.kubelet.evict)
        assert lost.reason.startswith("evicted: The node was low on resource: memory.")


class TestStuckPods:
    """Pods that never run are pending, then failed starts that say why."""

    def test_an_unschedulable_pod_waits_then_fails_with_the_schedulers_reason(self, cluster,
                                                                               pools):
        pool = pools(1, backend=cluster.backend(cpu="64"), start_timeout=1,
                     heartbeat_timeout=1.2)
        recorder = EventRecorder(pool)
        waiting = recorder.next(WorkerWaiting)
        unschedulable = "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
        assert waiting.reason.startswith(unschedulable)
        assert pool.status().pending == 1
        lost = recorder.next(WorkerLost)
        assert lost.reason.startswith(f"did not connect within 1 s: {unschedulable}")

    def test_an_image_that_cannot_be_pulled(self, cluster, pools):
        pool = pools(1, backend=cluster.backend(image="registry.example/does-not-exist:1"))
        waiting = EventRecorder(pool).next(WorkerWaiting)
        # ErrImageNeverPull where pods may use local images only (imagePullPolicy: Never)
        assert waiting.reason.startswith(("ErrImagePull", "ImagePullBackOff",
                                          "ErrImageNeverPull"))

    def test_a_pool_that_can_start_no_worker_breaks_with_the_reason(self, fake, pools):
        pool = pools(1, backend=fake.backend(image="registry.example/does-not-exist:1"),
                     start_timeout=0.5, heartbeat_timeout=1.2)
        with pytest.raises(BrokenPoolError, match="ErrImagePull|ImagePullBackOff") as broken:
            pool.map(SQUARE, range(3))
        assert str(broken.value).endswith("Kubernetes' reason says what to fix: the image, "
                                          "the pod's resources, or the RBAC of deploy/rbac.yaml "
                                          "(docs/kubernetes.md)")

    def test_a_quota_refusal_waits_and_retries(self, fake, pools):
        fake.fake.api.fail_next("create", "pods", 2, code=403)
        pool = pools(1, backend=fake.backend())
        waiting = EventRecorder(pool).next(WorkerWaiting)
        assert waiting.reason.startswith("quota: 403 Forbidden:")
        assert "exceeded quota" in waiting.reason
        wait_live(pool, 1)


class TestApiTrouble:
    def test_throttling_and_server_errors_are_retried(self, fake, pools):
        fake.fake.api.fail_next("create", "pods", 2, code=429, retry_after=0.1)
        fake.fake.api.fail_next("create", "secrets", 1, code=500)
        pool = pools(2, backend=fake.backend())
        wait_live(pool, 2)
        assert fake.fake.api.count("create", "pods") == 4

    def test_a_forbidden_request_is_a_clear_failed_start(self, fake, pools):
        fake.fake.api.fail_next("create", "pods", 10, code=403, reason="Forbidden",
                                message='pods is forbidden: User "ada" cannot create resource '
                                        '"pods" in API group "" in the namespace "fiber-test"')
        pool = pools(1, backend=fake.backend())
        lost = EventRecorder(pool).next(WorkerLost)
        assert lost.reason.startswith('could not create pod: 403 Forbidden: pods is forbidden: '
                                      'User "ada" cannot create resource "pods"')

    @pytest.mark.parametrize("trouble", ["drop", "expire"])
    def test_losses_are_seen_after_the_watch_is_dropped_or_expires(self, fake, pools, trouble):
        pool = pools(1, backend=fake.backend())
        wait_live(pool, 1)
        recorder = EventRecorder(pool)
        api = fake.fake.api
        if trouble == "drop":
            fake.fake.wait_for(lambda: api.open_watches("pods") == 1, 10, "the pool's watch")
            api.drop_watches(resource="pods")
        else:
            api.expire_next_watch()
            api.drop_watches(resource="pods")
        fake.fake.wait_for(lambda: api.open_watches("pods") == 1, 30, "the watch to resume")
        [pod] = fake.pods()
        os.kill(fake.fake.kubelet.pid(pod.metadata.name), signal.SIGKILL)
        assert recorder.next(WorkerLost).reason == "exit 137 (SIGKILL)"


class TestClosing:
    def test_a_pod_whose_creation_ends_after_the_pool_closed_is_deleted_too(self, fake, pools):
        pool = pools(1, backend=fake.backend())
        wait_live(pool, 1)
        api = fake.fake.api
        held = api.hold_next("create", "pods")
        pool.scale(2)
        held.wait_arrived()
        closer = threading.Thread(target=lambda: (pool.terminate(), pool.join()))
        closer.start()
        fake.fake.wait_for(lambda: api.count("deletecollection", "secrets") == 1, 30,
                           "the pool's pods and Secret to be deleted")
        held.release()  # the pod is created now, after its pool's collection was deleted
        closer.join(60)
        fake.fake.wait_for(lambda: fake.pods() == [], 30, "the late pod to be deleted")


class TestIsolation:
    def test_two_pools_in_one_namespace_never_touch_each_others_pods(self, fake, pools):
        first = pools(2, backend=fake.backend(), name="a")
        second = pools(1, backend=fake.backend(), name="b")
        wait_live(first, 2)
        wait_live(second, 1)
        first.terminate()
        first.join()
        [pod] = fake.pods()
        assert pod.metadata.labels["fiber-jupyter/pool"].startswith("b-")
        assert second.map(SQUARE, range(3)) == [0, 1, 4]
        assert (second.status().live, second.status().lost) == (1, 0)


class TestLeastPrivilege:
    """The shipped RBAC (deploy/rbac.yaml) is enough, and nothing less is silently enough."""

    def test_the_shipped_role_suffices_and_without_its_binding_the_error_says_forbidden(
            self, real, pools, tmp_path):
        with service_account_from_rbac_manifest(real, tmp_path) as (kubeconfig, unbind):
            pool = pools(1, backend=real.backend(kubeconfig=kubeconfig))
            assert pool.map(SQUARE, range(4)) == [0, 1, 4, 9]
            pool.terminate()
            pool.join()
            assert real.pods() == [] and real.secrets() == [], "the Role lets it clean up"
            unbind()
            refused = pools(1, backend=real.backend(kubeconfig=kubeconfig))
            lost = EventRecorder(refused).next(WorkerLost)
            account = f"system:serviceaccount:{real.namespace}:fiber-jupyter"
            assert lost.reason.startswith("could not create pod: 403 Forbidden:")
            assert f'User "{account}" cannot create resource' in lost.reason
