"""A pool worker: ``python -m fiber_jupyter.worker --address ... --worker-id ...``.

Two threads, each owning one connection to the master's ROUTER socket::

    master ROUTER ══ task connection (identity "w7") ══ main thread (TaskRunner)
                     Hello, Ready, Done, Executed ▲   ▼ Welcome, Run, Execute, Stop
                                        runs the initializer and the batches

    master ROUTER ══ control connection ("w7/control") ══ control thread (ControlLink)
                     Heartbeat ▲   ▼ Cancel
                                   keeps heartbeats flowing while a task runs,
                                   interrupts the running task on Cancel, exits
                                   the process when the master's stdin pipe closes

Tasks go straight from the socket to the user's function and back on the main
thread: no thread hand-off on the hot path. User code runs on the main thread,
so it can use signals and anything else that insists on it. A task is
interrupted with SIGINT sent to the main thread only, and only while that task
is the one running (see :class:`RunningBatch`).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set

import zmq

from . import namespace, outcomes, protocol, security, serialization, usage
from .outcomes import TaskFailure

log = logging.getLogger("fiber_jupyter.worker")

_STOP_ENDPOINT = "inproc://stop-control"
# How long results already handed to ZeroMQ may take to leave when the worker exits.
_FLUSH_MILLISECONDS = 10_000


class TaskInterrupted(BaseException):
    """Raised in the main thread to abandon the running batch (never seen by the master)."""


class RunningBatch:
    """Which batch runs and which were cancelled, shared by both threads under one lock.

    The control thread may only interrupt the batch it was asked to cancel: it
    checks ``current`` and sets ``interrupt`` under the lock, and the main thread
    clears ``interrupt`` under the same lock before starting the next batch. A
    late SIGINT therefore finds ``interrupt`` false and is ignored.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled: Set[int] = set()
        self.current: Optional[int] = None
        self.interrupt = False

    def begin(self, batch_id: int) -> bool:
        """Mark ``batch_id`` running; False if it was cancelled before it started."""
        with self.lock:
            if batch_id in self.cancelled:
                self.cancelled.discard(batch_id)
                return False
            self.current = batch_id
            self.interrupt = False
            return True

    def end(self) -> None:
        with self.lock:
            self.current = None
            self.interrupt = False

    def cancel(self, batch_ids: tuple, main_thread: int) -> None:
        with self.lock:
            if self.current in batch_ids:
                self.interrupt = True
                signal.pthread_kill(main_thread, signal.SIGINT)
            self.cancelled.update(b for b in batch_ids if b != self.current)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupt:
            raise TaskInterrupted()


def _dealer(context: zmq.Context, identity: str, options: argparse.Namespace,
            secret: str) -> zmq.Socket:
    dealer = context.socket(zmq.DEALER)
    dealer.identity = identity.encode()
    dealer.sndhwm = dealer.rcvhwm = 0  # never drop: the master's credit bounds the traffic
    security.authenticate(dealer, secret)
    dealer.connect(options.address)
    return dealer


class ControlLink(threading.Thread):
    """The control thread: heartbeats out, cancels in, and the master's death."""

    def __init__(self, context: zmq.Context, options: argparse.Namespace, secret: str,
                 running: RunningBatch) -> None:
        super().__init__(name="fiber-worker-control", daemon=True)
        self._options = options
        self._running = running
        self._main_thread = threading.main_thread().ident
        self._watch_stdin = options.secret_from == "stdin"
        identity = options.worker_id + protocol.CONTROL_SUFFIX
        self._dealer = _dealer(context, identity, options, secret)
        self._stop_requests = context.socket(zmq.PAIR)
        self._stop_requests.bind(_STOP_ENDPOINT)
        self._master_link = MasterLink(self._dealer, options.heartbeat_interval,
                                       options.master_timeout)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(self._stop_requests, zmq.POLLIN)
        poller.register(self._master_link.events, zmq.POLLIN)
        if self._watch_stdin:
            poller.register(sys.stdin.fileno(), zmq.POLLIN)
        interval = self._options.heartbeat_interval
        next_beat = time.monotonic()
        while True:
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + interval
            ready = dict(poller.poll(max(0.0, next_beat - time.monotonic()) * 1000))
            if self._stop_requests in ready:
                break
            if self._dealer in ready:
                self._receive()
            if self._master_link.events in ready:
                self._master_link.update()
            if self._watch_stdin and sys.stdin.fileno() in ready:
                self._check_master_alive()
            if self._master_link.lost_for_good():
                log.warning("worker %s: no connection to the master for %.0f s, exiting",
                            self._options.worker_id, self._options.master_timeout)
                os._exit(0)
        self._master_link.close()
        self._dealer.close(linger=0)
        self._stop_requests.close()

    def _beat(self) -> None:
        """Send a heartbeat unless the master is unreachable (then a send would block)."""
        try:
            beat = protocol.Heartbeat(*usage.resource_use())
            self._dealer.send_multipart(protocol.encode(beat), zmq.NOBLOCK)
        except zmq.Again:
            log.debug("worker %s: no connection to the master for a heartbeat",
                      self._options.worker_id)

    def _receive(self) -> None:
        try:
            message, _ = protocol.decode(self._dealer.recv_multipart())
        except protocol.ProtocolError as exc:  # this thread must keep the heartbeats going
            log.error("worker %s: ignored a malformed control message from the master: %s",
                      self._options.worker_id, exc)
            return
        if isinstance(message, protocol.Cancel):
            self._running.cancel(message.batch_ids, self._main_thread)

    def _check_master_alive(self) -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            log.info("worker %s: the master is gone, exiting", self._options.worker_id)
            os._exit(0)


