"""How one task is called on a worker, and how its outcome travels back.

A task's outcome is either its return value or a :class:`TaskFailure`. A batch's
outcomes travel as one pickled list. Anything that cannot make the trip is
replaced on the worker by an error that says what and why, so a bad result
fails its own task and never the worker or the batch.
"""

from __future__ import annotations

import enum
import itertools
import pickle
import traceback
from typing import Any, Callable, Iterable, Iterator, List, Tuple

from . import serialization
from .errors import RemoteError, RemoteTraceback, ResultEncodingError


class CallMode(enum.IntEnum):
    """How an item of a job becomes a call."""

    ONE = 0  # fn(item)                      map, imap, imap_unordered
    STAR = 1  # fn(*item)                    starmap
    APPLY = 2  # fn(*item[0], **item[1])     apply, apply_async


def call_all(fn: Callable[..., Any], mode: int, items: List[Any],
             reraise: Tuple[type, ...] = ()) -> Tuple[List[Any], int]:
    """Call ``fn`` on every item: (outcomes in order, how many raised).

    The calls run in a C loop (``map``/``starmap`` feeding ``list.extend``),
    so a batch of no-op tasks costs little more than the function calls. An
    exception ends that loop; it is recorded and the loop resumes after it.
    Exceptions of the ``reraise`` types propagate (the worker's interrupt).
    """
    results: List[Any] = []
    errors = 0
    while len(results) < len(items):
        rest = itertools.islice(items, len(results), None)
        try:
            results.extend(_calls(fn, mode, rest))
        except reraise:
            raise
        except BaseException as exc:  # SystemExit from a task is that task's error
            results.append(TaskFailure.capture(exc))
            errors += 1
    return results, errors


def _calls(fn: Callable[..., Any], mode: int, items: Iterable[Any]) -> Iterator[Any]:
    if mode == CallMode.ONE:
        return map(fn, items)
    if mode == CallMode.STAR:
        return itertools.starmap(fn, items)
    return (fn(*args, **kwargs) for args, kwargs in items)


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


def encode_outcomes(outcomes: List[Any]) -> Tuple[serialization.Pickled, int]:
    """Pickle a batch's outcomes: (the pickle, how many could not be pickled).

    Each unpicklable outcome becomes a :class:`ResultEncodingError` in its place.
    """
    try:
        return serialization.dumps(outcomes), 0
    except Exception:
        encodable = [_encodable(outcome) for outcome in outcomes]
        unencodable = sum(a is not b for a, b in zip(encodable, outcomes))
        return serialization.dumps(encodable), unencodable


def _encodable(outcome: Any) -> Any:
    try:
        serialization.dumps(outcome)
    except Exception as exc:
        return TaskFailure(ResultEncodingError(exc, outcome), "")
    return outcome
