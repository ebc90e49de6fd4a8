"""Specification: ``%fiber_pool --backend kubernetes`` in a real kernel, on the stand-in
and on a real cluster."""

from __future__ import annotations

import json

from ..jupyter.kernel import WAIT_LIVE, shown, start_kernel


def test_a_notebook_starts_uses_and_shuts_down_a_pool_of_pods(cluster, tmp_path):
    template = tmp_path / "pod-template.json"
    template.write_text(json.dumps(cluster.pod_template))
    kernel = start_kernel(tmp_path / "kernel", env={"KUBECONFIG": cluster.kubeconfig,
                                                    "POD_IP": cluster.address})
    try:
        assert kernel.run(f"%load_ext fiber_jupyter\n{WAIT_LIVE}") == shown()
        started = kernel.run(f"%fiber_pool 2 --backend kubernetes --image {cluster.image} "
                             f"--namespace {cluster.namespace} --cpu 100m --memory 256Mi "
                             f"--pod-template {template}\n_wait_live(pool, 2)")
        assert started.stdout == "started pool 'pool' (kubernetes, 2 workers); bound to `pool`\n"
        assert started.result == "True"
        pods = cluster.pods()
        assert len(pods) == 2
        limits = pods[0].spec.containers[0].resources.limits
        assert (limits["cpu"], limits["memory"]) == ("100m", "256Mi")
        assert pods[0].spec.host_network == cluster.pod_template.get("spec", {}).get(
            "hostNetwork")
        assert kernel.run("pool.map(abs, [-1, -2, -3])") == shown(result="[1, 2, 3]")
        scaled = kernel.run("%fiber_scale 3\n_wait_live(pool, 3)")
        assert scaled.stdout == "scaled pool 'pool' (kubernetes) from 2 to 3 workers\n"
        assert scaled.result == "True" and len(cluster.pods()) == 3
        assert kernel.run("%fiber_shutdown").stdout == (
            "shut down pool 'pool' (kubernetes, 3 workers stopped); `pool` still refers to it\n")
        assert cluster.pods() == [] and cluster.secrets() == []
    finally:
        kernel.stop()
