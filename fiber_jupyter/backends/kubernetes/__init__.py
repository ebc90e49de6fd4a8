"""Workers as Kubernetes pods, through the official client.

``Pool(64, backend="kubernetes")`` in a cluster, or
``Pool(64, backend=Kubernetes(image="registry/fiber-worker:1", cpu="1"))``.

- ``config.py``: the user's options (:class:`Kubernetes`), cluster and notebook discovery.
- ``manifests.py``: the pods and the Secret, as manifests.
- ``pod_status.py``: what a pod's status means for its worker.
- ``api_calls.py``: retries on throttling and server errors.
- ``watch.py``: the one watch of a pool's pods.
- ``backend.py``: :class:`KubernetesBackend`, the Backend itself.
"""

from .config import Kubernetes, KubernetesConfigError

__all__ = ["Kubernetes", "KubernetesConfigError"]
