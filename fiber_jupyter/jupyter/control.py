"""The kernel's control surface for front ends: the comm target ``fiber_jupyter.control``.

The JupyterLab side panel (and any client) opens a comm to this target and
sends commands as the comm's data; each gets one answer on the same comm::

    {"cmd": "status"}                          -> {"event": "pools", "pools": [...]}
    {"cmd": "scale", "pool": "pool", "n": 32}  -> {"event": "scaled", "pool": "pool",
                                                   "target": 32}
    anything wrong                             -> {"event": "error", "message": "..."}

Each pool in "pools" is its name, backend and ``PoolStatus`` fields. The
comms are routed like the widgets' (``live.py``), so a command acts while a
cell blocks; the handler only reads the registry and hands the new size to
the pool.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Dict, List

from ..errors import FiberError
from .live import LiveComms
from .registry import PoolRegistry

log = logging.getLogger(__name__)

TARGET = "fiber_jupyter.control"


def pools_message(registry: PoolRegistry) -> Dict[str, Any]:
    pools: List[Dict[str, Any]] = [
        {"name": pool.name, "backend": pool.backend, **pool.status()._asdict()}
        for pool in registry.pools()]
    return {"event": "pools", "pools": pools}


def answer(registry: PoolRegistry, data: Any) -> Dict[str, Any]:
    """The reply to one command; never raises for bad input."""
    if not isinstance(data, dict) or data.get("cmd") not in ("status", "scale"):
        return {"event": "error", "message": f"unknown command {data!r}: "
                                             "expected cmd 'status' or 'scale'"}
    if data["cmd"] == "status":
        return pools_message(registry)
    name, size = data.get("pool", "pool"), data.get("n")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        return {"event": "error", "message": f"scale needs n, a positive integer; got {size!r}"}
    try:
        registry.get(name).scale(int(size))
    except FiberError as exc:
        return {"event": "error", "message": str(exc)}
    return {"event": "scaled", "pool": name, "target": int(size)}


class ControlTarget:
    """Opens, routes and answers the control comms of one kernel."""

    def __init__(self, registry: PoolRegistry, live: LiveComms) -> None:
        self._registry = registry
        self._live = live

    def register(self, comm_manager: Any) -> None:
        comm_manager.register_target(TARGET, self._on_open)
        self._live.add_target(TARGET)

    def unregister(self, comm_manager: Any) -> None:
        comm_manager.unregister_target(TARGET, self._on_open)

    def _on_open(self, comm: Any, open_msg: dict) -> None:
        self._live.add(comm)
        comm.on_msg(lambda msg: comm.send(answer(self._registry, msg["content"]["data"])))
        comm.send(pools_message(self._registry))
