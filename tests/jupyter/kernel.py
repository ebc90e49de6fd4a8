"""A real ipykernel for tests: start it, run code in it as a notebook would, find its workers.

``execute`` sends one execute request and collects what the notebook would
show for it: the IOPub messages whose parent is that request, up to the
kernel's "idle" status, and the execute reply. Every wait has a deadline.

Each kernel gets a tag in its environment, which its workers inherit, so the
tests find a kernel's workers even after the kernel died and they were
reparented to init.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import psutil
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.kernelspec import KernelSpecManager

TAG_VARIABLE = "FIBER_JUPYTER_TEST_KERNEL"
KERNEL_NAME = "fiber-jupyter-test"
START_TIMEOUT = 60.0

# Code for the kernel: ``_wait_live(pool, n)`` is True once ``n`` workers are
# live, waiting on the pool's Scaled events. The status is checked after
# subscribing, so the event cannot slip by between the check and the wait.
WAIT_LIVE = """
def _wait_live(pool, count, timeout=60):
    import threading
    import fiber_jupyter
    reached = threading.Event()
    def on_event(event):
        if isinstance(event, fiber_jupyter.Scaled) and event.live == count:
            reached.set()
    pool.events.subscribe(on_event)
    try:
        return pool.status().live == count or reached.wait(timeout)
    finally:
        pool.events.unsubscribe(on_event)
"""


class Execution(NamedTuple):
    """What one execution showed; empty strings where it showed nothing."""

    stdout: str
    stderr: str
    result: str  # text/plain of the execute_result
    displayed: str  # text/plain of display_data messages, so nothing shown goes unchecked
    error: Optional[Tuple[str, str]]  # (ename, evalue) when the execution failed
    tracebacks: List[List[str]]  # of IOPub "error" messages (a UsageError sends none)
    page: str  # pager text from the reply's payload, where ``%magic?`` help goes


def shown(stdout: str = "", result: str = "") -> Execution:
    """What a cell that succeeded shows: printed text and its result, nothing else."""
    return Execution(stdout, "", result, "", None, [], "")


def usage_error(message: str) -> Execution:
    """What a cell shows for a UsageError: one line on stderr, no traceback, no output."""
    return Execution("", f"UsageError: {message}\n", "", "", ("UsageError", message), [], "")


def execute(client: BlockingKernelClient, code: str, timeout: float = 60.0) -> Execution:
    """Run ``code``; raise TimeoutError if the kernel has not finished within ``timeout``."""
    deadline = time.monotonic() + timeout
    msg_id = client.execute(code, allow_stdin=False)
    streams: Dict[str, str] = {"stdout": "", "stderr": ""}
    result = displayed = ""
    tracebacks: List[List[str]] = []
    while True:
        message = _next(client.get_iopub_msg, msg_id, deadline, code)
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            streams[content["name"]] += content["text"]
        elif kind == "execute_result":
            result = content["data"].get("text/plain", "")
        elif kind == "display_data":
            displayed += content["data"].get("text/plain", "")
        elif kind == "error":
            tracebacks.append(content["traceback"])
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = _next(client.get_shell_msg, msg_id, deadline, code)["content"]
    error = (reply["ename"], reply["evalue"]) if reply["status"] == "error" else None
    page = "".join(item["data"].get("text/plain", "") for item in reply.get("payload", [])
                   if item.get("source") == "page")
    return Execution(streams["stdout"], streams["stderr"], result, displayed, error, tracebacks,
                     page)


def _next(receive, msg_id: str, deadline: float, code: str) -> dict:
    """The next message answering ``msg_id``, skipping those of earlier requests."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            message = receive(timeout=max(remaining, 0.0))
        except queue.Empty:
            raise TimeoutError(f"the kernel did not finish {code!r} in time") from None
        if message["parent_header"].get("msg_id") == msg_id:
            return message


@dataclass
class Kernel:
    """A running kernel, the client talking to it, and the tag its workers carry."""

    manager: KernelManager
    client: BlockingKernelClient
    tag: str

    def run(self, code: str, timeout: float = 60.0) -> Execution:
        return execute(self.client, code, timeout)

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def stop(self) -> None:
        """Shut the kernel down as Jupyter does: ask, and kill only if it does not exit."""
        self.client.stop_channels()
        self.manager.shutdown_kernel()


