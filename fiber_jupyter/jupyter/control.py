"""The kernel's control surface for front ends: the comm target ``fiber_jupyter.control``.

The JupyterLab side panel (and any client) opens a comm to this target. On
open, and then whenever something changes (at most PUSH_INTERVAL apart, and
at least every PUSH_PERIOD while it changes without events), the kernel
pushes every pool of this kernel, those of ``%fiber_pool`` and of ``Pool(...)``
alike::

    {"event": "pools", "pools": [{"name": "es", "backend": "local", "state": "running",
                                  "target": 8, "live": 8, ... PoolStatus fields,
                                  "adapt": [1, 8] while it adapts, None while manual,
                                  "workers": [["busy", 6], ["idle", 2]],
                                  "usage": {"cpu_percent": 187.0, "memory_bytes": 432013312,
                                            "reporting": 8, "text": "cpu 187 % · memory …",
                                            "by_state": {"busy": "cpu 95–99 % · memory …"},
                                            "heaviest": {"worker_id": "w3", ..., "text": …}
                                                        or None before any worker reported},
                                  "call": {"label": "map(fitness)", "done": 450, ...} or None,
                                  "log": ["worker w3 lost: exit -9 (SIGKILL); ..."]}]}

Commands are the comm's data; each gets one answer on the same comm::

    {"cmd": "status"}                          -> the "pools" message
    {"cmd": "scale", "pool": "es", "n": 32}    -> {"event": "scaled", "pool": "es", "target": 32}
    {"cmd": "adapt", "pool": "es", "min": 1, "max": 8}
                                 -> {"event": "adapted", "pool": "es", "adapt": [1, 8]}
    {"cmd": "timeline", "pool": "es", "width": 320}     (width in pixels: optional)
                  -> {"event": "timeline", "pool": "es", "svg": "<svg ...>"}, the last batches
    {"cmd": "shutdown", "pool": "es"}          -> {"event": "shutdown", "pool": "es"}, once stopped
    anything wrong                             -> {"event": "error", "message": "..."}

As ``pool.scale`` and ``pool.adapt`` do, "scale" sets the size by hand (and
ends adapting), "adapt" lets the pool size itself between min and max.

Who may send them: only a client that can reach the kernel's shell channel
with messages signed by the kernel's key, which Jupyter's server gives only to
the user's authenticated front end. The comms are routed like the widgets'
(``live.py``), so a command acts while a cell blocks; handlers never block.
"""

from __future__ import annotations

import collections
import logging
import numbers
import threading
import weakref
from typing import Any, Dict, List, Optional

from .. import live_pools
from ..errors import FiberError
from ..events import PoolEvent
from ..pool import Pool
from ..progress import counts_text
from ..status import PoolState, WorkerInfo
from ..timeline import WIDTH
from .live import LiveComms
from .pool_feed import PoolFeed
from .pool_widget import TIMELINE_SPANS, grid_state, state_runs
from .throttle import Throttle
from .usage_text import heaviest_text, range_text, summarize, usage_text

log = logging.getLogger(__name__)

TARGET = "fiber_jupyter.control"
COMMANDS = ("status", "scale", "adapt", "timeline", "shutdown")
PUSH_INTERVAL = 0.25
PUSH_PERIOD = 1.0
TIMELINE_WIDTHS = range(200, 4001)  # pixels


def find_pool(name: Any) -> Pool:
    """The running (not stopped) pool of this kernel called ``name``."""
    shown = visible_pools()
    for pool in shown:
        if pool.name == name:
            return pool
    known = ", ".join(pool.name for pool in shown) or "none"
    raise FiberError(f"no pool named {name!r} (this kernel's pools: {known})")


def visible_pools() -> List[Pool]:
    return [pool for pool in live_pools.pools()
            if pool.status().state != PoolState.STOPPED.value]


def usage_view(workers: List[WorkerInfo]) -> Dict[str, Any]:
    """Totals and the heaviest worker, in numbers and in the words the pool widget uses,
    and each worker state's range (``by_state``), for the hover text of the worker bar."""
    summary = summarize(workers)
    heaviest = summary.heaviest
    by_state: Dict[str, List[WorkerInfo]] = collections.defaultdict(list)
    for worker in workers:
        by_state[grid_state(worker)].append(worker)
    ranges = {state: range_text(members) for state, members in by_state.items()}
    return {"cpu_percent": summary.cpu_percent, "memory_bytes": summary.memory_bytes,
            "reporting": summary.reporting, "text": usage_text(summary),
            "by_state": {state: text for state, text in ranges.items() if text},
            "heaviest": None if heaviest is None else {
                "worker_id": heaviest.worker_id, "cpu_percent": heaviest.cpu_percent,
                "memory_bytes": heaviest.memory_bytes, "text": heaviest_text(heaviest)}}


def pool_view(pool: Pool, feed: Optional[PoolFeed]) -> Dict[str, Any]:
    call = feed.call if feed is not None else None
    status = pool.status()
    workers = pool.workers()
    return {"name": pool.name, "backend": pool.backend, **status._asdict(),
            "adapt": None if status.adapt is None else list(status.adapt),
            "workers": [[run.state, len(run.workers)] for run in state_runs(workers)],
            "usage": usage_view(workers),
            "call": None if call is None else {
                "label": call.label, "done": call.done, "total": call.total,
                "failed": call.failed, "retries": call.retries, "elapsed": call.elapsed,
                "rate": call.rate, "finished": call.finished, "text": counts_text(call)},
            "log": feed.log if feed is not None else []}


