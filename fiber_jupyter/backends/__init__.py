"""Where workers run. Each backend implements :class:`~.base.Backend`."""

from __future__ import annotations

from typing import Dict, Optional, Type

from .base import Backend, ExitCallback, WorkerExit, WorkerLaunch
from .local import LocalBackend

BACKENDS: Dict[str, Type[Backend]] = {LocalBackend.name: LocalBackend}


def backend_class(name: Optional[str]) -> Type[Backend]:
    """The backend called ``name`` (default: local), or a ValueError listing the choices."""
    key = name or LocalBackend.name
    try:
        return BACKENDS[key]
    except KeyError:
        choices = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown backend {name!r}; choose one of: {choices}") from None


__all__ = ["Backend", "BACKENDS", "ExitCallback", "WorkerExit", "WorkerLaunch", "backend_class"]
