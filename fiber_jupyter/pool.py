"""``fiber_jupyter.Pool``: an elastic, crash-proof drop-in for ``multiprocessing.Pool``.

Every call (``apply``, ``map``, ``imap``, ``starmap`` and their async forms) goes
through one path: the function is pickled once, the input is consumed in the
caller's thread, and a :class:`~fiber_jupyter.jobs.Job` is handed to the
scheduler's I/O thread (:mod:`fiber_jupyter.scheduler`), which batches it out to
workers and feeds results back to the returned AsyncResult or iterator.
"""

from __future__ import annotations

import enum
import itertools
import logging
import numbers
import threading
import warnings
import weakref
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from . import adaptive, live_pools
from . import progress as progress_displays
from . import serialization
from .errors import (BrokenPoolError, PoolSizeError, PoolStateError, TaskCancelled,
                     TimeoutError)
from .events import CallStarted, EventStream
from .jobs import Job
from .notifier import Notifier
from .outcomes import CallMode
from .results import AsyncResult, IMapIterator, wait_slices
from .scheduler import Scheduler, SchedulerConfig
from .timeline import Timeline
from .status import PoolState, PoolStatus, WorkerInfo, WorkerOutput
from .backends import BackendFactory, backend_factory

log = logging.getLogger(__name__)

CallObserver = Callable[[CallStarted], None]

_pool_numbers = itertools.count(1)
_job_ids = itertools.count()


class _ApiState(enum.Enum):
    RUN = "running"
    CLOSE = "closed"
    TERMINATE = "terminated"