def check_command(data: Any) -> Optional[str]:
    """What is wrong with a command, or None (the pool checks that min <= max)."""
    if not isinstance(data, dict) or data.get("cmd") not in COMMANDS:
        return (f"unknown command {data!r}: expected cmd 'status', 'scale', 'adapt', "
                f"'timeline' or 'shutdown'")
    counts = {"scale": ("n",), "adapt": ("min", "max")}.get(data["cmd"], ())
    for field in counts:
        value = data.get(field)
        if not _is_count(value) or value < 1:
            return f"{data['cmd']} needs {field}, a positive integer; got {value!r}"
    width = data.get("width", TIMELINE_WIDTHS[0])
    if data["cmd"] == "timeline" and not (_is_count(width) and width in TIMELINE_WIDTHS):
        return (f"timeline width must be a whole number of pixels from {TIMELINE_WIDTHS[0]} "
                f"to {TIMELINE_WIDTHS[-1]}; got {width!r}")
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def error(message: str) -> Dict[str, Any]:
    return {"event": "error", "message": message}


class ControlTarget:
    """Opens, routes and answers the control comms of one kernel, and pushes to them."""

    def __init__(self, live: LiveComms) -> None:
        self._live = live
        self._lock = threading.Lock()
        self._comms: Dict[str, Any] = {}  # comm id -> open comm
        self._sent: Dict[str, Any] = {}  # comm id -> the last "pools" message it got
        # Weak: following a pool must not keep it (and its workers) alive.
        self._feeds: "weakref.WeakKeyDictionary[Pool, PoolFeed]" = weakref.WeakKeyDictionary()
        self._pusher: Optional[Throttle] = None

    def register(self, comm_manager: Any) -> None:
        comm_manager.register_target(TARGET, self._on_open)
        self._live.add_target(TARGET)
        live_pools.on_created(self._follow)
        for pool in visible_pools():
            self._follow(pool)
        self._pusher = Throttle("control", self._push, PUSH_INTERVAL, PUSH_PERIOD)

    def unregister(self, comm_manager: Any) -> None:
        comm_manager.unregister_target(TARGET, self._on_open)
        live_pools.remove_observer(self._follow)
        if self._pusher is not None:
            self._pusher.stop()
            self._pusher.join()
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.close()

    def answer(self, data: Any) -> Dict[str, Any]:
        """The reply to one command; never raises. A shutdown returns once the pool stopped."""
        problem = check_command(data)
        if problem is not None:
            return error(problem)
        if data["cmd"] == "status":
            return self.pools_message()
        try:
            pool = find_pool(data.get("pool", "pool"))
            if data["cmd"] == "scale":
                pool.scale(int(data["n"]))
                return {"event": "scaled", "pool": pool.name, "target": int(data["n"])}
            if data["cmd"] == "adapt":
                bounds = [int(data["min"]), int(data["max"])]
                pool.adapt(*bounds)
                return {"event": "adapted", "pool": pool.name, "adapt": bounds}
            if data["cmd"] == "timeline":
                timeline = pool.timeline().latest(TIMELINE_SPANS)
                return {"event": "timeline", "pool": pool.name,
                        "svg": timeline.to_svg(width=int(data.get("width", WIDTH)))}
        except FiberError as exc:
            return error(str(exc))
        pool.terminate()
        pool.join()
        return {"event": "shutdown", "pool": pool.name}

    def pools_message(self) -> Dict[str, Any]:
        with self._lock:
            feeds = dict(self._feeds)
        return {"event": "pools",
                "pools": [pool_view(pool, feeds.get(pool)) for pool in visible_pools()]}

    # Comms -----------------------------------------------------------------

    def _on_open(self, comm: Any, open_msg: dict) -> None:
        self._live.add(comm)
        with self._lock:
            self._comms[comm.comm_id] = comm
        comm.on_msg(lambda msg: self._on_command(comm, msg["content"]["data"]))
        comm.on_close(lambda msg: self._forget(comm.comm_id))
        self._send_pools(comm)

    def _on_command(self, comm: Any, data: Any) -> None:
        if isinstance(data, dict) and data.get("cmd") == "shutdown":  # joins: off this thread
            threading.Thread(target=self._reply, args=(comm, data), name="fiber-shutdown",
                             daemon=True).start()
        else:
            self._reply(comm, data)

    def _reply(self, comm: Any, data: Any) -> None:
        comm.send(self.answer(data))
        if self._pusher is not None:
            self._pusher.poke()

    def _forget(self, comm_id: str) -> None:
        with self._lock:
            self._comms.pop(comm_id, None)
            self._sent.pop(comm_id, None)

    # Pushes ----------------------------------------------------------------

    def _follow(self, pool: Pool) -> None:
        feed = PoolFeed(pool, self._on_pool_event)
        with self._lock:
            self._feeds[pool] = feed
        if self._pusher is not None:
            self._pusher.poke()

    def _on_pool_event(self, event: PoolEvent) -> None:
        if self._pusher is not None:
            self._pusher.poke()

    def _push(self) -> None:
        """Send the pools to every open comm whose last message differs."""
        with self._lock:
            comms = list(self._comms.values())
        if comms:
            message = self.pools_message()
            for comm in comms:
                self._send_pools(comm, message)

    def _send_pools(self, comm: Any, message: Optional[Dict[str, Any]] = None) -> None:
        message = message or self.pools_message()
        with self._lock:
            if self._sent.get(comm.comm_id) == message:
                return
            self._sent[comm.comm_id] = message
        try:
            comm.send(message)
        except Exception:  # a comm closed meanwhile; its close callback forgets it
            log.debug("could not push to comm %s", comm.comm_id, exc_info=True)
