"""Specification of the ``fiber-jupyter`` command (fiber_jupyter/cli.py) on the stand-in."""

from __future__ import annotations

import sys

import pytest

from fiber_jupyter import cli
from fiber_jupyter.backends.kubernetes import manifests

from .clusters import SQUARE, wait_live


def abandoned_pool(fake, pool: str = "old-pool-abc123", phase: str = "Succeeded") -> None:
    """What a killed kernel leaves outside a cluster: its Secret and its worker pods.

    Their workers exit once they notice (``phase`` Succeeded), or still wait (Running).
    """
    secret = manifests.secret_manifest(pool, "old", "tcp://10.9.9.9:1", "gone", None)
    fake.core.create_namespaced_secret(fake.namespace, secret)
    for worker in ("w0", "w1"):
        pod = manifests.pod_manifest(
            pool=pool, pool_name="old", worker_id=worker, address="tcp://10.9.9.9:1",
            image="python:3.11-slim", heartbeat_interval=5.0, master_timeout=1.0, owner=None,
            resource_amounts={}, service_account=None, node_selector={}, tolerations=(),
            template={"spec": {"containers": [{"name": "worker", "command": [sys.executable],
                                               "args": ["-c", WORKER_CODE[phase]]}]}})
        fake.core.create_namespaced_pod(fake.namespace, pod)
        fake.fake.wait_for_phase(pod["metadata"]["name"], phase, 30)


WORKER_CODE = {"Succeeded": "pass", "Running": "import time; time.sleep(600)"}


def run(fake, *arguments: str) -> int:
    return cli.main([*arguments, "--kubeconfig", fake.kubeconfig])


def test_list_shows_each_pool_with_its_pods_and_whether_it_is_in_use(fake, pools, capsys):
    pool = pools(2, backend=fake.backend(), name="es")
    wait_live(pool, 2)
    abandoned_pool(fake)
    assert run(fake, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("es-") and lines[0].endswith(
        "2 running; 1 secret(s)  [in use]")
    assert "(pool es, master tcp://127.0.0.1:" in lines[0]
    assert lines[1] == ("old-pool-abc123  (pool old, master tcp://10.9.9.9:1): 2 succeeded; "
                        "1 secret(s)  [abandoned]")


def test_cleanup_deletes_abandoned_pools_only(fake, pools, capsys):
    pool = pools(1, backend=fake.backend(), name="es")
    wait_live(pool, 1)
    abandoned_pool(fake)
    assert run(fake, "cleanup", "--dry-run") == 0
    assert capsys.readouterr().out.startswith("would delete old-pool-abc123")
    assert len(fake.pods()) == 3
    assert run(fake, "cleanup") == 0
    assert capsys.readouterr().out.startswith("deleted old-pool-abc123")
    fake.fake.wait_for(lambda: len(fake.pods()) == 1, 30, "the abandoned pods to go")
    assert [s.metadata.labels["fiber-jupyter/pool"] for s in fake.secrets()] != ["old-pool-abc123"]
    assert pool.map(SQUARE, range(3)) == [0, 1, 4]


def test_cleanup_of_a_named_pool_deletes_it_while_its_workers_still_wait(fake, capsys):
    abandoned_pool(fake, phase="Running")
    assert run(fake, "cleanup") == 0
    assert capsys.readouterr().out == "nothing to clean up in namespace fiber-test\n"
    assert run(fake, "cleanup", "--pool", "old-pool-abc123") == 0
    fake.fake.wait_for(lambda: not fake.pods() and not fake.secrets(), 30, "the pool to go")
    assert run(fake, "cleanup", "--pool", "nosuch") == 1
    assert "no pool 'nosuch' in namespace fiber-test" in capsys.readouterr().err


def test_without_a_cluster_it_says_so_and_exits_2(tmp_path, capsys):
    assert cli.main(["list", "--kubeconfig", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("fiber-jupyter: no Kubernetes cluster to run on")


def test_usage_errors_name_the_command(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["prune"])
    assert exited.value.code == 2
    assert "invalid choice: 'prune'" in capsys.readouterr().err
