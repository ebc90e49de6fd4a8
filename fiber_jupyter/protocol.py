"""The wire format between the master (the notebook's pool) and its workers.

Every message is one ZeroMQ multipart message::

    [kind, header, *body]

- ``kind``: one byte naming the message type (the ``KIND`` of each class below).
- ``header``: the message's fields, pickled as a plain tuple.
- ``body``: payload frames. ``Run`` carries ``[function, arguments, *buffers]``
  and ``Done`` carries ``[results, *buffers]``; ``buffers`` are the pickle
  protocol-5 out-of-band buffers, so arrays are never copied into a stream.

The master's ROUTER socket prepends the worker's identity on receipt and strips
it on send; that identity is the worker id the master assigned at launch.

Trust: nothing is decoded before ZeroMQ has authenticated the connection (the
ZAP handshake in :mod:`fiber_jupyter.security`). A peer without the pool's
secret never completes it, so none of its frames reach :func:`decode`. What an
authenticated peer sends is still checked, since a bug or a version mix there
must not crash the other side: :func:`decode` raises ProtocolError unless every
field has its declared type, and :func:`done_problem` says when a Done does not
answer its batch. The master stops a worker that sends either; a worker logs
such a message from its master and skips it.

Master to worker: Welcome (reply to Hello, carries the initializer), Run,
Cancel, Stop. Worker to master: Hello, Ready (initializer done or failed),
Done, Heartbeat.
"""

from __future__ import annotations

import math
import pickle
import reprlib
import typing
from typing import (Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type,
                    Union)

# A worker's second connection (heartbeats, cancels) uses its id plus this.
CONTROL_SUFFIX = "/control"

# Bumped whenever a message changes shape; a worker of another version is
# refused at Hello with a message naming both versions.
PROTOCOL_VERSION = 3


class Hello(NamedTuple):
    """First message of a worker: who it is."""

    worker_id: str
    pid: int
    host: str
    protocol: int
    KIND = b"H"


class Welcome(NamedTuple):
    """The master accepts a worker; the pickled initializer runs before any task.

    ``setup`` is the code kept by ``pool.execute``, run after the initializer,
    in order, in the worker's namespace.
    """

    initializer: Optional[bytes]
    setup: Tuple[str, ...]
    KIND = b"W"


class Ready(NamedTuple):
    """The worker ran its initializer and setup steps; ``error`` is the traceback if one raised.

    ``failed_step`` is None for the initializer, else the setup step's number (from 1).
    """

    error: Optional[str]
    failed_step: Optional[int]
    KIND = b"Y"


class Run(NamedTuple):
    """Run a batch of job ``job_id``'s items, called as ``mode`` (a CallMode) says.

    ``function_included`` says whether body frame 0 holds the job's pickled
    function (sent once per worker per job) or is empty. ``forget`` lists jobs
    whose functions the worker may drop from its cache.
    """

    batch_id: int
    job_id: int
    mode: int
    count: int
    function_included: bool
    forget: Tuple[int, ...]
    KIND = b"R"


class Done(NamedTuple):
    """A batch finished: ``count`` outcomes, ``errors`` of them exceptions.

    ``seconds`` is the time spent inside the user's function, which the
    master's chunking policy uses to size the next batches.
    """

    batch_id: int
    count: int
    errors: int
    seconds: float
    KIND = b"D"


class Execute(NamedTuple):
    """Run ``code`` in the worker's namespace (after the batches it holds); answer Executed."""

    run_id: int
    code: str
    KIND = b"E"


class Executed(NamedTuple):
    """What running ``code`` printed (stdout and stderr as written) and its traceback, if any."""

    run_id: int
    output: str
    error: Optional[str]
    KIND = b"X"


class Heartbeat(NamedTuple):
    """The worker is alive (sent by its I/O thread, whatever the task does), and what it uses:
    CPU seconds so far and resident bytes now."""

    cpu_seconds: float
    memory_bytes: int

    KIND = b"B"