class MasterLink:
    """Whether the master is reachable, for workers that have no pipe to it (pods).

    ZeroMQ heartbeats (PING/PONG on the control connection) drop a connection
    whose peer went silent, a dead host included; the socket monitor says when
    the connection is up or down. A worker that stays disconnected for
    ``timeout`` seconds exits, so a pod does not outlive its notebook for long.
    """

    def __init__(self, dealer: zmq.Socket, heartbeat_interval: float,
                 timeout: Optional[float]) -> None:
        dealer.heartbeat_ivl = int(heartbeat_interval * 1000)
        dealer.heartbeat_timeout = int(3 * heartbeat_interval * 1000)
        self._dealer = dealer
        self._timeout = timeout
        self.events = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                                | zmq.EVENT_DISCONNECTED)
        self._down_since: Optional[float] = time.monotonic()

    def update(self) -> None:
        while self.events.poll(0):
            if monitor_event(self.events.recv_multipart()) == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = time.monotonic()

    @property
    def connected(self) -> bool:
        """As of the last update: the handshake succeeded and no disconnect came since."""
        return self._down_since is None

    def lost_for_good(self) -> bool:
        return (self._timeout is not None and self._down_since is not None
                and time.monotonic() - self._down_since > self._timeout)

    def close(self) -> None:
        self._dealer.disable_monitor()
        self.events.close(linger=0)


def monitor_event(message: List[bytes]) -> int:
    """The event of a socket monitor's message: its first frame starts with a 16-bit id.

    Read here rather than with ``zmq.utils.monitor``, which imports asyncio:
    a third of a worker's start-up.
    """
    return struct.unpack_from("=H", message[0])[0]


