"""Where workers run. Each backend implements :class:`~.base.Backend`."""

from __future__ import annotations

from typing import Any, Dict, Union

from .base import Backend, ExitCallback, WaitingCallback, WorkerExit, WorkerLaunch
from .kubernetes import Kubernetes
from .local import LocalBackend

# A backend class, or a configured factory such as Kubernetes(image=...): called
# with (on_exit, on_waiting, pool_name), it has ``name`` and ``encrypts``.
BackendFactory = Any

BACKENDS: Dict[str, BackendFactory] = {LocalBackend.name: LocalBackend,
                                       Kubernetes.name: Kubernetes()}


def backend_factory(backend: Union[None, str, BackendFactory]) -> BackendFactory:
    """What ``Pool(backend=...)`` names: a registered name (default: local) or a factory.

    Unknown names are a ValueError listing the choices.
    """
    if backend is None or isinstance(backend, str):
        key = backend or LocalBackend.name
        try:
            return BACKENDS[key]
        except KeyError:
            choices = ", ".join(sorted(BACKENDS))
            raise ValueError(f"unknown backend {backend!r}; choose one of: {choices}") from None
    if callable(backend) and isinstance(getattr(backend, "name", None), str):
        return backend
    raise TypeError(f"backend must be a name such as 'local' or a backend such as "
                    f"Kubernetes(image=...), got {backend!r}")


__all__ = ["Backend", "BACKENDS", "BackendFactory", "ExitCallback", "Kubernetes",
           "WaitingCallback", "WorkerExit", "WorkerLaunch", "backend_factory"]
