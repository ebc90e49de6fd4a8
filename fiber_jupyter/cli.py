"""``fiber-jupyter``: see and clean up the Kubernetes pools of a namespace.

::

    fiber-jupyter list      [--namespace NS] [--context CTX] [--kubeconfig FILE]
    fiber-jupyter cleanup   [--dry-run] [--pool POOL] [...]

A pool's pods and Secret are deleted with the pool, and in a cluster they are
owned by the notebook's pod. A kernel killed outside a cluster leaves them:
its workers exit two minutes after they lose their master, and their pods
stay as ended pods. ``cleanup`` deletes the pods and Secrets of pools whose
pods have all ended, or that have no pod left; ``--pool`` names one to delete
whatever its state, for a pool whose kernel is gone before its workers noticed
(a pool still in use would start new workers, without credentials).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Counter, Dict, List, Optional, Sequence

from .backends.kubernetes import Kubernetes, KubernetesConfigError
from .backends.kubernetes import manifests
from .backends.kubernetes.config import connect

log = logging.getLogger(__name__)

ENDED = ("Succeeded", "Failed")


@dataclass
class PoolObjects:
    """What one pool has in the namespace."""

    pool: str
    name: str = ""
    master: str = ""
    phases: Counter[str] = field(default_factory=collections.Counter)
    secrets: int = 0

    @property
    def abandoned(self) -> bool:
        """No pod still running or starting: its kernel is gone, or it never started any."""
        return all(phase in ENDED for phase in self.phases)

    def describe(self) -> str:
        pods = ", ".join(f"{count} {phase.lower()}" for phase, count
                         in sorted(self.phases.items())) or "no pods"
        return (f"{self.pool}  (pool {self.name or '?'}, master {self.master or '?'}): "
                f"{pods}; {self.secrets} secret(s)")


def find_pools(api: Any, namespace: str) -> List[PoolObjects]:
    """Every pool with a pod or a Secret in ``namespace``, by pool label."""
    selector = f"{manifests.APP_LABEL}={manifests.APP}"
    pools: Dict[str, PoolObjects] = {}

    def entry(item: Any) -> PoolObjects:
        labels, annotations = item.metadata.labels or {}, item.metadata.annotations or {}
        found = pools.setdefault(labels.get(manifests.POOL_LABEL, "?"),
                                 PoolObjects(labels.get(manifests.POOL_LABEL, "?")))
        found.name = annotations.get(manifests.POOL_NAME_ANNOTATION, found.name)
        found.master = annotations.get(manifests.MASTER_ANNOTATION, found.master)
        return found

    for pod in api.list_namespaced_pod(namespace, label_selector=selector).items:
        entry(pod).phases[pod.status.phase or "Unknown"] += 1
    for secret in api.list_namespaced_secret(namespace, label_selector=selector).items:
        entry(secret).secrets += 1
    return sorted(pools.values(), key=lambda objects: objects.pool)


def delete_pool(api: Any, namespace: str, pool: str) -> None:
    selector = manifests.pool_selector(pool)
    api.delete_collection_namespaced_pod(namespace, label_selector=selector,
                                         grace_period_seconds=0)
    api.delete_collection_namespaced_secret(namespace, label_selector=selector)


def _list(api: Any, namespace: str, options: argparse.Namespace) -> int:
    pools = find_pools(api, namespace)
    if not pools:
        print(f"no fiber_jupyter pools in namespace {namespace}")
    for objects in pools:
        state = "abandoned" if objects.abandoned else "in use"
        print(f"{objects.describe()}  [{state}]")
    return 0


def _cleanup(api: Any, namespace: str, options: argparse.Namespace) -> int:
    pools = find_pools(api, namespace)
    if options.pool:
        chosen = [objects for objects in pools if objects.pool == options.pool]
        if not chosen:
            print(f"no pool {options.pool!r} in namespace {namespace}", file=sys.stderr)
            return 1
    else:
        chosen = [objects for objects in pools if objects.abandoned]
    verb = "would delete" if options.dry_run else "deleted"
    for objects in chosen:
        if not options.dry_run:
            delete_pool(api, namespace, objects.pool)
        print(f"{verb} {objects.describe()}")
    if not chosen:
        print(f"nothing to clean up in namespace {namespace}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiber-jupyter", description="See and clean up the Kubernetes pools of a namespace.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "list the pools of a namespace and their pods"),
                            ("cleanup", "delete the pods and Secrets of abandoned pools")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--namespace", help="default: the context's, or 'default'")
        command.add_argument("--context", help="kubeconfig context (default: current)")
        command.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
        if name == "cleanup":
            command.add_argument("--dry-run", action="store_true",
                                 help="say what would be deleted, delete nothing")
            command.add_argument("--pool", help="delete this pool (its label value from "
                                                "`list`), even if its pods still run")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = _parser().parse_args(argv)
    try:
        api, namespace, _ = connect(Kubernetes(namespace=options.namespace,
                                               kubeconfig=options.kubeconfig,
                                               context=options.context))
    except KubernetesConfigError as exc:
        print(f"fiber-jupyter: {exc}", file=sys.stderr)
        return 2
    run = _list if options.command == "list" else _cleanup
    return run(api, namespace, options)


if __name__ == "__main__":
    sys.exit(main())
