"""The contract between the pool and whatever runs its workers.

A backend starts workers, stops one when asked, and reports each worker's end
with its exit code. That is all: it never sees a task, a result or a socket.
The scheduler decides how many workers there should be and which to stop; the
backend turns those decisions into processes (or pods) and tells the scheduler
when one is gone, for whatever reason.
"""

from __future__ import annotations

import abc
import signal
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional, Sequence


@dataclass(frozen=True)
class WorkerLaunch:
    """Everything a backend needs to start one worker (its repr leaves out the secret)."""

    worker_id: str
    address: str
    secret: str = field(repr=False)
    heartbeat_interval: float


@dataclass(frozen=True)
class WorkerExit:
    """How a worker ended: ``exit_code`` is negative for a signal (as in subprocess).

    ``detail`` carries what the backend knows beyond the code (for example
    "could not start: [Errno 2] ..."); it is empty for an ordinary exit.
    """

    worker_id: str
    exit_code: Optional[int]
    detail: str = ""

    def describe(self) -> str:
        """Human-readable cause, e.g. "exit -9 (SIGKILL)" or "exit 1"."""
        if self.detail:
            return self.detail
        if self.exit_code is None:
            return "exit status unknown"
        if self.exit_code < 0:
            return f"exit {self.exit_code} ({_signal_name(-self.exit_code)})"
        return f"exit {self.exit_code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


ExitCallback = Callable[[WorkerExit], None]
# (worker id, why it is not running yet), e.g. ("w3", "Unschedulable: 0/3 nodes are available")
WaitingCallback = Callable[[str, str], None]


class Backend(abc.ABC):
    """Starts and stops workers; reports each worker's end exactly once.

    Implementations must make :meth:`start` and :meth:`stop` return quickly
    (the scheduler's I/O thread calls them) and call ``on_exit`` from any
    thread, exactly once per launched worker, including workers that failed to
    start and workers stopped on request. ``on_waiting`` says why a worker is
    not running yet, when there is something to say (a pod that cannot be
    scheduled); ``pool_name`` names what the backend creates.
    """

    name: ClassVar[str]
    # Whether connections to workers must be encrypted (CURVE): workers on other hosts.
    encrypts: ClassVar[bool] = False
    # What to check when no worker can start, after the backend's own reason.
    start_failure_hint: ClassVar[str] = (
        "check that 'python -m fiber_jupyter.worker' runs in the workers' environment")

    def __init__(self, on_exit: ExitCallback, on_waiting: Optional[WaitingCallback] = None,
                 pool_name: str = "pool") -> None:
        self._on_exit = on_exit
        self._on_waiting = on_waiting or (lambda worker_id, reason: None)
        self._pool_name = pool_name

    @property
    @abc.abstractmethod
    def listen_host(self) -> str:
        """The address the master binds so that this backend's workers reach it."""

    @abc.abstractmethod
    def natural_size(self) -> int:
        """The pool size used when the user gives none."""

    @abc.abstractmethod
    def start(self, launches: Sequence[WorkerLaunch]) -> None:
        """Begin starting these workers; returns before they are up."""

    @abc.abstractmethod
    def stop(self, worker_id: str) -> None:
        """Kill one worker now (it may be hung); idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Kill every worker still running and wait until each end is reported."""
