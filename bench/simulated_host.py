"""A process hosting many simulated workers: ``python -m bench.simulated_host``.

Started by :class:`bench.simulated.SimulatedBackend`, which sends launch and
stop records on stdin and reads each worker's end on stdout (format in
``bench.simulated``). A simulated worker is what a real one looks like from the
master: a task connection (identity ``worker_id``) and a control connection
(``worker_id/control``), both authenticated with the pool's secret, speaking
the real protocol. It answers Welcome with Ready, each Run with the batch's
own items (the tasks are no-ops) in a Done, beats on the control connection,
and ends on Stop.

One thread and one ``zmq.Poller`` serve stdin and every connection of every
worker, so a host costs the master's machine one process however many workers
it holds. The host exits when its stdin closes (the backend closed, or the
master died), like a real worker whose master is gone.
"""

import heapq
import logging
import os
import socket
import sys
import time

import zmq

from fiber_jupyter import protocol, security, serialization
from bench.simulated import READ_SIZE, STOPPED_EXIT_CODE, RecordReader, encode_record

log = logging.getLogger("bench.simulated_host")

# libzmq's default (1023) would cap a host at 511 workers.
MAX_SOCKETS = 32768
# Results already handed to ZeroMQ may take this long to leave after a Stop.
STOP_LINGER_MS = 1000


def _connect(context, identity, launch):
    """One DEALER connection to the master, set up as a real worker's."""
    dealer = context.socket(zmq.DEALER)
    dealer.identity = identity.encode()
    dealer.sndhwm = dealer.rcvhwm = 0
    security.authenticate(dealer, launch["secret"])
    dealer.connect(launch["address"])
    return dealer


class SimulatedWorker:
    """One worker's two connections and its side of the protocol."""

    def __init__(self, context, launch):
        self.worker_id = launch["worker_id"]
        self.heartbeat_interval = launch["heartbeat_interval"]
        self.task = _connect(context, self.worker_id, launch)
        self.control = _connect(context, self.worker_id + protocol.CONTROL_SUFFIX, launch)
        self._send(protocol.Hello(self.worker_id, os.getpid(), socket.gethostname(),
                                  protocol.PROTOCOL_VERSION))

    def handle(self, frames):
        """Answer one message from the master; False when it was Stop."""
        message, body = protocol.decode(frames)
        if isinstance(message, protocol.Stop):
            return False
        if isinstance(message, protocol.Welcome):
            self._send(protocol.Ready(None))
        elif isinstance(message, protocol.Run):
            self._run(message, body)
        return True

    def _run(self, run, body):
        """Return the batch's items, unpickled and pickled again as a real worker would.

        Body frame 0 is the job's function (or empty); the function is a
        no-op, so it is neither loaded nor called.
        """
        started = time.perf_counter()
        items = serialization.loads(body[1].buffer, [frame.buffer for frame in body[2:]])
        results = serialization.dumps(items).frames()
        self._send(protocol.Done(run.batch_id, len(items), 0, time.perf_counter() - started),
                   results)

    def beat(self):
        self.control.send_multipart(protocol.encode(protocol.Heartbeat(0.0, 0)))

    def _send(self, message, body=()):
        self.task.send_multipart(protocol.encode(message, body), copy=False)

    def close(self, linger_ms):
        self.task.close(linger=linger_ms)
        self.control.close(linger=0)


class Host:
    """Every simulated worker of this process, served by one poll loop."""

    def __init__(self):
        self._context = zmq.Context()
        self._context.max_sockets = MAX_SOCKETS
        self._stdin = sys.stdin.fileno()
        self._poller = zmq.Poller()
        self._poller.register(self._stdin, zmq.POLLIN)
        self._commands = RecordReader()
        # worker id -> worker, e.g. {"w7": <SimulatedWorker>}
        self._workers = {}
        # connection -> the worker it belongs to (both connections of each worker)
        self._owners = {}
        # (when, worker id) of each worker's next heartbeat, earliest first
        self._beats = []

    def serve(self):
        """Run until stdin closes, then drop every worker without reporting it."""
        while True:
            for readable, _ in self._poller.poll(self._until_next_beat_ms()):
                if readable == self._stdin:
                    if not self._read_commands():
                        self._shut_down()
                        return
                else:
                    self._receive(readable)
            self._beat_due()

    def _until_next_beat_ms(self):
        """How long the poll may sleep: until the next heartbeat is due (forever if none)."""
        if not self._beats:
            return None
        return max(0.0, self._beats[0][0] - time.monotonic()) * 1000

    def _read_commands(self):
        """Carry out the backend's records; False when stdin reached its end."""
        data = os.read(self._stdin, READ_SIZE)
        for record in self._commands.feed(data):
            if "launch" in record:
                self._launch(record["launch"])
            elif record["stop"] in self._workers:
                self._end(self._workers[record["stop"]], STOPPED_EXIT_CODE, linger_ms=0)
        return bool(data)

    def _launch(self, launch):
        """Connect a new worker; it beats at once, as a real worker does on starting."""
        worker = SimulatedWorker(self._context, launch)
        self._workers[worker.worker_id] = worker
        for connection in (worker.task, worker.control):
            self._owners[connection] = worker
            self._poller.register(connection, zmq.POLLIN)
        heapq.heappush(self._beats, (time.monotonic(), worker.worker_id))

    def _receive(self, connection):
        """Everything waiting on one connection.

        The control connection only ever brings Cancel, which a simulated
        worker has nothing to interrupt for: it answers a Run the moment it
        reads it. So control messages are read and dropped.
        """
        worker = self._owners.get(connection)
        while worker is not None:
            try:
                frames = connection.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if connection is worker.task and not worker.handle(frames):
                self._end(worker, 0, linger_ms=STOP_LINGER_MS)
                return

    def _beat_due(self):
        """Heartbeats of every worker whose time has come (ended workers drop out)."""
        now = time.monotonic()
        while self._beats and self._beats[0][0] <= now:
            _, worker_id = heapq.heappop(self._beats)
            worker = self._workers.get(worker_id)
            if worker is not None:
                worker.beat()
                heapq.heappush(self._beats, (now + worker.heartbeat_interval, worker_id))

    def _end(self, worker, exit_code, linger_ms):
        """Close the worker's connections and report its end to the backend."""
        for connection in (worker.task, worker.control):
            self._poller.unregister(connection)
            del self._owners[connection]
        worker.close(linger_ms)
        del self._workers[worker.worker_id]
        sys.stdout.buffer.write(encode_record({"worker_id": worker.worker_id,
                                               "exit_code": exit_code}))
        sys.stdout.buffer.flush()

    def _shut_down(self):
        """Drop every connection at once: the backend reports the workers that were left."""
        for worker in self._workers.values():
            worker.close(linger_ms=0)
        self._context.term()


def main():
    """Serve until the backend closes stdin; warnings go to stderr, stdout is the backend's."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    Host().serve()


if __name__ == "__main__":
    main()
