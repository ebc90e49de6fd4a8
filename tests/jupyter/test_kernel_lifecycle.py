"""Specification: the extension loads from IPython config, and a kernel restart orphans nothing.

Each test starts its own kernel: these are about how a kernel begins and ends.
"""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from ..conftest import wait_for
from .kernel import WAIT_LIVE, IOPubLog, shown, start_kernel, worker_processes

# A cell that blocks in a long map (2000 tasks of 50 ms on 2 workers) and says, from
# inside its wait (the core's waiting hook runs in the waiting thread), once the map
# is under way: a restart then lands on a kernel whose workers are busy with it.
MAP_UNDER_WAY = """
import time
from fiber_jupyter import results
announced = []
def _announce_once():
    if pool.status().tasks_done >= 2 and not announced:
        announced.append(True)
        print("under way", flush=True)
results.set_waiting_hook(_announce_once)
pool.map(time.sleep, [0.05] * 2000)
"""


def test_importing_fiber_jupyter_does_not_import_ipython():
    check = "import sys, fiber_jupyter; print(sorted(m for m in sys.modules if 'IPython' in m))"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          check=True).stdout == "[]\n"


def test_the_extension_loads_from_ipython_config(tmp_path):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        'c.InteractiveShellApp.extensions = ["fiber_jupyter"]\n')
    kernel = start_kernel(tmp_path)
    try:
        assert kernel.run("%fiber_status") == shown(
            result="no pools in this kernel; start one with %fiber_pool")
    finally:
        kernel.stop()


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("now, exit_log", [
    (False, "shut down pool 'pool' at kernel exit\n"),  # asked to exit: the atexit hook runs
    (True, ""),  # killed: the workers see their stdin close
], ids=["graceful", "killed"])
def test_a_kernel_restart_leaves_no_worker_of_the_old_kernel(tmp_path, now, exit_log):
    log_file = tmp_path / "exit.log"
    kernel = start_kernel(tmp_path)
    try:
        setup = (f"import logging\nhandler = logging.FileHandler({str(log_file)!r})\n"
                 "logging.getLogger('fiber_jupyter').addHandler(handler)\n"
                 "logging.getLogger('fiber_jupyter').setLevel(logging.INFO)\n"
                 f"{WAIT_LIVE}\n%load_ext fiber_jupyter\n%fiber_pool 2\n_wait_live(pool, 2)")
        assert kernel.run(setup).result == "True"
        old_kernel = kernel.pid
        workers = worker_processes(kernel.tag)
        assert [worker.ppid() for worker in workers] == [old_kernel, old_kernel]

        kernel.manager.restart_kernel(now=now)
        wait_for(lambda: all(_gone(worker) for worker in workers), timeout=30,
                 what="the old kernel's workers to exit")
        assert kernel.pid != old_kernel
        assert log_file.read_text() == exit_log
    finally:
        kernel.stop()


def _says(log: IOPubLog, msg_id: str, text: str) -> bool:
    return any(m["msg_type"] == "stream" and text in m["content"]["text"]
               and m["parent_header"].get("msg_id") == msg_id for m in log.messages)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("now", [False, True], ids=["graceful", "killed"])
def test_a_kernel_restarted_mid_map_leaves_no_worker_and_the_new_kernel_maps(tmp_path, now):
    kernel = start_kernel(tmp_path)
    try:
        start = f"{WAIT_LIVE}\n%load_ext fiber_jupyter\n%fiber_pool 2\n_wait_live(pool, 2)"
        assert kernel.run(start).result == "True"
        old_kernel = kernel.pid
        workers = worker_processes(kernel.tag)
        log = IOPubLog(kernel.client)
        running = kernel.client.execute(MAP_UNDER_WAY, allow_stdin=False)
        log.read_until(lambda: _says(log, running, "under way"), 60, "the map to be under way")
        assert all(not _gone(worker) for worker in workers)

        kernel.manager.restart_kernel(now=now)
        wait_for(lambda: all(_gone(worker) for worker in workers), timeout=30,
                 what="the old kernel's workers to exit")
        assert kernel.pid != old_kernel
        kernel.client.wait_for_ready(timeout=60)
        again = kernel.run("%load_ext fiber_jupyter\n%fiber_pool 2\n"
                           "print(pool.map(abs, [-1, -2, -3]))")
        assert again == shown("started pool 'pool' (local, 2 workers); bound to `pool`\n"
                              "[1, 2, 3]\n")
        assert [worker.ppid() for worker in worker_processes(kernel.tag)] == [kernel.pid] * 2
    finally:
        kernel.stop()
