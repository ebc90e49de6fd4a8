"""Specification of a worker process on its own (fiber_jupyter/worker.py)."""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator

import psutil
import pytest
import zmq

from fiber_jupyter import protocol, security
from fiber_jupyter.worker import MasterLink
from tests.conftest import wait_for


def _start_worker(address: str, token: str, *options: str,
                  launcher: tuple = ()) -> subprocess.Popen:
    """A worker as a pod runs one: credentials from the environment, no stdin pipe."""
    return subprocess.Popen(
        [*launcher, sys.executable, "-m", "fiber_jupyter.worker", "--address", address,
         "--worker-id", "w0", "--heartbeat-interval", "0.2", "--secret-from", "env:CREDENTIALS",
         *options], env={**os.environ, "CREDENTIALS": token}, stdin=subprocess.DEVNULL)


@dataclass
class Master:
    """The master's end a worker connects to: a CURVE-protected ROUTER on loopback."""

    context: zmq.Context
    guard: security.ConnectionGuard
    socket: zmq.Socket
    address: str
    token: str

    def wait_for_hello(self) -> protocol.Hello:
        """The worker's first message, once its CURVE handshake passed the guard."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.guard.socket, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(30_000))
            assert ready, "the worker never said hello"
            if self.guard.socket in ready:
                self.guard.handle_pending()
            if self.socket in ready:
                message, _ = protocol.decode(self.socket.recv_multipart()[1:])
                if isinstance(message, protocol.Hello):
                    return message

    def close(self) -> None:
        if not self.context.closed:
            self.guard.close()
            self.context.destroy(linger=0)


@pytest.fixture
def master() -> Iterator[Master]:
    context = zmq.Context()
    credentials = security.new_credentials(encrypted=True)
    guard = security.ConnectionGuard(context, credentials)
    router = context.socket(zmq.ROUTER)
    guard.protect(router)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    opened = Master(context, guard, router, f"tcp://127.0.0.1:{port}", credentials.token)
    yield opened
    opened.close()


def test_a_worker_without_a_pipe_exits_once_the_master_is_gone_for_its_timeout(master):
    worker = _start_worker(master.address, master.token, "--master-timeout", "1")
    try:
        assert master.wait_for_hello().worker_id == "w0"
        master.close()  # the master's end: every connection closes
        wait_for(lambda: worker.poll() is not None, timeout=30,
                 what="the worker to notice the master is gone and exit")
        assert worker.returncode == 0
    finally:
        worker.kill()
        worker.wait()


def test_a_worker_that_is_pid_1_of_its_container_exits_on_sigterm(master):
    """PID 1 does not die of SIGTERM by default: a deleted pod's worker would wait for
    the SIGKILL at the end of its grace period."""
    own_pid_namespace = ("unshare", "--user", "--map-root-user", "--pid", "--fork",
                         "--kill-child")
    launcher = _start_worker(master.address, master.token, launcher=own_pid_namespace)
    try:
        master.wait_for_hello()
        [worker] = psutil.Process(launcher.pid).children()
        os.kill(worker.pid, signal.SIGTERM)
        assert launcher.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        launcher.kill()
        launcher.wait()


def test_a_worker_without_a_pipe_knows_when_its_master_went_away():
    """MasterLink reads the socket monitor: up after the handshake, lost once down too long."""
    context = zmq.Context()
    master = context.socket(zmq.ROUTER)
    port = master.bind_to_random_port("tcp://127.0.0.1")
    dealer = context.socket(zmq.DEALER)
    link = MasterLink(dealer, heartbeat_interval=0.1, timeout=0.2)
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")
        wait_for(lambda: (link.update(), link.connected)[1], what="the handshake")
        assert not link.lost_for_good()
        master.close(linger=0)
        wait_for(lambda: (link.update(), link.lost_for_good())[1], timeout=30,
                 what="the master's absence to outlast the timeout")
    finally:
        link.close()
        dealer.close(linger=0)
        master.close(linger=0)
        context.term()
