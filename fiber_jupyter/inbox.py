"""How other threads talk to the scheduler's I/O thread: commands plus a wakeup.

User threads (``submit``, ``scale``, ``adapt``, ``cancel``, ``close``, ``terminate``) and
the backend's thread (worker exits) append a command and write one byte to a
pipe that the I/O thread polls alongside its sockets, as CPython's
``concurrent.futures`` does with its ``_ThreadWakeup``. No thread but the I/O
thread ever touches a socket.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .adaptive import AdaptSettings
from .backends import WorkerExit
from .jobs import Job


class Reply:
    """A one-shot answer from the I/O thread to a waiting user thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value
        self._event.set()

    def wait(self, timeout: float) -> Any:
        """The answer, or None if none came within ``timeout`` seconds."""
        return self.value if self._event.wait(timeout) else None

    def arrived(self, timeout: Optional[float]) -> bool:
        """Whether the answer came within ``timeout`` seconds."""
        return self._event.wait(timeout)


@dataclass
class Submit:
    job: Job


@dataclass
class Scale:
    target: int


@dataclass
class Adapt:
    settings: AdaptSettings


@dataclass
class Cancel:
    job_id: int
    reply: Reply


@dataclass
class Execute:
    code: str
    keep: bool
    reply: Reply


@dataclass
class ListWorkers:
    reply: Reply


@dataclass
class Close:
    pass


@dataclass
class Terminate:
    pass


@dataclass
class WorkerEnded:
    exit: WorkerExit


@dataclass
class WorkerWaiting:
    worker_id: str
    reason: str


class Inbox:
    """Commands for the I/O thread; ``fileno`` becomes readable when one arrives."""

    def __init__(self) -> None:
        self._commands: "collections.deque[Any]" = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        # Guards against writing to a closed (and possibly reused) descriptor.
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        return self._read_fd

    def put(self, command: Any) -> bool:
        """Queue ``command`` and wake the I/O thread; False once the inbox is closed."""
        with self._lock:
            if self._closed:
                return False
            self._commands.append(command)
            try:
                os.write(self._write_fd, b"\0")
            except BlockingIOError:
                pass  # full pipe: a wakeup is already pending
        return True

    def drain(self) -> Iterator[Any]:
        """Commands in arrival order, until none is left (the I/O thread only)."""
        if not self._closed:
            try:
                os.read(self._read_fd, 4096)  # more than 4096 pending wakeups wake us again
            except BlockingIOError:
                pass  # already drained
        while self._commands:
            yield self._commands.popleft()

    def close(self) -> None:
        """Refuse later commands; those already queued can still be drained."""
        with self._lock:
            self._closed = True
            os.close(self._read_fd)
            os.close(self._write_fd)
