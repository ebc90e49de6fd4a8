"""Specification: ``%fiber_pool --backend kubernetes`` in a real kernel, on the stand-in."""

from __future__ import annotations

from ..jupyter.kernel import WAIT_LIVE, shown, start_kernel


def test_a_notebook_starts_uses_and_shuts_down_a_pool_of_pods(fake, tmp_path):
    kernel = start_kernel(tmp_path / "kernel", env={"KUBECONFIG": fake.kubeconfig,
                                                    "POD_IP": "127.0.0.1"})
    try:
        assert kernel.run(f"%load_ext fiber_jupyter\n{WAIT_LIVE}") == shown()
        started = kernel.run("%fiber_pool 2 --backend kubernetes --image python:3.11-slim "
                             "--cpu 500m --memory 256Mi\n_wait_live(pool, 2)")
        assert started.stdout == "started pool 'pool' (kubernetes, 2 workers); bound to `pool`\n"
        assert started.result == "True"
        pods = fake.pods()
        assert len(pods) == 2
        limits = pods[0].spec.containers[0].resources.limits
        assert (limits["cpu"], limits["memory"]) == ("500m", "256Mi")
        assert kernel.run("pool.map(abs, [-1, -2, -3])") == shown(result="[1, 2, 3]")
        assert kernel.run("%fiber_shutdown").stdout == (
            "shut down pool 'pool' (kubernetes, 2 workers stopped); `pool` still refers to it\n")
        assert fake.pods() == [] and fake.secrets() == []
    finally:
        kernel.stop()