def _check_options(initializer: Optional[Callable], max_retries: int,
                   heartbeat_timeout: float, start_timeout: float) -> None:
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be callable, got {initializer!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    for label, seconds in (("heartbeat_timeout", heartbeat_timeout),
                           ("start_timeout", start_timeout)):
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or seconds <= 0:
            raise ValueError(f"{label} must be a positive number of seconds, got {seconds!r}")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise PoolSizeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Pool:
    """A pool of worker processes, local or remote, that grows, shrinks and heals.

    Parameters follow :class:`multiprocessing.pool.Pool`; the keyword-only ones
    are ours:

    - ``backend``: where workers run: ``"local"`` (default), ``"kubernetes"``, or a
      configured backend such as ``Kubernetes(image=..., cpu="1")``.
    - ``name``: shown in events, widgets and logs.
    - ``max_retries``: how often a task that lost its worker (crash, kill,
      hang) is run again; the default 2 fails a task at its third loss, with a
      :class:`~fiber_jupyter.WorkerLostError` naming it and every exit.
    - ``heartbeat_timeout``: seconds of silence after which a worker counts as
      hung (for example SIGSTOPped) and is replaced.
    - ``start_timeout``: seconds a new worker may take to connect (for pods: to
      be scheduled, pull its image and connect); after it, the worker counts as
      a failed start, with the reason its backend gave.
    - ``speculate``: when a call's queue is empty and workers sit idle, run a
      copy of each task that has taken far longer than the call's typical
      one (a straggler: a slow node, a stalled process) on an idle worker;
      the first result wins and the other copy is cancelled. A task may then
      run twice, as after a lost worker: turn it off (here, or per call with
      ``speculate=False``) for tasks with side effects. Default True.
    - ``progress``: how calls that run longer than half a second show their
      progress. ``None`` (default): widgets in a notebook with the extension
      loaded, a text bar when standard error is a terminal, nothing otherwise
      or when the environment sets ``FIBER_JUPYTER_PROGRESS=off``; ``False``:
      never; ``True``: a text bar on standard error; or a display factory
      (:mod:`fiber_jupyter.progress`).
    """

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable] = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None, *,
                 backend: Union[None, str, BackendFactory] = None, name: Optional[str] = None,
                 max_retries: int = 2, heartbeat_timeout: float = 30.0,
                 start_timeout: float = 60.0, speculate: bool = True,
                 progress: Union[None, bool, progress_displays.DisplayFactory] = None) -> None:
        _check_options(initializer, max_retries, heartbeat_timeout, start_timeout)
        display_factory = _display_factory(progress)
        size = None if processes is None else _positive_int("processes", processes)
        lifetime = (None if maxtasksperchild is None
                    else _positive_int("maxtasksperchild", maxtasksperchild))
        init = serialization.dumps_inline((initializer, tuple(initargs))) if initializer else None
        config = SchedulerConfig(name or f"pool-{next(_pool_numbers)}", backend_factory(backend),
                                 size, init, lifetime, max_retries, float(heartbeat_timeout),
                                 float(start_timeout))
        self.name = config.name
        self.speculate = bool(speculate)
        self.events = EventStream()
        self._call_observers: List[CallObserver] = []
        self._notifier = Notifier(self.name)
        try:
            self._scheduler = Scheduler(config, self.events, self._notifier.post)
        except BaseException:
            self._notifier.close()
            raise
        self._state = _ApiState.RUN
        self._scheduler.start()
        self._finalizer = weakref.finalize(self, _shut_down, self._scheduler, self._notifier)
        if display_factory is not None:
            tracker = progress_displays.ProgressTracker(display_factory)
            self.on_call(tracker.call_started)
            self.events.subscribe(tracker.on_event)
        live_pools.track(self)

    # Introspection -----------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._scheduler.config.backend.name

    def status(self) -> PoolStatus:
        """Counts of workers and tasks, as of the scheduler's last turn (cheap)."""
        return self._scheduler.status

    def timeline(self) -> Timeline:
        """Each worker's recent batches over time, with losses, copies and resizes.

        A snapshot that Jupyter shows as a picture (``Timeline.to_svg``); it
        keeps the last 20,000 batches, so it is cheap for long runs too.
        """
        return self._scheduler.task_log.snapshot(self.name)

    def workers(self) -> List[WorkerInfo]:
        """Every worker's id, state and task count (asks the scheduler; about a millisecond)."""
        return self._scheduler.workers()

    def on_call(self, observer: CallObserver) -> CallObserver:
        """Call ``observer(call)`` in the calling thread whenever a call is submitted.

        It runs before the call is queued, so it sees every event of that call;
        an observer that raises is logged and does not stop the call. Progress
        displays use it to learn which notebook cell a call belongs to.
        """
        self._call_observers.append(observer)
        return observer

    def __repr__(self) -> str:
        status = self.status()
        return (f"<fiber_jupyter.Pool name={self.name!r} state={self._state.value} "
                f"backend={self.backend} target={status.target} live={status.live}>")

    # Size --------------------------------------------------------------------

    def scale(self, n: int) -> None:
        """Set the target number of workers; the pool converges to it (and stops adapting).

        Safe from any thread, also while another thread is blocked in ``map``.
        New workers take tasks as soon as they connect; surplus workers stop
        idle ones first and finish what they hold.
        """
        n = _positive_int("pool size", n)
        self._check_running()
        self._scheduler.scale(n)

    def adapt(self, minimum: int, maximum: int, idle_after: float = adaptive.IDLE_AFTER,
              target_duration: float = adaptive.TARGET_DURATION) -> None:
        """Let the size follow the backlog, between ``minimum`` and ``maximum`` workers.

        The pool grows as soon as its outstanding work would take longer than
        ``target_duration`` seconds on the workers it has, and shrinks once it
        has had more than it needs for ``idle_after`` seconds. Workers still
        starting count, so slow starts never cause extra requests.
        ``scale(n)`` switches adapting off; ``status().adapt`` says whether it
        is on. Safe from any thread.
        """
        settings = adaptive.AdaptSettings(minimum, maximum, idle_after, target_duration)
        self._check_running()
        self._scheduler.adapt(settings)

    # Code on every worker ----------------------------------------------------

    def execute(self, code: str, keep: bool = True,
                timeout: Optional[float] = None) -> List[WorkerOutput]:
        """Run Python ``code`` once on every worker, in the worker's own namespace.

        For set-up: imports, loading data, defining helpers. Functions sent
        later with ``map`` and the others see the names it defines (the
        caller's own names win). A worker busy with tasks runs it once it has
        finished the batches it holds.

        With ``keep`` (the default), workers that start later, when the pool
        grows or replaces a crashed worker, run it too before their first
        task; code that raised on any worker is not kept. Returns what it
        printed and raised on each worker, in worker order; a syntax error is
        raised here, before any worker runs anything.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a string of Python source, got {type(code).__name__}")
        compile(code, "<fiber setup>", "exec")
        self._check_running()
        reply = self._scheduler.execute(code, keep)
        for seconds in wait_slices(timeout):
            if reply.arrived(seconds):
                if isinstance(reply.value, BaseException):
                    raise reply.value
                return reply.value
        raise TimeoutError(f"not every worker ran the code within {timeout} s; it still runs")

    # Calls -------------------------------------------------------------------

    # Every call takes ``speculate``: None follows the pool's setting; False
    # never runs a copy of this call's tasks (see Pool), True allows it.

    def apply(self, func: Callable, args: Tuple = (), kwds: Optional[dict] = None, *,
              speculate: Optional[bool] = None) -> Any:
        return self.apply_async(func, args, kwds, speculate=speculate).get()

    def apply_async(self, func: Callable, args: Tuple = (), kwds: Optional[dict] = None,
                    callback: Optional[Callable] = None,
                    error_callback: Optional[Callable] = None, *,
                    speculate: Optional[bool] = None) -> AsyncResult:
        result = AsyncResult(1, True, callback, error_callback, self._notifier.post)
        self._submit(func, [(tuple(args), dict(kwds or {}))], CallMode.APPLY, None, result,
                     speculate)
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None, *,
            speculate: Optional[bool] = None) -> List:
        return self.map_async(func, iterable, chunksize, speculate=speculate).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                  callback: Optional[Callable] = None,
                  error_callback: Optional[Callable] = None, *,
                  speculate: Optional[bool] = None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, CallMode.ONE, callback, error_callback,
                               speculate)

    def starmap(self, func: Callable, iterable: Iterable,
                chunksize: Optional[int] = None, *, speculate: Optional[bool] = None) -> List:
        return self.starmap_async(func, iterable, chunksize, speculate=speculate).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                      callback: Optional[Callable] = None,
                      error_callback: Optional[Callable] = None, *,
                      speculate: Optional[bool] = None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, CallMode.STAR, callback, error_callback,
                               speculate)

    def imap(self, func: Callable, iterable: Iterable,
             chunksize: Optional[int] = None, *,
             speculate: Optional[bool] = None) -> IMapIterator:
        """Results in order, as they become available.

        Like every call, it reads the whole input before returning (CPython's
        pool does so eagerly too, in a thread); an endless generator never returns.
        ``chunksize=None`` batches automatically, where CPython's default is 1.
        """
        return self._imap(func, iterable, chunksize, True, speculate)

    def imap_unordered(self, func: Callable, iterable: Iterable,
                       chunksize: Optional[int] = None, *,
                       speculate: Optional[bool] = None) -> IMapIterator:
        """Results in the order they finish; otherwise as :meth:`imap`."""
        return self._imap(func, iterable, chunksize, False, speculate)

    def _map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int],
                   mode: CallMode, callback: Optional[Callable],
                   error_callback: Optional[Callable], speculate: Optional[bool]) -> AsyncResult:
        self._check_running()
        chunksize = _optional_chunksize(chunksize)
        items, input_error = _consume(iterable, chunksize)
        result = AsyncResult(len(items), False, callback, error_callback, self._notifier.post)
        if input_error is not None:
            result._fail(input_error)
            result._wake()
            return result
        self._submit(func, items, mode, chunksize, result, speculate)
        return result

    def _imap(self, func: Callable, iterable: Iterable, chunksize: Optional[int],
              ordered: bool, speculate: Optional[bool]) -> IMapIterator:
        self._check_running()
        chunksize = _optional_chunksize(chunksize)
        items, input_error = _consume(iterable, chunksize)
        iterator = IMapIterator(len(items), ordered, input_error)
        self._submit(func, items, CallMode.ONE, chunksize, iterator, speculate,
                     "imap" if ordered else "imap_unordered")
        return iterator

    def _submit(self, func: Callable, items: List[Any], mode: CallMode,
                chunksize: Optional[int], sink: Any, speculate: Optional[bool],
                call: Optional[str] = None) -> None:
        self._check_running()
        if not callable(func):
            raise TypeError(f"{func!r} is not callable")
        job_id = next(_job_ids)
        label = f"{call or _call_name(mode)}({getattr(func, '__qualname__', repr(func))})"
        job = Job(job_id, label, serialization.dumps_inline(func), int(mode), items,
                  chunksize, sink, speculate=self.speculate if speculate is None else speculate)
        self._announce(CallStarted(self.name, job_id, label, len(items)))
        scheduler = self._scheduler  # not self: a pending result must not keep the pool alive
        sink._on_cancel(lambda: _cancelled(scheduler, job_id, label))
        scheduler.submit(job)

    def _announce(self, call: CallStarted) -> None:
        for observer in self._call_observers:
            try:
                observer(call)
            except Exception:
                log.exception("call observer %r failed on %r", observer, call)
        if self.events.has_subscribers:
            events = self.events
            self._notifier.post(lambda: events.deliver(call))

    # Lifecycle ---------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state is not _ApiState.RUN:
            raise PoolStateError(f"Pool not running: pool {self.name!r} was {self._state.value}; "
                                 "make a new one")
        if self._scheduler.state is PoolState.BROKEN:
            raise BrokenPoolError(f"pool {self.name} is broken: {self._scheduler.broken_reason}")

    def close(self) -> None:
        """Take no more work; workers exit once everything submitted is done."""
        if self._state is _ApiState.RUN:
            self._state = _ApiState.CLOSE
            self._scheduler.close()

    def terminate(self) -> None:
        """Stop now: kill every worker and fail every pending call."""
        self._state = _ApiState.TERMINATE
        self._finalizer()

    def join(self) -> None:
        """Wait until the workers have exited, after ``close()`` or ``terminate()``."""
        if self._state is _ApiState.RUN:
            raise PoolStateError("Pool is still running: call close() or terminate() first")
        self._scheduler.join()
        self._notifier.close()

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __del__(self) -> None:
        if getattr(self, "_state", None) is _ApiState.RUN:
            warnings.warn(f"unclosed running fiber_jupyter pool {self.name}", ResourceWarning,
                          stacklevel=2, source=self)


def _shut_down(scheduler: Scheduler, notifier: Notifier) -> None:
    """Terminate a pool's scheduler (on terminate, garbage collection or exit)."""
    scheduler.terminate()
    if threading.current_thread() is not scheduler:
        scheduler.join()
    notifier.close()