class Cancel(NamedTuple):
    """Drop these batches if queued; interrupt the one running if it is listed."""

    batch_ids: Tuple[int, ...]
    KIND = b"C"


class Stop(NamedTuple):
    """Exit cleanly after the batches already received."""

    KIND = b"S"


MESSAGE_TYPES: Dict[bytes, Type[Any]] = {
    cls.KIND: cls for cls in (Hello, Welcome, Ready, Run, Done, Execute, Executed,
                              Heartbeat, Cancel, Stop)
}


class ProtocolError(Exception):
    """An authenticated peer sent frames that are not a message of this version."""


def encode(message: Any, body: Sequence[Any] = ()) -> List[Any]:
    """Frames for ``message`` followed by its body frames."""
    return [message.KIND, pickle.dumps(tuple(message), protocol=5), *body]


def decode(frames: Sequence[Any]) -> Tuple[Any, List[Any]]:
    """Inverse of :func:`encode`: the message and its body frames.

    Accepts ``bytes`` or ``zmq.Frame`` objects (the body keeps its type, so
    payloads stay zero-copy).
    """
    if len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames, got {len(frames)}")
    kind, header, *body = frames
    cls = MESSAGE_TYPES.get(_as_bytes(kind))
    if cls is None:
        raise ProtocolError(f"unknown message kind {_as_bytes(kind)[:8]!r}")
    try:
        message = cls(*pickle.loads(_as_bytes(header)))
    except Exception as exc:
        raise ProtocolError(f"malformed {cls.__name__} header: {exc}") from exc
    _check_fields(message)
    return message, body


def done_problem(done: Done, batch_count: int, body: Sequence[Any]) -> Optional[str]:
    """What makes ``done`` no answer to a batch of ``batch_count`` items, or None.

    A worker sends one outcome per item, counts its failures among them and
    times its calls; the master counts tasks, delivers outcomes and sizes
    batches from these numbers, so a Done that breaks them must not be taken.
    """
    if done.count != batch_count:
        return f"Done {done.batch_id} has {done.count} outcomes for a batch of {batch_count}"
    if not 0 <= done.errors <= done.count:
        return f"Done {done.batch_id} counts {done.errors} errors among {done.count} outcomes"
    if not 0 <= done.seconds < math.inf:
        return f"Done {done.batch_id} took {done.seconds!r} s"
    if not body:
        return f"Done {done.batch_id} carries no outcomes"
    return None


def _check_fields(message: Any) -> None:
    """Raise ProtocolError unless every field has the type its class declares.

    Handlers index dicts with ids, count with counts and iterate tuples: a
    field of another type would raise in the middle of the master's I/O loop
    or the worker's task loop, far from the frame that caused it.
    """
    for (name, declared, fits), value in zip(_FIELD_CHECKS[type(message)], message):
        if not fits(value):
            shown = declared.__name__ if isinstance(declared, type) else str(declared)
            raise ProtocolError(f"malformed {type(message).__name__} header: {name} must be "
                                f"{shown.replace('typing.', '')}, got {reprlib.repr(value)}")


def _fits(declared: Any) -> Callable[[Any], bool]:
    """A test for values of a field type of the kinds messages use: a class,
    Optional[X] and Tuple[X, ...]; a float field takes an int too."""
    origin, arguments = typing.get_origin(declared), typing.get_args(declared)
    if origin is Union:
        options = [_fits(option) for option in arguments]
        return lambda value: any(fits(value) for fits in options)
    if origin is tuple:
        item_fits = _fits(arguments[0])
        return lambda value: isinstance(value, tuple) and all(map(item_fits, value))
    expected = (int, float) if declared is float else declared
    return lambda value: isinstance(value, expected)


# Per message type, each field's name, declared type and test, in field order.
_FIELD_CHECKS: Dict[Type[Any], List[Tuple[str, Any, Callable[[Any], bool]]]] = {
    cls: [(name, declared, _fits(declared))
          for name, declared in typing.get_type_hints(cls).items()]
    for cls in MESSAGE_TYPES.values()
}


def _as_bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else frame.bytes
