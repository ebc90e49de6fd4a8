"""``fiber_jupyter.Process``: a job-backed process with ``multiprocessing.Process``'s shape.

``Process(target=f, args=(q,)).start()`` runs ``f(q)`` once, in a job of a
backend: a local process (the default) or a pod (``backend=Kubernetes(...)``).
The job is the one worker of a private pool::

    start() ── Pool(1, max_retries=0) ── apply_async(_bootstrap, (the pickled call,))
                 │ its backend factory, wrapped (_ExitRecorder): each job's exit as reported
                 │ its events: WorkerReady (pid, host; the pool is then closed),
                 │             WorkerLost (why), PoolClosed (every job has ended)
    join() ◀── exitcode, exit_reason, exception: from the call's outcome and the job's exit

Why a one-worker pool and not a master of its own: the pool already starts
jobs on every backend; authenticates them with a secret of their own (PLAIN
on loopback, CURVE for pods; given on stdin or through a Kubernetes Secret,
never on a command line); finds a hung job by its heartbeats; reports how
each job ended; and leaves no process or pod behind at terminate, garbage
collection or interpreter exit. A master of its own would repeat the master's
half of the worker protocol for the sake of one call. What the pool does not
give, this module adds:

- **One run of the target.** ``max_retries=0`` fails the call at the first loss
  of its job, and the pool is closed as soon as the job is ready, so a job that
  dies is not replaced. Until it is ready, a job that cannot start is retried
  as the pool retries (backing off; the pool breaks after five failed starts
  in a row): the target has not run yet.
- **Exit codes as the backend reports them.** The pool's events carry a lost
  job's exit code, not a stopped one's (``terminate``); :class:`_ExitRecorder`
  records every exit on its way from the backend to the pool.
- **multiprocessing's exit codes.** The target runs inside :func:`_bootstrap`,
  which turns ``SystemExit`` into its code as multiprocessing does; the return
  value is dropped on the job, never pickled.
- **Subclasses that override run()**, multiprocessing's other idiom: the job
  gets a copy of the object, its own attributes without the notebook-side
  machinery (:func:`_run_on_job`), and calls its ``run()``.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Union

from . import serialization
from .backends import Backend, BackendFactory, WorkerExit, backend_factory
from .errors import BrokenPoolError, FiberError, PoolTerminatedError, WorkerLostError
from .events import PoolClosed, PoolEvent, WorkerLost, WorkerReady
from .pool import Pool
from .results import wait_slices

log = logging.getLogger(__name__)

_process_numbers = itertools.count(1)


class ProcessStateError(FiberError, AssertionError):
    """A Process used out of order: started twice, or joined or terminated before it started.

    An ``AssertionError``, as multiprocessing raises (it checks these with ``assert``).
    """


class _State(enum.Enum):
    INITIAL = "initial"
    STARTED = "started"
    STOPPED = "stopped"


def _bootstrap(call: bytes) -> int:
    """On the job: call the target; the exit code multiprocessing's ``_bootstrap`` would give.

    An exception propagates: the pool sends it back with the job's traceback.
    """
    target, args, kwargs = serialization.loads(call)
    try:
        if target is not None:
            target(*args, **kwargs)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")  # as multiprocessing does
        return 1
    return 0


# What a Process holds in the notebook only: a copy sent to run() on its job leaves them out.
_NOTEBOOK_SIDE = frozenset({
    "_exit_recorder", "_lock", "_state", "_stopped", "_pool", "_submitted", "_terminated",
    "_worker_id", "_pid", "_host", "_losses", "_returned", "_error", "_ending"})


def _run_on_job(cls: type, attributes: Dict[str, Any]) -> None:
    """On the job: rebuild the Process subclass's object from its attributes and run it.

    There, as in a multiprocessing child, the object is alive and its ``pid``
    is the job's.
    """
    process = cls.__new__(cls)
    process.__dict__.update(attributes, _state=_State.STARTED, _ending=None,
                            _pid=os.getpid(), _host=socket.gethostname())
    process.run()


class _ExitRecorder:
    """A backend factory that records each job's exit on its way from the backend to the pool.

    It holds no reference to its Process: the pool keeps its backend factory
    until the pool is collected, and would keep the Process alive with it.
    """

    def __init__(self, factory: BackendFactory) -> None:
        self._factory = factory
        self.name = factory.name
        self.encrypts = factory.encrypts
        # worker id -> its exit, as the backend reported it, e.g. {"w0": WorkerExit("w0", 3)};
        # written on the backend's thread before the pool learns of the exit.
        self.exits: Dict[str, WorkerExit] = {}

    def __call__(self, on_exit: Callable[[WorkerExit], None], on_waiting: Any = None,
                 pool_name: str = "pool") -> Backend:
        exits = self.exits

        def record_then_report(exit: WorkerExit) -> None:
            exits[exit.worker_id] = exit
            on_exit(exit)

        return self._factory(record_then_report, on_waiting, pool_name)

    def job_exit(self, worker_id: Optional[str]) -> Optional[WorkerExit]:
        """The exit of the job ``worker_id``; the last exit if no job got that far."""
        if worker_id is not None:
            return self.exits.get(worker_id)
        return next(reversed(self.exits.values()), None)


class Ending(NamedTuple):
    """How a process ended: its exit code, why, and what its target raised, if it did."""

    exitcode: int
    reason: str
    exception: Optional[BaseException] = None


def _ending(returned: Optional[int], error: Optional[BaseException],
            job_exit: Optional[WorkerExit], lost: Optional[str], terminated: bool) -> Ending:
    """How a process whose pool has closed ended.

    ``returned``: what :func:`_bootstrap` returned; ``error``: how the call failed
    instead; ``job_exit``: how the job that ran the target ended, as its backend
    reported; ``lost``: the pool's reason if the job was lost.
    """
    if returned is not None:
        return Ending(returned, "returned" if returned == 0 else f"exit {returned} (sys.exit)")
    if isinstance(error, (WorkerLostError, PoolTerminatedError)):
        code = job_exit.exit_code if job_exit is not None else None
        # A job whose end has no code (a deleted or evicted pod) was killed.
        code = -signal.SIGKILL if code is None else code
        why = lost or (job_exit.describe() if job_exit is not None else None)
        if terminated:
            return Ending(code, f"terminated ({why})" if why else "terminated")
        return Ending(code, why or f"exit {code}")
    if isinstance(error, BrokenPoolError):
        return Ending(1, f"could not start: {error}")
    return Ending(1, f"raised {type(error).__name__}: {error}", error)


class Process:
    """A job-backed process: ``target(*args, **kwargs)`` runs once, in a local process or a pod.

    As :class:`multiprocessing.Process`: ``start``, ``join(timeout)``,
    ``is_alive``, ``terminate``, ``kill``, ``exitcode``, ``pid``, ``name``,
    and ``run()``, which a subclass may override instead of giving a target:
    the job runs ``run()`` on a copy of the object's attributes (which must
    pickle, as arguments must). And:

    - ``backend``: where the job runs: ``"local"`` (default), ``"kubernetes"``,
      or a configured backend such as ``Kubernetes(image=...)``.
    - ``host``: the host name the job reports; a pod's is its pod name (unless
      it runs on the node's network).
    - ``exit_reason``: why it ended: ``"returned"``, ``"raised ValueError: ..."``,
      ``"exit 3"``, ``"terminated (exit -9 (SIGKILL))"``, ``"OOMKilled (exit 137, SIGKILL)"``.
    - ``exception``: what the target raised, with the job's traceback as its
      ``__cause__``; it is also logged (logger ``fiber_jupyter.process``).

    ``pid`` and ``host`` are None until the job has connected (a pod may take
    a while). ``exitcode`` is None until the job has ended; then 0 (the target
    returned), 1 (it raised), a ``sys.exit`` or ``os._exit`` code, or minus the
    signal that killed the job.
    """

    def __init__(self, group: None = None, target: Optional[Callable[..., Any]] = None,
                 name: Optional[str] = None, args: Iterable[Any] = (),
                 kwargs: Optional[Mapping[str, Any]] = None, *,
                 backend: Union[None, str, BackendFactory] = None) -> None:
        if group is not None:
            raise ValueError(f"group must be None, as in multiprocessing; got {group!r}")
        if target is not None and not callable(target):
            raise TypeError(f"target must be callable or None, got {target!r}")
        self.name = name or f"{type(self).__name__}-{next(_process_numbers)}"
        self._target = target
        # Kept for the process's life: queues and pipes among them stay open while it runs.
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._exit_recorder = _ExitRecorder(backend_factory(backend))
        self._lock = threading.Lock()
        self._state = _State.INITIAL
        self._stopped = threading.Event()
        self._pool: Optional[Pool] = None
        self._submitted = False
        self._terminated = False
        self._worker_id: Optional[str] = None  # the pool's id of the job, once it is ready
        self._pid: Optional[int] = None
        self._host: Optional[str] = None
        # Every loss of a job, by worker id, as the pool reported it, e.g. {"w0": "exit 3"}
        self._losses: Dict[str, str] = {}
        self._returned: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._ending: Optional[Ending] = None

    # What multiprocessing.Process has ------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        return self._pid

    def run(self) -> None:
        """What the job runs: the target with its arguments. Override it in a subclass."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    @property
    def exitcode(self) -> Optional[int]:
        return None if self._ending is None else self._ending.exitcode

    def start(self) -> None:
        """Start the job; returns at once, while the backend starts it.

        Raises here what the job could not survive: a target or arguments that
        cannot be pickled (``TypeError``), a backend that cannot run (no
        cluster, no image).
        """
        with self._lock:
            if self._state is not _State.INITIAL:
                raise ProcessStateError("cannot start a process twice")
            call = self._pickled_call()
            pool = Pool(1, backend=self._exit_recorder, name=self.name, max_retries=0,
                        progress=False)
            # Before the state says started: a terminate() must find its PoolClosed heard.
            pool.events.subscribe(self._on_event)
            self._pool = pool
            self._state = _State.STARTED
        for worker in self._pool.workers():  # events are not replayed: ready before subscribing?
            if worker.state == "ready":
                self._job_ready(worker.worker_id, worker.pid, worker.host)
        self._pool.apply_async(_bootstrap, (call,), callback=self._on_returned,
                               error_callback=self._on_error)
        with self._lock:
            self._submitted = True
            ready = self._worker_id is not None
        if ready:
            self._pool.close()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until the job has ended, at most ``timeout`` seconds (None: no limit)."""
        self._started_pool("join")
        for seconds in wait_slices(timeout):
            if self._stopped.wait(seconds):
                return

    def is_alive(self) -> bool:
        return self._state is _State.STARTED

    def terminate(self) -> None:
        """End the job now and wait until it has: SIGKILL for a local job, deletion for a pod."""
        pool = self._started_pool("terminate")
        self._terminated = not self._stopped.is_set()
        pool.terminate()

    def kill(self) -> None:
        """As :meth:`terminate`, which kills already (multiprocessing's terminate sends SIGTERM)."""
        self.terminate()

    # What fiber_jupyter adds ---------------------------------------------------

    @property
    def host(self) -> Optional[str]:
        return self._host

    @property
    def exit_reason(self) -> Optional[str]:
        return None if self._ending is None else self._ending.reason

    @property
    def exception(self) -> Optional[BaseException]:
        return None if self._ending is None else self._ending.exception

    def __repr__(self) -> str:
        details = [f"name={self.name!r}", self._state.value]
        if self._pid is not None:
            details.append(f"pid={self._pid}")
        if self._ending is not None:
            details.append(f"exitcode={self._ending.exitcode} ({self._ending.reason})")
        return f"<fiber_jupyter.Process {' '.join(details)}>"

    def __reduce__(self):
        raise TypeError(f"a fiber_jupyter.Process cannot be pickled ({self.name}): give other "
                        "processes its queues or pipes instead")

    # Internals -------------------------------------------------------------------

    def _pickled_call(self) -> bytes:
        if type(self).run is Process.run:
            call, what = (self._target, self._args, self._kwargs), "its target or arguments"
        else:
            attributes = {name: value for name, value in vars(self).items()
                          if name not in _NOTEBOOK_SIDE}
            call, what = (_run_on_job, (type(self), attributes), {}), "its class or attributes"
        try:
            return serialization.dumps_inline(call)
        except Exception as exc:
            raise TypeError(f"cannot start {self.name}: {what} cannot be pickled "
                            f"({type(exc).__name__}: {exc})") from exc

    def _started_pool(self, action: str) -> Pool:
        if self._state is _State.INITIAL:
            raise ProcessStateError(f"can only {action} a started process")
        return self._pool

    def _on_event(self, event: PoolEvent) -> None:
        """On the pool's notifier thread, in the order the pool emitted them."""
        if isinstance(event, WorkerReady):
            self._job_ready(event.worker_id, event.pid, event.host)
        elif isinstance(event, WorkerLost):
            self._losses[event.worker_id] = event.reason
        elif isinstance(event, PoolClosed):
            self._pool_closed()

    def _job_ready(self, worker_id: str, pid: int, host: str) -> None:
        """The job connected: no other job may ever run the target, so close the pool."""
        with self._lock:
            self._worker_id, self._pid, self._host = worker_id, pid, host
            submitted = self._submitted
        if submitted:  # else start() closes it, once the call is in
            self._pool.close()

    def _on_returned(self, code: int) -> None:
        self._returned = code

    def _on_error(self, error: BaseException) -> None:
        self._error = error

    def _pool_closed(self) -> None:
        """Every job of the pool has ended and been reported: the process has ended."""
        ending = _ending(self._returned, self._error, self._exit_recorder.job_exit(self._worker_id),
                         self._losses.get(self._worker_id), self._terminated)
        if ending.exception is not None:
            log.error("process %s: its target raised", self.name, exc_info=ending.exception)
        # Else the pool's finalizer, which holds its events, would keep this object alive.
        self._pool.events.unsubscribe(self._on_event)
        self._pool.close()  # marks a pool that broke before the job was ready as closed
        self._pool.join()  # its last threads: on this thread, its notifier ends after this call
        with self._lock:
            self._ending = ending
            self._state = _State.STOPPED
        self._stopped.set()
