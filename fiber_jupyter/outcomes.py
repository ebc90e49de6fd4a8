"""How one task is called on a worker, and how its outcome travels back.

A task's outcome is either its return value or a :class:`TaskFailure`. A batch's
outcomes travel as one pickled list. Anything that cannot make the trip is
replaced on the worker by an error that says what and why, so a bad result
fails its own task and never the worker or the batch.
"""

from __future__ import annotations

import enum
import pickle
import traceback
from typing import Any, Callable, List

from . import serialization
from .errors import RemoteError, RemoteTraceback, ResultEncodingError


class CallMode(enum.IntEnum):
    """How an item of a job becomes a call."""

    ONE = 0  # fn(item)                      map, imap, imap_unordered
    STAR = 1  # fn(*item)                    starmap
    APPLY = 2  # fn(*item[0], **item[1])     apply, apply_async


def call(fn: Callable[..., Any], mode: int, item: Any) -> Any:
    if mode == CallMode.ONE:
        return fn(item)
    if mode == CallMode.STAR:
        return fn(*item)
    args, kwargs = item
    return fn(*args, **kwargs)


class TaskFailure:
    """An exception raised by a task, with the worker's traceback as text."""

    __slots__ = ("exception", "traceback_text")

    def __init__(self, exception: BaseException, traceback_text: str) -> None:
        self.exception = exception
        self.traceback_text = traceback_text

    @classmethod
    def capture(cls, exc: BaseException) -> "TaskFailure":
        """Wrap ``exc`` on the worker; falls back to :class:`RemoteError` if it won't round-trip."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        exc.__traceback__ = None
        try:
            pickle.loads(serialization.dumps(exc).data)
        except Exception:
            exc = RemoteError(type(exc).__qualname__, str(exc), text)
        return cls(exc, text)

    def to_exception(self) -> BaseException:
        """The task's exception on the master, with the remote traceback as its cause."""
        if self.traceback_text:
            self.exception.__cause__ = RemoteTraceback(self.traceback_text)
        return self.exception

    def __reduce__(self):
        return (TaskFailure, (self.exception, self.traceback_text))


def encode_outcomes(outcomes: List[Any]) -> serialization.Pickled:
    """Pickle a batch's outcomes; unpicklable ones become :class:`ResultEncodingError`."""
    try:
        return serialization.dumps(outcomes)
    except Exception:
        return serialization.dumps([_encodable(outcome) for outcome in outcomes])


def _encodable(outcome: Any) -> Any:
    try:
        serialization.dumps(outcome)
    except Exception as exc:
        return TaskFailure(ResultEncodingError(exc, outcome), "")
    return outcome
