"""Specification of a worker process on its own (fiber_jupyter/worker.py)."""

import os
import subprocess
import sys

import zmq

from fiber_jupyter import protocol, security
from tests.conftest import wait_for


def _start_worker(address: str, token: str, *options: str) -> subprocess.Popen:
    """A worker as a pod runs one: credentials from the environment, no stdin pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "fiber_jupyter.worker", "--address", address,
         "--worker-id", "w0", "--heartbeat-interval", "0.2", "--secret-from", "env:CREDENTIALS",
         *options], env={**os.environ, "CREDENTIALS": token}, stdin=subprocess.DEVNULL)


def test_a_worker_without_a_pipe_exits_once_the_master_is_gone_for_its_timeout():
    context = zmq.Context()
    credentials = security.new_credentials(encrypted=True)
    guard = security.ConnectionGuard(context, credentials)
    master = context.socket(zmq.ROUTER)
    guard.protect(master)
    port = master.bind_to_random_port("tcp://127.0.0.1")
    worker = _start_worker(f"tcp://127.0.0.1:{port}", credentials.token, "--master-timeout", "1")
    try:
        poller = zmq.Poller()
        poller.register(master, zmq.POLLIN)
        poller.register(guard.socket, zmq.POLLIN)
        hello = None
        while hello is None:
            ready = dict(poller.poll(30_000))
            assert ready, "the worker never said hello"
            if guard.socket in ready:
                guard.handle_pending()
            if master in ready:
                message, _ = protocol.decode(master.recv_multipart()[1:])
                hello = message if isinstance(message, protocol.Hello) else None
        assert hello.worker_id == "w0"
        guard.close()
        context.destroy(linger=0)  # the master's end: every connection closes
        wait_for(lambda: worker.poll() is not None, timeout=30,
                 what="the worker to notice the master is gone and exit")
        assert worker.returncode == 0
    finally:
        worker.kill()
        worker.wait()
        if not context.closed:
            guard.close()
            context.destroy(linger=0)
