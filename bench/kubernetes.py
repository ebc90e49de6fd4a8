"""Kubernetes: how fast a pool of pods comes up, what it costs the API, and ES on it.

Usage: python -m bench.kubernetes [--sizes 64,512] [--idle-seconds 60]
                                  [--out docs/benchmarks.md]

Runs against the API stand-in and the process kubelet of ``tests/k8s`` (no
real cluster can run here): the official client, real HTTP, real worker
processes connecting back over CURVE. For each size n:

- time to live: from ``Pool(n, backend=Kubernetes(...))`` until n workers
  are live, and the API requests the backend made meanwhile, by verb; the
  same for a local pool of n, in the same run, as a ratio (the process
  kubelet starts the same interpreters, so the ratio is the backend's cost);
- idle cost: API requests per minute while the pool sits idle for
  ``--idle-seconds``, total and per worker (the goal is none per worker:
  one watch per pool);
- shutdown: time until no pod and no Secret is left, and its requests.

Then W5 (evolution strategies, ``bench.workloads``) on 2 workers as pods and
on 2 local workers, in the same run, as a ratio. Requests made by the test
kubelet are not counted: a real cluster's kubelets talk to the API anyway.
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import fiber_jupyter
from fiber_jupyter.backends import Kubernetes

from bench import sections, workloads
from bench.frameworks.fiber_jupyter_pool import FiberHandle
from tests.k8s.conftest import NAMESPACE, new_api_client, write_kubeconfig
from tests.k8s.fake_api import FakeKubeApi
from tests.k8s.kubelet import ProcessKubelet

log = logging.getLogger("bench.kubernetes")

SIZES = (64, 512)
IDLE_SECONDS = 60.0
ROOT = Path(__file__).resolve().parent.parent
# Workers run this host's Python from the repository root, so bench.workloads imports.
TEMPLATE = {"spec": {"containers": [{"name": "worker", "workingDir": str(ROOT)}]}}
START_TIMEOUT_S = 900


class StandIn:
    """The API stand-in and its kubelet, sized for n pods."""

    def __init__(self, directory: Path, pods: int) -> None:
        directory.mkdir(parents=True)
        self.api = FakeKubeApi(token="bench").start()
        self.kubeconfig = write_kubeconfig(directory / "kubeconfig", self.api.url, "bench")
        self.kubelet = ProcessKubelet(new_api_client(self.kubeconfig), log_dir=directory / "pods",
                                      default_namespace=NAMESPACE,
                                      capacity={"pods": pods + 10, "cpu": "10000",
                                                "memory": "100000Gi"})
        self.kubelet.start()

    def backend(self) -> Kubernetes:
        return Kubernetes(image="fiber-worker:bench", kubeconfig=str(self.kubeconfig),
                          address="127.0.0.1", pod_template=TEMPLATE)

    def leftovers(self) -> int:
        return sum(len(self.api.list_objects(kind, NAMESPACE)) for kind in ("pods", "secrets"))

    def close(self) -> None:
        self.kubelet.stop()
        self.api.stop()


def requests_by_verb(api: FakeKubeApi) -> dict:
    counts: dict = {}
    for (verb, resource, _), count in api.counts().items():
        key = f"{verb} {resource}"
        counts[key] = counts.get(key, 0) + count
    return counts


def local_time_to_live(n: int) -> float:
    t0 = time.perf_counter()
    pool = fiber_jupyter.Pool(n, start_timeout=START_TIMEOUT_S, progress=False)
    try:
        FiberHandle(pool).wait_ready()
        return time.perf_counter() - t0
    finally:
        pool.terminate()
        pool.join()


def measure_size(directory: Path, n: int, idle_seconds: float) -> dict:
    local = local_time_to_live(n)
    cluster = StandIn(directory, n)
    try:
        t0 = time.perf_counter()
        pool = fiber_jupyter.Pool(n, backend=cluster.backend(), start_timeout=START_TIMEOUT_S,
                                  progress=False)
        FiberHandle(pool).wait_ready()
        to_live = time.perf_counter() - t0
        up_requests = requests_by_verb(cluster.api)
        log.info("n=%d live in %.1f s; requests %s", n, to_live, up_requests)
        cluster.api.reset_counts()
        time.sleep(idle_seconds)  # the idle window being measured, not a synchronisation
        idle = sum(requests_by_verb(cluster.api).values())
        cluster.api.reset_counts()
        t1 = time.perf_counter()
        pool.terminate()
        pool.join()
        to_gone = time.perf_counter() - t1
        down_requests = requests_by_verb(cluster.api)
        return {"n": n, "to_live": to_live, "local_to_live": local, "up": up_requests,
                "idle_per_min": idle * 60 / idle_seconds, "to_gone": to_gone,
                "down": down_requests, "leftovers": cluster.leftovers()}
    finally:
        cluster.close()


def measure_es(directory: Path) -> dict:
    results = {}
    cluster = StandIn(directory, workloads.WORKERS)
    try:
        for label, backend in (("pods", cluster.backend()), ("local", "local")):
            pool = fiber_jupyter.Pool(workloads.WORKERS, backend=backend, progress=False)
            try:
                results[label] = workloads.w5_evolution_strategies(FiberHandle(pool),
                                                                   workloads.FULL)
            finally:
                pool.terminate()
                pool.join()
    finally:
        cluster.close()
    return results


def render(sizes: list, es: dict, idle_seconds: float) -> str:
    lines = ["## Kubernetes backend (API stand-in)", "", sections.provenance("bench.kubernetes"),
             "", __doc__.split("\n\n", 2)[2].strip(), "",
             "| workers | to live, s (local, ratio) | API requests to scale up | idle requests/min "
             "(per worker) | shutdown, s | shutdown requests | pods+secrets left |",
             "|---|---|---|---|---|---|---|"]
    for row in sizes:
        up = ", ".join(f"{count} {what}" for what, count in sorted(row["up"].items()))
        down = ", ".join(f"{count} {what}" for what, count in sorted(row["down"].items()))
        ratio = row["to_live"] / row["local_to_live"]
        lines.append(f"| {row['n']} | {row['to_live']:.1f} ({row['local_to_live']:.1f}, "
                     f"{ratio:.2f}x) | {up} | {row['idle_per_min']:.1f} "
                     f"({row['idle_per_min'] / row['n']:.3f}) | {row['to_gone']:.1f} | {down} | "
                     f"{row['leftovers']} |")
    pods, local = es["pods"]["s_per_iter"], es["local"]["s_per_iter"]
    lines += ["", f"W5 evolution strategies on {workloads.WORKERS} workers: {pods:.3f} s/iteration "
              f"as pods, {local:.3f} s/iteration local: **{pods / local:.2f}x** local "
              f"(idle window {idle_seconds:.0f} s)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    parser.add_argument("--out", default=str(sections.DEFAULT_PATH))
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        sizes = [measure_size(Path(scratch) / f"n{n}", int(n), options.idle_seconds)
                 for n in options.sizes.split(",")]
        es = measure_es(Path(scratch) / "es")
    text = render(sizes, es, options.idle_seconds)
    sections.write(options.out, sections.KUBERNETES, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
