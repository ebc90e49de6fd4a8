"""Workers as local subprocesses: ``python -m fiber_jupyter.worker``.

Each worker runs in its own session (so Jupyter's interrupt, which signals the
kernel's process group, never reaches it) and gets the pool secret on its
stdin, which stays open: when the master dies for any reason the pipe closes
and the worker exits, so no worker outlives its notebook.

One thread per backend launches processes and reaps them. It waits on a pidfd
per process plus a wakeup pipe, so exits are seen the moment they happen,
without polling and without a thread per worker.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Deque, Dict, Optional, Sequence

from .base import Backend, ExitCallback, WaitingCallback, WorkerExit, WorkerLaunch

log = logging.getLogger(__name__)


def worker_command(launch: WorkerLaunch) -> list:
    """The command line of a local worker (the secret is not on it)."""
    return [
        sys.executable, "-m", "fiber_jupyter.worker",
        "--address", launch.address,
        "--worker-id", launch.worker_id,
        "--heartbeat-interval", repr(launch.heartbeat_interval),
        "--secret-from", "stdin",
    ]


def worker_environment() -> dict:
    """The master's environment, with its ``sys.path`` so workers import the same modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LocalBackend(Backend):
    """Runs workers as child processes of the notebook's kernel."""

    name = "local"

    def __init__(self, on_exit: ExitCallback, on_waiting: Optional[WaitingCallback] = None,
                 pool_name: str = "pool") -> None:
        super().__init__(on_exit, on_waiting, pool_name)
        self._lock = threading.Lock()
        # worker id -> its process, from launch until reaped, e.g. {"w3": <Popen>}
        self._processes: Dict[str, subprocess.Popen] = {}
        self._queued: Deque[WorkerLaunch] = deque()
        self._closing = False
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_write, False)
        self._thread = threading.Thread(target=self._run, name="fiber-local-backend", daemon=True)
        self._thread.start()

    @property
    def listen_host(self) -> str:
        return "127.0.0.1"

    def natural_size(self) -> int:
        return os.cpu_count() or 1

    def start(self, launches: Sequence[WorkerLaunch]) -> None:
        with self._lock:
            self._queued.extend(launches)
        self._wake()

    def stop(self, worker_id: str) -> None:
        with self._lock:
            process = self._processes.get(worker_id)
            if process is not None:
                _kill_group(process)
                return
            unstarted = [launch for launch in self._queued if launch.worker_id == worker_id]
            for launch in unstarted:
                self._queued.remove(launch)
        for launch in unstarted:
            self._on_exit(WorkerExit(launch.worker_id, None, "stopped before it started"))

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            for process in self._processes.values():
                _kill_group(process)
        self._wake()
        self._thread.join()
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)

    def _wake(self) -> None:
        try:
            os.write(self._wakeup_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the thread is already due to wake

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wakeup_read, select.POLLIN)
        pidfds: Dict[int, str] = {}
        while True:
            for fd, _ in poller.poll():
                if fd == self._wakeup_read:
                    os.read(self._wakeup_read, 4096)
                    self._launch_queued(poller, pidfds)
                else:
                    self._reap(poller, pidfds, fd)
            with self._lock:
                if self._closing and not self._processes and not self._queued:
                    return

    def _launch_queued(self, poller: select.poll, pidfds: Dict[int, str]) -> None:
        while True:
            with self._lock:
                if not self._queued:
                    return
                launch = self._queued.popleft()
                if self._closing:
                    failure = WorkerExit(launch.worker_id, None, "pool closed before it started")
                else:
                    failure = self._spawn(launch, poller, pidfds)
            if failure is not None:
                self._on_exit(failure)

    def _spawn(self, launch: WorkerLaunch, poller: select.poll, pidfds: Dict[int, str]):
        """Start one worker; returns its WorkerExit if it could not start."""
        try:
            process = subprocess.Popen(
                worker_command(launch), stdin=subprocess.PIPE, env=worker_environment(),
                start_new_session=True,
            )
        except OSError as exc:
            return WorkerExit(launch.worker_id, None, f"could not start: {exc}")
        self._processes[launch.worker_id] = process
        pidfd = os.pidfd_open(process.pid)
        pidfds[pidfd] = launch.worker_id
        poller.register(pidfd, select.POLLIN)
        try:
            process.stdin.write(launch.secret.encode() + b"\n")
            process.stdin.flush()
        except BrokenPipeError:
            log.debug("worker %s exited before reading its secret", launch.worker_id)
        return None

    def _reap(self, poller: select.poll, pidfds: Dict[int, str], pidfd: int) -> None:
        worker_id = pidfds.pop(pidfd)
        poller.unregister(pidfd)
        os.close(pidfd)
        with self._lock:
            process = self._processes.pop(worker_id)
            code = process.wait()
        process.stdin.close()
        self._on_exit(WorkerExit(worker_id, code))


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the worker and anything it started (its own process group)."""
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            log.debug("worker process %d already gone", process.pid)
