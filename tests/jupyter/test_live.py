"""Specification: while a cell blocks in ``pool.map``, fiber's widgets stay live.

Each test runs against a real kernel of every ipykernel line we support
(the current 7.x, and 6.x from the ``.venv-ipykernel6`` that ``make test``
builds). A cell blocks in a map whose tasks wait for a gate file the test
creates only after it saw what it expects; so whatever the test sees before
opening the gate happened while the map was running.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from .kernel import (WAIT_LIVE, IOPubLog, front_end_subshell, open_comm, send_comm_msg, shown,
                     start_kernel, worker_processes)

ROOT = Path(__file__).resolve().parents[2]
IPYKERNEL6_PYTHON = ROOT / ".venv-ipykernel6" / "bin" / "python"

# Tasks for the kernel: each says it started (a file in `started`), then waits
# for the gate; ``die_once`` first kills its worker, once.
TASKS = """
import os, signal, time
def gated(item, started, gate):
    open(os.path.join(started, str(item)), "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
    return item
def die_once(item, started, gate):
    marker = os.path.join(started, "died")
    if item == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return gated(item, started, gate)
"""


def _python(line: str) -> str:
    if line == "ipykernel7":
        return sys.executable
    if not IPYKERNEL6_PYTHON.exists():
        pytest.fail(f"{IPYKERNEL6_PYTHON} is missing: `make test` builds it (a venv with "
                    "ipykernel 6.29 and this package)")
    return str(IPYKERNEL6_PYTHON)


@pytest.fixture(scope="module", params=["ipykernel7", "ipykernel6"])
def kernel(request, tmp_path_factory):
    running = start_kernel(tmp_path_factory.mktemp("kernel"), python=_python(request.param))
    try:
        assert running.run(f"%load_ext fiber_jupyter\n{WAIT_LIVE}\n{TASKS}") == shown()
        yield running
    finally:
        running.stop()


@pytest.fixture
def shell(kernel, tmp_path):
    """A pool of one worker shown as a widget `w`; at the end no pool and no worker."""
    started = kernel.run("w = get_ipython().run_line_magic('fiber_pool', '1')\n"
                         "_wait_live(pool, 1)")
    assert started.result == "True"
    yield kernel
    assert kernel.run("%fiber_shutdown --all").stderr == ""
    assert worker_processes(kernel.tag) == []


class BlockedMap:
    """A cell blocked in ``pool.map(task, range(items))`` until the test opens the gate."""

    def __init__(self, kernel, tmp_path: Path, task: str, items: int) -> None:
        self.kernel = kernel
        self.started = tmp_path / "started"
        self.started.mkdir()
        self.gate = tmp_path / "gate"
        self.log = IOPubLog(kernel.client)
        self.msg_id = kernel.client.execute(
            f"order = []\n"
            f"results = pool.map(functools.partial({task}, started={str(self.started)!r}, "
            f"gate={str(self.gate)!r}), range({items}), chunksize=1)\n"
            f"order.append('map')", allow_stdin=False)

    def wait_running(self, items: int = 1) -> None:
        self.log.read_until(lambda: len(os.listdir(self.started)) >= items, 60,
                            f"{items} tasks of the map to start")

    def release(self) -> None:
        self.gate.touch()
        self.log.read_until(lambda: self.log.finished(self.msg_id), 60, "the map to finish")


@pytest.fixture
def blocked(shell, tmp_path):
    shell.run("import functools")
    maps = []

    def start(task: str = "gated", items: int = 2) -> BlockedMap:
        maps.append(BlockedMap(shell, tmp_path, task, items))
        return maps[-1]

    yield start
    for blocked_map in maps:
        blocked_map.gate.touch()
        blocked_map.log.read_until(lambda m=blocked_map: m.log.finished(m.msg_id), 60,
                                   "the map to finish")


def test_the_slider_scales_the_pool_before_the_blocking_map_returns(shell, blocked):
    slider = shell.run("print(w.slider.model_id)").stdout.strip()
    running = blocked()
    running.wait_running()
    send_comm_msg(shell.client, slider, {"method": "update", "state": {"value": 3},
                                         "buffer_paths": []})
    later = shell.client.execute("order.append('next cell')", allow_stdin=False)
    running.log.read_until(lambda: len(worker_processes(shell.tag)) == 3, 60,
                           "3 workers while the map blocks")
    assert not running.log.finished(running.msg_id)
    running.release()
    running.log.read_until(lambda: running.log.finished(later), 30, "the next cell")
    assert shell.run("order, results, pool.status().target").result == (
        "(['map', 'next cell'], [0, 1], 3)")


def test_the_control_comm_scales_the_pool_before_the_blocking_map_returns(shell, blocked):
    comm_id = uuid.uuid4().hex
    log = IOPubLog(shell.client)
    open_comm(shell.client, "fiber_jupyter.control", comm_id)
    log.read_until(lambda: any(d.get("event") == "pools" for d in log.comm_data()), 30,
                   "the pools the control comm sends when it opens")
    running = blocked()
    running.wait_running()
    send_comm_msg(shell.client, comm_id, {"cmd": "scale", "pool": "pool", "n": 2})
    scaled = {"event": "scaled", "pool": "pool", "target": 2}
    running.log.read_until(lambda: scaled in running.log.comm_data(), 30, "the reply")
    running.log.read_until(lambda: len(worker_processes(shell.tag)) == 2, 60,
                           "2 workers while the map blocks")
    assert not running.log.finished(running.msg_id)


def test_a_panel_can_open_the_control_comm_while_a_map_blocks(shell, blocked):
    """As JupyterLab opens comms: on a subshell of its own where the kernel has subshells."""
    subshell = front_end_subshell(shell.client)
    running = blocked()
    running.wait_running()
    comm_id = uuid.uuid4().hex
    open_comm(shell.client, "fiber_jupyter.control", comm_id, subshell)
    # Once this comm got its pools, the kernel knows it; commands on the main channel
    # then reach it (the comms of earlier tests get pushes too).
    running.log.read_until(lambda: any(d.get("event") == "pools"
                                       for d in running.log.comm_data(comm_id)), 30,
                           "the pools the control comm sends when it opens")
    send_comm_msg(shell.client, comm_id, {"cmd": "scale", "pool": "pool", "n": 2})
    running.log.read_until(lambda: len(worker_processes(shell.tag)) == 2, 60,
                           "2 workers while the map blocks")
    assert not running.log.finished(running.msg_id)


def test_a_crash_during_a_blocking_map_shows_in_its_cell_and_in_the_pool_widget(shell, blocked):
    event_log = shell.run("print(w.event_log.model_id)").stdout.strip()
    running = blocked("die_once", items=2)
    running.wait_running(items=2)
    running.log.read_until(lambda: "task 0 re-run on" in running.log.widget_texts(), 60,
                           "the crash and its recovery shown while the map blocks")
    texts = running.log.widget_texts()
    assert re.search(r"worker w\d+ lost: exit -9 \(SIGKILL\); \d tasks re-queued", texts)
    assert "replacement worker" in texts
    progress_views = running.log.displayed_in(running.msg_id)
    assert progress_views, "the progress display belongs to the cell that runs the map"
    assert "application/vnd.jupyter.widget-view+json" in progress_views[0]["content"]["data"]
    running.log.read_until(lambda: any(comm_id == event_log and "lost: exit -9 (SIGKILL)" in text
                                       for comm_id, text in running.log.widget_updates()), 30,
                           "the pool widget's event log to show the loss")
    assert not running.log.finished(running.msg_id)
    running.release()
    running.log.read_until(lambda: "2 tasks done in" in running.log.widget_texts(), 30,
                           "the summary line")
    assert "2 retried" in running.log.widget_texts()  # both tasks the lost worker held