def _display_factory(progress: Union[None, bool, progress_displays.DisplayFactory]
                     ) -> Optional[progress_displays.DisplayFactory]:
    if progress is None:
        return progress_displays.default_factory()
    if isinstance(progress, bool):
        return progress_displays.text_factory() if progress else None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be None, True, False or a display factory, got {progress!r}")


def _optional_chunksize(chunksize: Optional[int]) -> Optional[int]:
    return None if chunksize is None else _positive_int("chunksize", chunksize)


def _consume(iterable: Iterable,
             chunksize: Optional[int]) -> Tuple[List[Any], Optional[BaseException]]:
    """Read the input in the caller's thread; an error ends it like CPython's pool.

    The items before the failing one are kept, rounded down to whole chunks
    when the caller fixed ``chunksize`` (the failing chunk is not run).
    """
    items: List[Any] = []
    try:
        items.extend(iterable)  # keeps the items read before an error
    except Exception as exc:
        if chunksize:
            del items[len(items) - len(items) % chunksize:]
        return items, exc
    return items, None


def _cancelled(scheduler: Scheduler, job_id: int, label: str) -> BaseException:
    description = scheduler.cancel(job_id)
    return TaskCancelled(description or f"interrupted while waiting for {label}")


def _call_name(mode: CallMode) -> str:
    if mode is CallMode.APPLY:
        return "apply"
    return "starmap" if mode is CallMode.STAR else "map"
