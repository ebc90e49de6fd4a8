"""Every way a fiber_jupyter pool can fail, each with its own type.

All types share the root :class:`FiberError`. Where code written for
:mod:`multiprocessing` expects a standard type (``ValueError`` after
``close()``, ``multiprocessing.TimeoutError`` from ``get(timeout)``,
``MaybeEncodingError`` for a result that cannot be pickled), ours subclasses it,
so existing ``except`` clauses keep working and new code can be precise.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from typing import Sequence


class FiberError(Exception):
    """Root of every error raised by fiber_jupyter itself."""


class PoolStateError(FiberError, ValueError):
    """The pool is closed, terminated or broken and takes no new work.

    A ``ValueError`` because that is what ``multiprocessing.Pool`` raises.
    """


class PoolSizeError(FiberError, ValueError):
    """A pool size or per-worker limit that is not a positive integer."""


class TimeoutError(FiberError, multiprocessing.TimeoutError):
    """``AsyncResult.get(timeout)`` ran out of time; the work goes on."""


class RemoteTraceback(multiprocessing.pool.RemoteTraceback):
    """The worker-side traceback, attached as ``__cause__`` of a task's exception.

    Subclasses the standard library's type so tools that recognise it (and the
    interpreter's own traceback printing) show the worker's frames.
    """


class RemoteError(FiberError):
    """A task raised an exception that could not be sent back as itself.

    Carries the original type name, message and worker traceback as text.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __reduce__(self):
        return (type(self), (self.type_name, self.message, self.traceback_text))


class ResultEncodingError(FiberError, multiprocessing.pool.MaybeEncodingError):
    """A task's result could not be pickled on the worker; the worker survives."""


class WorkerLostError(FiberError):
    """A task lost its worker once more than the pool's ``max_retries`` allows.

    Names the task and every worker exit it saw, so the cause (a segfault, the
    kernel's OOM killer, a call to ``os._exit``) is visible without logs.
    """

    def __init__(self, task: str, exits: Sequence[str]) -> None:
        lines = "; ".join(exits)
        super().__init__(
            f"{task} failed: it lost its worker {len(exits)} times ({lines}). "
            "A task that keeps killing its worker usually crashes the interpreter "
            "(segfault), exhausts memory (SIGKILL from the OOM killer) or calls os._exit."
        )
        self.task = task
        self.exits = tuple(exits)


class BrokenPoolError(FiberError):
    """The pool can no longer run work; the message says why.

    Raised for every pending call at once, and by every later call.
    """


class InitializerError(BrokenPoolError):
    """The pool's ``initializer`` raised in a worker, so no worker can run tasks."""


class PoolTerminatedError(FiberError):
    """The pool was terminated while this call was still waiting for results."""


class TaskCancelled(FiberError, KeyboardInterrupt):
    """A waiting call was interrupted; its work was cancelled on the pool.

    A ``KeyboardInterrupt`` so that Jupyter and the interpreter treat it as the
    interrupt it is; the message says what was dropped and what was stopped.
    """
