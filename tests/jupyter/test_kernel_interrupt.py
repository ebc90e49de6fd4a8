"""Specification: Jupyter's stop button during a blocking map cancels it, and the pool lives on."""

from __future__ import annotations

import re
import time

import pytest

from .kernel import WAIT_LIVE, send_comm_msg, start_kernel

# Starts a long map and blocks in get(); says "under way" from inside get() (through the
# core's waiting hook, run in the waiting thread) once two tasks are done, so the
# interrupt the test sends then lands where a user's would: in the wait, not before it.
BLOCKING_CELL = """
import threading, time, fiber_jupyter
from fiber_jupyter import results
under_way = threading.Event()
def _on_progress(event):
    if isinstance(event, fiber_jupyter.Progress) and event.done >= 2:
        under_way.set()
def _announce_once():
    if under_way.is_set() and not announced:
        announced.append(True)
        print("under way", flush=True)
announced = []
pool.events.subscribe(_on_progress)
running = pool.map_async(time.sleep, [0.05] * 400)
results.set_waiting_hook(_announce_once)
try:
    running.get()
finally:
    results.set_waiting_hook(None)
"""


@pytest.fixture
def kernel(tmp_path):
    started = start_kernel(tmp_path)
    yield started
    started.stop()


def _run_and_interrupt(kernel, code: str, timeout: float = 60.0) -> dict:
    """Run ``code``, interrupt the kernel once it prints "under way"; the error content."""
    client = kernel.client
    msg_id = client.execute(code, allow_stdin=False)
    deadline = time.monotonic() + timeout
    error = None
    while True:
        message = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.0))
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and "under way" in content["text"]:
            kernel.manager.interrupt_kernel()
        elif kind == "error":
            error = content
        elif kind == "status" and content["execution_state"] == "idle":
            return error


@pytest.mark.timeout(180)
def test_the_stop_button_cancels_a_blocking_map_and_the_pool_stays_usable(kernel):
    assert kernel.run(f"{WAIT_LIVE}\n%load_ext fiber_jupyter\n"
                      "w = get_ipython().run_line_magic('fiber_pool', '2')\n"
                      "_wait_live(pool, 2)").result == "True"
    error = _run_and_interrupt(kernel, BLOCKING_CELL)
    assert error is not None, "the interrupted cell must end with an error"
    assert error["ename"] == "TaskCancelled"
    assert re.fullmatch(r"cancelled map\(sleep\): \d+ of 400 tasks done, \d+ queued tasks "
                        r"dropped, \d+ running tasks interrupted", error["evalue"])
    after = kernel.run("print(pool.map(abs, [-1, -2, -3]), pool.status().lost)")
    assert after.stdout == "[1, 2, 3] 0\n"
    slider = kernel.run("print(w.slider.model_id)").stdout.strip()
    send_comm_msg(kernel.client, slider, {"method": "update", "state": {"value": 3},
                                          "buffer_paths": []})
    assert kernel.run("_wait_live(pool, 3)").result == "True", "the widget still scales the pool"
    kernel.run("%fiber_shutdown --all")
