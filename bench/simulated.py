"""A backend of simulated workers, many per process, to measure the master at scale.

``SimulatedBackend`` implements :class:`fiber_jupyter.backends.base.Backend`.
It starts ``HOSTS`` host processes (``python -m bench.simulated_host``) and
deals the pool's workers out to them round-robin. Each simulated worker opens
the two connections a real worker opens and speaks the real protocol, so the
master cannot tell it from a real one; it just runs no user code. That lets a
2-core machine present 2,048 workers to one master with 4 processes.

Backend and hosts talk over the hosts' stdin and stdout, one JSON record per
line (the pool's secret travels in the launch records, never on a command line):

- to a host: ``{"launch": {worker_id, address, secret, heartbeat_interval}}``
  and ``{"stop": worker_id}`` (a simulated SIGKILL);
- from a host: ``{"worker_id": ..., "exit_code": ...}`` when a worker ends.

The backend kills its hosts when it closes, and a host exits by itself when
its stdin closes (the master died). Either way, the workers a host still held
are reported by the backend, with the host's exit, so every launched worker's
end is reported exactly once, whatever happens to its host.
"""

import dataclasses
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading

from fiber_jupyter.backends import Backend, WorkerExit
from fiber_jupyter.backends.local import worker_environment

log = logging.getLogger(__name__)

HOSTS = 4
HOST_MODULE = "bench.simulated_host"
# What a stop costs a simulated worker: reported like the SIGKILL of a real one.
STOPPED_EXIT_CODE = -signal.SIGKILL
READ_SIZE = 65536


def encode_record(record):
    """One line of the backend-host wire format."""
    return json.dumps(record).encode() + b"\n"


class RecordReader:
    """Turns a byte stream read in arbitrary pieces into the records it carries."""

    def __init__(self):
        self._partial = b""

    def feed(self, data):
        """The records completed by ``data`` (a line may span several reads)."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [json.loads(line) for line in lines]


class _Host:
    """One host process, the records queued for it, and the workers it runs.

    Writes to its stdin never block (the backend's thread must keep reading
    every host's stdout, or a host blocked on a full stdout would never read
    its stdin again); what does not fit in the pipe waits in ``outgoing``.
    """

    def __init__(self, index):
        self.index = index
        self.process = subprocess.Popen(
            [sys.executable, "-m", HOST_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=worker_environment(), bufsize=0, start_new_session=True)
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        os.set_blocking(self.stdin, False)
        self.outgoing = bytearray()
        self.reports = RecordReader()
        self.alive = True
        # Whether the backend's poll waits for room in the stdin pipe.
        self.awaiting_room = False

    def queue(self, record):
        self.outgoing += encode_record(record)

    def flush(self):
        """Write what the pipe takes now (a host that is gone takes nothing more)."""
        try:
            written = os.write(self.stdin, self.outgoing)
        except BlockingIOError:
            return
        except BrokenPipeError:
            written = len(self.outgoing)
        del self.outgoing[:written]

    def end(self):
        """Kill (if still running) and reap the host; its exit code."""
        self.process.kill()
        code = self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        return code


class SimulatedBackend(Backend):
    """Simulated workers hosted by ``HOSTS`` processes; see the module docstring."""

    name = "simulated"

    def __init__(self, on_exit):
        super().__init__(on_exit)
        self._lock = threading.Lock()
        self._hosts = [_Host(index) for index in range(HOSTS)]
        self._dealt = itertools.count()
        # worker id -> the host running it, until its end is reported, e.g. {"w7": <_Host 3>}
        self._placement = {}
        self._closing = False
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_write, False)
        self._thread = threading.Thread(target=self._run, name="simulated-backend", daemon=True)
        self._thread.start()

    @property
    def listen_host(self):
        return "127.0.0.1"

    def natural_size(self):
        return HOSTS

    def start(self, launches):
        """Deal the launches round-robin to the hosts still running; never blocks."""
        refused = []
        with self._lock:
            hosts = [host for host in self._hosts if host.alive and not self._closing]
            for launch in launches:
                if not hosts:
                    refused.append(WorkerExit(launch.worker_id, None, "no host is running"))
                    continue
                host = hosts[next(self._dealt) % len(hosts)]
                self._placement[launch.worker_id] = host
                host.queue({"launch": dataclasses.asdict(launch)})
        self._wake()
        for exit in refused:
            self._on_exit(exit)

    def stop(self, worker_id):
        """Ask the worker's host to drop it; the host reports the end (idempotent)."""
        with self._lock:
            host = self._placement.get(worker_id)
            if host is not None and host.alive:
                host.queue({"stop": worker_id})
        self._wake()

    def close(self):
        """Kill the hosts and return once every worker's end has been reported."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        self._thread.join()
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)

    def _wake(self):
        try:
            os.write(self._wakeup_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the thread is already due to wake

    def _run(self):
        """The backend's thread: feeds the hosts' stdin, reads their reports, reaps them."""
        poller = select.poll()
        poller.register(self._wakeup_read, select.POLLIN)
        by_fd = {}
        for host in self._hosts:
            poller.register(host.stdout, select.POLLIN)
            by_fd[host.stdout] = by_fd[host.stdin] = host
        while any(host.alive for host in self._hosts):
            for fd, _ in poller.poll():
                if fd == self._wakeup_read:
                    os.read(self._wakeup_read, READ_SIZE)
                elif fd == by_fd[fd].stdout:
                    self._read_reports(by_fd[fd], poller)
            self._feed_hosts(poller)

    def _feed_hosts(self, poller):
        """Flush queued records; watch for room in the pipes still holding some.

        Closing kills the hosts, as LocalBackend kills its workers: whatever
        they still run is reported when their stdout reaches its end.
        """
        with self._lock:
            for host in self._hosts:
                if not host.alive:
                    continue
                if self._closing:
                    host.process.kill()
                    continue
                if host.outgoing:
                    host.flush()
                if bool(host.outgoing) != host.awaiting_room:
                    host.awaiting_room = not host.awaiting_room
                    if host.awaiting_room:
                        poller.register(host.stdin, select.POLLOUT)
                    else:
                        poller.unregister(host.stdin)

    def _read_reports(self, host, poller):
        """Pass on the ends a host reported; its stdout's end means the host is gone."""
        data = os.read(host.stdout, READ_SIZE)
        if data:
            for record in host.reports.feed(data):
                self._report(host, WorkerExit(record["worker_id"], record["exit_code"]))
            return
        poller.unregister(host.stdout)
        if host.awaiting_room:
            poller.unregister(host.stdin)
        self._host_ended(host)

    def _host_ended(self, host):
        """Report every worker the host still held, with the host's own exit."""
        code = host.end()
        with self._lock:
            host.alive = False  # from now on start() refuses what it would deal to this host
            orphans = [w for w, h in self._placement.items() if h is host]
        detail = "" if self._closing else f"its host process {host.index} ended with exit {code}"
        if detail:
            log.error("simulated host %d ended with exit %s, holding %d workers",
                      host.index, code, len(orphans))
        for worker_id in orphans:
            self._report(host, WorkerExit(worker_id, code, detail))

    def _report(self, host, exit):
        """Tell the pool, once: a second report of a worker is a bug of this backend."""
        with self._lock:
            known = self._placement.get(exit.worker_id) is host
            if known:
                del self._placement[exit.worker_id]
        if not known:
            log.error("simulated host %d reported %s, which it does not run",
                      host.index, exit.worker_id)
            return
        self._on_exit(exit)
