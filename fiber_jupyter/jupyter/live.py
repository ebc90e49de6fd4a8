"""Keeps fiber's own widgets and control comm answering while a cell blocks.

A kernel runs cells and handles widget messages on one main thread, so a
slider moved during a ten-minute ``pool.map`` would act when the map ends.
Which route works depends on the kernel:

- **ipykernel >= 7.4** (subshells and a per-comm routing hook): the
  extension owns one private subshell, a thread of the kernel, and routes
  the messages of its own comms there. Their handlers run while the main
  thread is blocked. IPython's pre/post_execute hooks are skipped for them:
  those belong to cells, and matplotlib's, for one, would flush figures
  concurrently with the running cell.
- **ipykernel 6**: messages are read on the main thread between cells. The
  pool's waiting hook (:func:`fiber_jupyter.results.set_waiting_hook`) lets the
  main thread, while it waits for a result, read the shell socket, handle
  the messages of fiber's comms at once and queue everything else, in
  order, for after the cell.
- **ipykernel 7.0-7.3**: neither. JupyterLab >= 4.4 sends comm messages to a
  subshell of its own ("commsOverSubshells", on by default), which is live
  there; other front ends see the widgets act when the cell ends.

Handlers only hand a command to the pool (``pool.scale`` is a queue put), so
they are safe on any thread. Both routes use private parts of ipykernel,
each feature-detected: a kernel without them gets the next route, never an
error.
"""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import threading
from typing import Any, Optional, Set

from .. import results

log = logging.getLogger(__name__)

SUBSHELL_TIMEOUT = 10.0


class Route(enum.Enum):
    SUBSHELL = "private subshell"
    WAITING_HOOK = "handled while a call waits"
    NONE = "after the cell"


def _handle_without_cell_hooks(comm: Any, msg: dict) -> None:
    """``BaseComm.handle_msg`` without the pre/post_execute events it fires for cells."""
    callback = comm._msg_callback
    if callback is not None:
        callback(msg)


class LiveComms:
    """Routes chosen comms of one kernel so that they are handled during a blocked cell."""

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel
        self.route = _route_for(kernel)
        self._subshell_id: Optional[str] = None
        self._lock = threading.Lock()
        self._pump: Optional[_ShellPump] = None
        if self.route is Route.WAITING_HOOK:
            self._pump = _ShellPump(kernel)
            results.set_waiting_hook(self._pump)
        log.debug("fiber comms are handled: %s", self.route.value)

    def add(self, comm: Any) -> bool:
        """Make ``comm``'s messages reach its handler while a cell blocks; False if impossible."""
        comm.handle_msg = lambda msg, comm=comm: _handle_without_cell_hooks(comm, msg)
        if self.route is Route.SUBSHELL:
            subshell_id = self._subshell()
            comm._reply_subshell_for = lambda data, default: subshell_id
            return True
        if self._pump is not None:
            self._pump.comm_ids.add(comm.comm_id)
            return True
        return False

    def add_target(self, target_name: str) -> None:
        """Also handle comm_open for ``target_name`` while blocked (ipykernel 6 route)."""
        if self._pump is not None:
            self._pump.targets.add(target_name)

    def close(self) -> None:
        """Stop handling messages early; the subshell stays until the kernel ends."""
        if self._pump is not None:
            results.set_waiting_hook(None)
            self._pump = None

    def _subshell(self) -> str:
        with self._lock:
            if self._subshell_id is None:
                self._subshell_id = _create_subshell(self._kernel)
            return self._subshell_id


def _route_for(kernel: Any) -> Route:
    if kernel is None:
        return Route.NONE
    if getattr(kernel, "shell_channel_thread", None) is not None:
        from ipykernel.comm.comm import BaseComm

        return Route.SUBSHELL if hasattr(BaseComm, "_reply_subshell_for") else Route.NONE
    if hasattr(kernel, "msg_queue") and getattr(kernel, "shell_stream", None) is not None:
        return Route.WAITING_HOOK
    return Route.NONE


def _create_subshell(kernel: Any) -> str:
    """A new subshell of ``kernel``; the manager must be called on the shell-channel thread."""
    channel = kernel.shell_channel_thread
    created: concurrent.futures.Future = concurrent.futures.Future()

    def create() -> None:
        try:
            created.set_result(channel.manager._create_subshell())
        except BaseException as exc:
            created.set_exception(exc)

    channel.io_loop.add_callback(create)
    return created.result(timeout=SUBSHELL_TIMEOUT)


class _ShellPump:
    """The waiting hook of ipykernel 6: serves fiber's comms from inside a blocked cell.

    It runs on the kernel's main thread only, the one that owns the shell
    socket and the queue of messages waiting for the cell to end. Each call
    moves the messages that arrived onto that queue, handles those addressed
    to fiber's comms (signature checked by the session, as the kernel does),
    and puts the rest back in their order.
    """

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel
        self.comm_ids: Set[str] = set()
        self.targets: Set[str] = set()

    def __call__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._kernel.shell_stream.flush()  # runs the kernel's receive callback: queues them
        queue = self._kernel.msg_queue
        waiting = []
        while queue.qsize():
            waiting.append(queue.get_nowait())
        for item in waiting:
            if not self._serve(item):
                queue.put_nowait(item)

    def _serve(self, item: tuple) -> bool:
        """Handle a queued message if it is fiber's; True if it was."""
        _, dispatch, args = item
        if dispatch != self._kernel.dispatch_shell or len(args) != 1:
            return False
        session = self._kernel.session
        idents, frames = session.feed_identities(args[0], copy=False)
        header = session.unpack(_bytes(frames[1]))
        kind = header.get("msg_type")
        if kind not in ("comm_msg", "comm_open"):
            return False
        content = session.unpack(_bytes(frames[4]))
        if not (content.get("comm_id") in self.comm_ids and kind == "comm_msg"
                or content.get("target_name") in self.targets and kind == "comm_open"):
            return False
        message = session.deserialize(frames, content=True, copy=False)
        handler = getattr(self._kernel.comm_manager, kind)
        handler(self._kernel.shell_stream, idents, message)
        return True


def _bytes(frame: Any) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else frame
