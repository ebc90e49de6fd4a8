"""What callers hold while work runs: AsyncResult and the imap iterators.

The scheduler's I/O thread hands each finished batch over still pickled (a
:class:`Chunk`); unpickling happens in the thread that asks for the values.
That keeps user data out of the I/O thread, so a huge or slow-to-unpickle
result never delays heartbeats or dispatch.

Handing over is two steps: ``_deliver``/``_fail`` store, ``_wake`` signals the
waiting threads. The scheduler wakes at the end of its loop turn, just before
it sleeps, so a woken caller never waits for the GIL while the I/O thread
finishes its bookkeeping (that wait is most of an ``apply`` round trip).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from . import serialization
from .errors import TimeoutError
from .outcomes import TaskFailure

# Asks the pool to cancel this call's work; returns the TaskCancelled to raise.
CancelHook = Callable[[], BaseException]
Callback = Optional[Callable[[Any], None]]

# Seconds between two runs of the waiting hook while a thread waits for a result.
WAIT_SLICE = 0.05
_waiting_hook: Optional[Callable[[], None]] = None


def set_waiting_hook(hook: Optional[Callable[[], None]]) -> None:
    """Run ``hook()`` every WAIT_SLICE seconds in any thread blocked on a result.

    For hosts that serve their own messages only when the caller returns: the
    Jupyter layer sets it in kernels that handle widget messages only between
    cells (ipykernel 6), so a slider moved during ``pool.map`` acts at once.
    """
    global _waiting_hook
    _waiting_hook = hook


def wait_slices(timeout: Optional[float]) -> Iterator[Optional[float]]:
    """Timeouts for successive waits that add up to ``timeout``.

    Without a waiting hook that is ``timeout`` itself, in one wait; with one,
    slices of WAIT_SLICE seconds with the hook run between them.
    """
    hook = _waiting_hook
    if hook is None:
        yield timeout
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        yield WAIT_SLICE if remaining is None else min(WAIT_SLICE, remaining)
        if remaining is not None and remaining <= WAIT_SLICE:
            return
        hook()


# libzmq receives small messages into shared 8 KB buffers, and a frame kept from
# one pins the whole buffer. A chunk can wait long (a map returns once all of them
# are in), so frames below this size are copied out when the chunk is made.
COPY_FRAMES_BELOW = 64 * 1024


class Chunk:
    """The outcomes of items ``[start, start + count)``: pickled frames or a failure."""

    __slots__ = ("start", "count", "errors", "_frames", "_failure")

    def __init__(self, start: int, count: int, errors: int, frames: Optional[list] = None,
                 failure: Optional[BaseException] = None) -> None:
        self.start = start
        self.count = count
        self.errors = errors
        self._frames = None if frames is None else [_own_copy(frame) for frame in frames]
        self._failure = failure

    @classmethod
    def failed(cls, start: int, count: int, failure: BaseException) -> "Chunk":
        return cls(start, count, count, failure=failure)

    def outcomes(self) -> List[Any]:
        """Values and TaskFailures, in item order."""
        if self.count == 0:
            return []
        if self._failure is not None:
            return [TaskFailure(self._failure, "")] * self.count
        data, *buffers = self._frames
        return serialization.loads(memoryview(data), [memoryview(frame) for frame in buffers])


def _own_copy(frame: Any) -> Any:
    """``frame``, or for a small one a copy that pins no receive buffer (COPY_FRAMES_BELOW)."""
    return bytes(memoryview(frame)) if len(frame) < COPY_FRAMES_BELOW else frame


def _unwrap(outcome: Any) -> Any:
    if isinstance(outcome, TaskFailure):
        raise outcome.to_exception()
    return outcome


class AsyncResult:
    """The pending result of ``apply_async``, ``map_async`` or ``starmap_async``.

    Same contract as :class:`multiprocessing.pool.AsyncResult`. Waiting is
    interruptible: a KeyboardInterrupt cancels the call's work on the pool.
    """

    def __init__(self, total: int, single: bool, callback: Callback = None,
                 error_callback: Callback = None, post: Optional[Callable] = None) -> None:
        self._total = total
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._post = post
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._chunks: List[Chunk] = []
        self._received = 0
        self._failure: Optional[BaseException] = None
        self._outcome: Optional[Tuple[bool, Any]] = None
        self._cancel: Optional[CancelHook] = None
        self._complete = False
        self._woken = False

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._materialize()[0]

    def wait(self, timeout: Optional[float] = None) -> None:
        try:
            for seconds in wait_slices(timeout):
                if self._event.wait(seconds):
                    return
        except KeyboardInterrupt:
            self._raise_cancelled()

    def get(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(f"no result within {timeout} s")
        ok, value = self._materialize()
        if ok:
            return value
        raise value

    def __repr__(self) -> str:
        state = "ready" if self.ready() else f"{self._received}/{self._total} done"
        return f"<fiber_jupyter.AsyncResult {state}>"

    # Called by the pool ----------------------------------------------------

    def _on_cancel(self, hook: CancelHook) -> None:
        self._cancel = hook

    def _raise_cancelled(self) -> None:
        if self._cancel is None or self.ready():
            raise KeyboardInterrupt
        raise self._cancel()

    def _deliver(self, chunk: Chunk) -> bool:
        """Store a finished batch; True when this call is now complete (or failed fast)."""
        with self._lock:
            if not self._complete:
                self._chunks.append(chunk)
                self._received += chunk.count
                self._complete = self._received >= self._total or chunk.errors > 0
            return self._complete

    def _fail(self, failure: BaseException) -> None:
        """Fail the whole call (terminated pool, bad input, broken pool, cancel)."""
        with self._lock:
            if not self._complete:
                self._failure = failure
                self._complete = True

    def _wake(self) -> None:
        """Release waiters (after the callbacks, if any) once the call is complete."""
        if not self._complete or self._woken:
            return
        self._woken = True
        if self._post is not None and (self._callback or self._error_callback):
            self._post(self._run_callbacks)
        else:
            self._event.set()

    def _run_callbacks(self) -> None:
        ok, value = self._materialize()
        handler = self._callback if ok else self._error_callback
        try:
            if handler is not None:
                handler(value)
        finally:
            self._event.set()

    def _materialize(self) -> Tuple[bool, Any]:
        """Unpickle once: (True, value) or (False, the exception to raise)."""
        with self._lock:
            if self._outcome is None:
                self._outcome = self._assemble()
                self._chunks = []
            return self._outcome

    def _assemble(self) -> Tuple[bool, Any]:
        if self._failure is not None:
            return False, self._failure
        values: List[Any] = []
        for chunk in sorted(self._chunks, key=lambda c: c.start):
            try:
                outcomes = chunk.outcomes()
            except Exception as exc:  # a result that cannot be unpickled here
                return False, exc
            # Not caught: a KeyboardInterrupt while unpickling is the caller's, not
            # the call's outcome; the chunks stay, so the next get() has the values.
            if chunk.errors:  # the first task that raised, in item order
                failure = next((o for o in outcomes if isinstance(o, TaskFailure)), None)
                if failure is not None:
                    return False, failure.to_exception()
            values.extend(outcomes)
        return True, values[0] if self._single else values


class IMapIterator:
    """Results of ``imap`` (in order) or ``imap_unordered`` (as they finish).

    ``input_error``, when the input iterable raised, is raised after the
    ``total`` items before it, as :meth:`multiprocessing.pool.Pool.imap` does.
    """

    def __init__(self, total: int, ordered: bool,
                 input_error: Optional[BaseException] = None) -> None:
        self._total = total
        self._ordered = ordered
        self._input_error = input_error
        self._condition = threading.Condition()
        self._arrived: Dict[int, Chunk] = {}
        self._arrival_order: Deque[Chunk] = collections.deque()
        self._buffer: Deque[Any] = collections.deque()
        self._consumed = 0
        self._failure: Optional[BaseException] = None
        self._cancel: Optional[CancelHook] = None

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next result; raises the task's exception in its place."""
        if not self._buffer:
            self._refill(timeout)
        return _unwrap(self._buffer.popleft())

    def _refill(self, timeout: Optional[float]) -> None:
        try:
            self._take_next_chunk(timeout)
        except KeyboardInterrupt:
            # Outside the condition's lock: cancelling delivers to this iterator.
            raise (self._cancel() if self._cancel else KeyboardInterrupt()) from None

    def _take_next_chunk(self, timeout: Optional[float]) -> None:
        for seconds in wait_slices(timeout):
            with self._condition:
                if self._consumed >= self._total:
                    self._finish()
                if not self._condition.wait_for(self._next_chunk_ready, seconds):
                    continue
                if self._failure is not None:
                    raise self._failure
                chunk = self._take_chunk()
                self._consumed += chunk.count
            self._buffer.extend(chunk.outcomes())
            return
        raise TimeoutError(f"no result within {timeout} s")

    def _finish(self) -> None:
        if self._input_error is not None:
            error, self._input_error = self._input_error, None
            raise error
        raise StopIteration

    def _next_chunk_ready(self) -> bool:
        if self._failure is not None:
            return True
        if self._ordered:
            return self._consumed in self._arrived
        return bool(self._arrival_order)

    def _take_chunk(self) -> Chunk:
        if self._ordered:
            return self._arrived.pop(self._consumed)
        return self._arrival_order.popleft()

    # Called by the pool ----------------------------------------------------

    def _on_cancel(self, hook: CancelHook) -> None:
        self._cancel = hook

    def _deliver(self, chunk: Chunk) -> bool:
        with self._condition:
            if self._ordered:
                self._arrived[chunk.start] = chunk
            else:
                self._arrival_order.append(chunk)
        return False

    def _fail(self, failure: BaseException) -> None:
        with self._condition:
            if self._failure is None:
                self._failure = failure

    def _wake(self) -> None:
        with self._condition:
            self._condition.notify_all()