def start_kernel(directory: Path, env: Optional[Mapping[str, str]] = None,
                 python: str = sys.executable) -> Kernel:
    """Start an ipykernel of ``python`` on 127.0.0.1, with its own IPython directory.

    The kernel spec is written here, so the kernel runs the interpreter asked
    for (by default the one running the tests), whatever "python3" kernel is
    installed.
    """
    specs = directory / "kernels"
    write_kernel_spec(specs / KERNEL_NAME)
    spec_file = specs / KERNEL_NAME / "kernel.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "argv": [python, *spec["argv"][1:]]}))
    manager = KernelManager(kernel_name=KERNEL_NAME, transport="tcp", ip="127.0.0.1",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
    tag = uuid.uuid4().hex
    manager.start_kernel(env={**os.environ, "IPYTHONDIR": str(directory / "ipython"),
                              TAG_VARIABLE: tag, **(env or {})})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=START_TIMEOUT)
    except RuntimeError:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        raise
    return Kernel(manager, client, tag)


def worker_processes(tag: str) -> List[psutil.Process]:
    """Live (not zombie) worker processes started by the kernel tagged ``tag``."""
    found = []
    for process in psutil.process_iter():
        try:
            if ("fiber_jupyter.worker" in " ".join(process.cmdline())
                    and process.environ().get(TAG_VARIABLE) == tag
                    and process.status() != psutil.STATUS_ZOMBIE):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@dataclass
class IOPubLog:
    """Every IOPub message of a kernel, read while a test waits for something to happen.

    For cells that block: the test sends an execute request, then reads
    IOPub here until the condition it expects holds (or fails at a deadline).
    """

    client: BlockingKernelClient
    messages: List[dict] = field(default_factory=list)

    def read_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Read messages until ``condition()`` is true; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            try:
                self.messages.append(self.client.get_iopub_msg(timeout=0.05))
            except queue.Empty:
                continue

    def finished(self, msg_id: str) -> bool:
        """Whether the kernel went idle after the request ``msg_id``."""
        return any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                   and m["parent_header"].get("msg_id") == msg_id for m in self.messages)

    def comm_data(self, comm_id: Optional[str] = None) -> List[dict]:
        """The data of every comm_msg the kernel sent (on ``comm_id`` only, if given), oldest
        first. The kernel pushes to every open control comm, so waiting for a new one's
        first message needs its id."""
        return [m["content"]["data"] for m in self.messages if m["msg_type"] == "comm_msg"
                and comm_id in (None, m["content"]["comm_id"])]

    def widget_updates(self) -> List[Tuple[str, str]]:
        """(comm id, text) for every string value the kernel sent to a widget."""
        return [(m["content"]["comm_id"], value) for m in self.messages
                if m["msg_type"] == "comm_msg"
                for value in m["content"]["data"].get("state", {}).values()
                if isinstance(value, str)]

    def widget_texts(self) -> str:
        """Every string value the kernel sent to a widget, joined: what the views showed."""
        return "\n".join(text for _, text in self.widget_updates())

    def displayed_in(self, msg_id: str) -> List[dict]:
        """display_data messages that the front end shows in the output of cell ``msg_id``."""
        return [m for m in self.messages if m["msg_type"] == "display_data"
                and m["parent_header"].get("msg_id") == msg_id]


def send_comm_msg(client: BlockingKernelClient, comm_id: str, data: dict) -> None:
    """Send what a front end sends for a widget change or a panel command."""
    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))


def open_comm(client: BlockingKernelClient, target: str, comm_id: str,
              subshell_id: Optional[str] = None) -> None:
    """Open a comm; with ``subshell_id``, on that subshell, as JupyterLab >= 4.4 does."""
    message = client.session.msg("comm_open", {"comm_id": comm_id, "target_name": target,
                                               "data": {}})
    if subshell_id is not None:
        message["header"]["subshell_id"] = subshell_id
    client.shell_channel.send(message)


def front_end_subshell(client: BlockingKernelClient, timeout: float = 30.0) -> Optional[str]:
    """A subshell created as JupyterLab creates its own; None if the kernel has none (6.x)."""
    info = client.kernel_info(reply=True, timeout=timeout)["content"]
    if "kernel subshells" not in info.get("supported_features", []):
        return None
    request = client.session.msg("create_subshell_request", {})
    client.control_channel.send(request)
    deadline = time.monotonic() + timeout
    while True:
        reply = _next(client.get_control_msg, request["header"]["msg_id"], deadline,
                      "create_subshell_request")
        return reply["content"]["subshell_id"]