class TaskRunner:
    """The main thread: greets the master, then runs batches until told to stop."""

    def __init__(self, context: zmq.Context, options: argparse.Namespace, secret: str,
                 running: RunningBatch) -> None:
        self._running = running
        self._dealer = _dealer(context, options.worker_id, options, secret)
        self._stop_control = context.socket(zmq.PAIR)
        self._stop_control.connect(_STOP_ENDPOINT)
        self._hello = protocol.Hello(options.worker_id, os.getpid(), socket.gethostname(),
                                     protocol.PROTOCOL_VERSION)
        # job id -> its unpickled function, e.g. {7: <function sqr>}
        self._functions: Dict[int, Any] = {}

    def serve(self) -> None:
        self._send(self._hello)
        while True:
            try:
                message, body = protocol.decode(self._dealer.recv_multipart(copy=False))
                if isinstance(message, protocol.Stop):
                    break
                self._handle(message, body)
            except protocol.ProtocolError as exc:
                # The master is authenticated: this is a bug or a version mix, not an
                # attack. Say so and carry on; a crash would only lose the batches held.
                log.error("worker %s: ignored a malformed message from the master: %s",
                          self._hello.worker_id, exc)
            except TaskInterrupted:
                log.debug("batch interrupted")
            finally:
                self._running.end()
        self._stop_control.send(b"")
        self._stop_control.close()
        self._dealer.close(linger=_FLUSH_MILLISECONDS)

    def _handle(self, message: Any, body: List[zmq.Frame]) -> None:
        if isinstance(message, protocol.Welcome):
            error = self._initialize(message.initializer)
            self._send(protocol.Ready(error, None) if error else self._set_up(message.setup))
        elif isinstance(message, protocol.Run):
            self._learn(message, body)
            if self._running.begin(message.batch_id):
                self._run(message, body)
        elif isinstance(message, protocol.Execute):
            self._send(protocol.Executed(message.run_id, *namespace.run(message.code)))

    def _set_up(self, steps: tuple) -> protocol.Ready:
        """Replay the code kept by ``pool.execute``, in order, up to a failure."""
        for number, code in enumerate(steps, 1):
            printed, error = namespace.run(code)
            if error is not None:
                return protocol.Ready(printed + error, number)
        return protocol.Ready(None, None)

    def _initialize(self, initializer: Optional[bytes]) -> Optional[str]:
        """Run the pool's initializer; its traceback text if it raised."""
        if initializer is None:
            return None
        try:
            fn, args = serialization.loads(initializer)
            fn(*args)
        except BaseException as exc:
            return TaskFailure.capture(exc).traceback_text
        return None

    def _learn(self, run: protocol.Run, body: List[zmq.Frame]) -> None:
        """Forget the functions of finished calls and keep this call's.

        Also for a batch cancelled before it began (a speculative copy whose
        other copy finished first): the master counts the function as
        delivered and will not send it again with the call's next batch.
        """
        for job_id in run.forget:
            self._functions.pop(job_id, None)
        if not run.function_included:
            return
        try:
            fn = serialization.loads(body[0].buffer)
        except Exception as exc:
            # Later batches of the job arrive without the function: they
            # must fail with this same error, not with a missing-cache one.
            self._functions[run.job_id] = exc
            return
        self._functions[run.job_id] = fn
        namespace.share_with(fn)

    def _run(self, run: protocol.Run, body: List[zmq.Frame]) -> None:
        try:
            fn, items = self._load(run, body)
        except Exception as exc:  # e.g. a module only the master can import
            failures = [TaskFailure.capture(exc)] * run.count
            self._reply(run, failures, len(failures), 0.0)
            return
        started = time.perf_counter()
        results, errors = outcomes.call_all(fn, run.mode, items, reraise=(TaskInterrupted,))
        self._reply(run, results, errors, time.perf_counter() - started)

    def _load(self, run: protocol.Run, body: List[zmq.Frame]) -> tuple:
        """The batch's function (kept by ``_learn``) and its items."""
        fn = self._functions[run.job_id]
        if isinstance(fn, Exception):
            raise fn
        items = serialization.loads(body[1].buffer, [frame.buffer for frame in body[2:]])
        if not isinstance(items, list):  # the calls are counted and sliced
            raise protocol.ProtocolError(f"a batch's items must be a list, got {type(items)}")
        return fn, items

    def _reply(self, run: protocol.Run, results: List[Any], errors: int, seconds: float) -> None:
        encoded, unencodable = outcomes.encode_outcomes(results)
        self._send(protocol.Done(run.batch_id, len(results), errors + unencodable, seconds),
                   encoded.frames())

    def _send(self, message: Any, body: List[Any] = ()) -> None:
        self._dealer.send_multipart(protocol.encode(message, body), copy=False)


def _read_secret(source: str) -> str:
    if source == "stdin":
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(sys.stdin.fileno(), 1)
            if not chunk:
                raise SystemExit("fiber_jupyter worker: stdin closed before the secret arrived")
            line += chunk
        return line.decode().strip()
    if source.startswith("env:"):
        return os.environ[source[4:]]
    if source.startswith("file:"):
        with open(source[5:]) as handle:
            return handle.read().strip()
    raise SystemExit(f"fiber_jupyter worker: unknown --secret-from {source!r}")


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fiber_jupyter.worker")
    parser.add_argument("--address", required=True, help="the master's ZeroMQ endpoint")
    parser.add_argument("--worker-id", required=True, help="identity the master assigned")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--secret-from", default="stdin",
                        help="stdin, env:VARIABLE or file:PATH")
    parser.add_argument("--master-timeout", type=float, default=None,
                        help="exit after this many seconds without a connection to the "
                             "master (workers that do not read stdin)")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Stop when a deleted pod's worker is asked to. A container's main process is
    PID 1, which SIGTERM does not kill by default: Kubernetes would wait out the
    grace period (30 s) before killing it."""
    os._exit(128 + signum)


def main(argv: Optional[List[str]] = None) -> None:
    options = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    faulthandler.enable()
    secret = _read_secret(options.secret_from)
    context = zmq.Context()
    running = RunningBatch()
    signal.signal(signal.SIGINT, running.on_sigint)
    if os.getpid() == 1:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    control = ControlLink(context, options, secret, running)
    runner = TaskRunner(context, options, secret, running)
    control.start()
    runner.serve()
    control.join()
    context.term()


if __name__ == "__main__":
    main()
