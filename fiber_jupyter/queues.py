"""``SimpleQueue`` and ``Pipe``: multiprocessing's channels, for the notebook and its processes.

Both are queues held by the notebook's broker (:mod:`fiber_jupyter.broker`).
Pass them to :class:`fiber_jupyter.Process` as arguments (or put them on
another queue): a copy pickles into the queue's endpoint (address,
credentials, queue id) and connects to the broker when first used, from a
local job or a pod alike.

What holds:

- **FIFO per queue**, and each item goes to **exactly one getter**. ``put``
  returns once the broker holds the item, so an item survives its putter
  ending right after.
- ``get(timeout)`` raises ``queue.Empty`` when nothing came in time; a get that
  timed out or was interrupted takes no item with it.
- **Bad input fails at the call**: an item that cannot be pickled is a
  ``TypeError`` naming it, at ``put``/``send``.
- **Lifetime:** the queue lives while the object made in the notebook does
  (directly, or as an argument of a Process that holds it); when that object
  is garbage-collected the queue is dropped, and the broker stops with its
  last queue. ``close()`` closes one object's connections, as multiprocessing's
  does: other copies keep working.

Items are pickled with plain pickle, or cloudpickle when it must (functions
and classes of the notebook); NumPy arrays travel as out-of-band buffers.
"""

from __future__ import annotations

import queue
import reprlib
import weakref
from typing import Any, Callable, Optional, Tuple, Union

from . import broker, serialization
from .backends import BackendFactory
from .channels import Channel, ChannelError, Endpoint

Backend = Union[None, str, BackendFactory]

# Names an item in an error: long enough for "<unlocked _thread.lock object at 0x7f...>".
_item_repr = reprlib.Repr()
_item_repr.maxother = _item_repr.maxstring = 80


def _pickled(obj: Any, where: str) -> list:
    try:
        return serialization.dumps(obj).frames()
    except Exception as exc:
        raise TypeError(f"cannot {where} {_item_repr.repr(obj)}: it cannot be pickled "
                        f"({type(exc).__name__}: {exc})") from exc


def _unpickled(frames: list) -> Any:
    data, *buffers = frames
    return serialization.loads(memoryview(data), [memoryview(frame) for frame in buffers])


class SimpleQueue:
    """A FIFO queue between the notebook and its job-backed processes.

    ``backend`` names the backend of the processes that will use it, as
    :class:`~fiber_jupyter.Process` takes it: local processes (default) reach
    it on 127.0.0.1; pods on the address their pools listen on, encrypted.
    A queue made for Kubernetes serves local processes as well.
    """

    def __init__(self, *, backend: Backend = None) -> None:
        endpoint, release = broker.open_queue(backend)
        self._channel = Channel(endpoint, f"SimpleQueue {endpoint.queue_id}")
        # This object owns the queue: it is dropped from the broker when this object goes.
        weakref.finalize(self, release)

    def put(self, obj: Any) -> None:
        """Put ``obj`` on the queue; returns once the notebook's broker holds it."""
        self._channel.put(_pickled(obj, "put"))

    def get(self, timeout: Optional[float] = None) -> Any:
        """The oldest item; waits up to ``timeout`` s (None: for ever), then ``queue.Empty``."""
        return _unpickled(self._channel.get(timeout))

    def empty(self) -> bool:
        """Whether the queue holds no item now."""
        return self._channel.count() == 0

    def close(self) -> None:
        """Close this object's connections; copies elsewhere keep working. Idempotent."""
        self._channel.close()

    def __reduce__(self) -> Tuple[Callable[[Endpoint], "SimpleQueue"], Tuple[Endpoint]]:
        return _attach_queue, (self._channel.endpoint,)

    def __repr__(self) -> str:
        endpoint = self._channel.endpoint
        closed = " closed" if self._channel.closed else ""
        return f"<fiber_jupyter.SimpleQueue {endpoint.queue_id} at {endpoint.address}{closed}>"


def _attach_queue(endpoint: Endpoint) -> SimpleQueue:
    """A copy of a queue, unpickled in a process (it owns nothing)."""
    copy = SimpleQueue.__new__(SimpleQueue)
    copy._channel = Channel(endpoint, f"SimpleQueue {endpoint.queue_id}")
    return copy


class _PipeQueues:
    """The queues of one pipe, dropped once both ends made in the notebook are gone."""

    def __init__(self, backend: Backend, duplex: bool) -> None:
        self.forward, release_forward = broker.open_queue(backend)
        self.backward: Optional[Endpoint] = None
        releases = [release_forward]
        if duplex:
            self.backward, release_backward = broker.open_queue(backend)
            releases.append(release_backward)
        weakref.finalize(self, _release_all, releases)


def _release_all(releases: list) -> None:
    for release in releases:
        release()


class Connection:
    """One end of a :func:`Pipe`: ``send``, ``recv``, ``poll``, ``close``.

    As :class:`multiprocessing.connection.Connection`, except that ``recv`` on
    an end whose other end was closed waits instead of raising ``EOFError``:
    send a sentinel to say you are done.
    """

    def __init__(self, receiving: Optional[Endpoint], sending: Optional[Endpoint],
                 queues: Optional[_PipeQueues]) -> None:
        self._receiving = receiving and Channel(receiving, "this pipe end")
        self._sending = sending and Channel(sending, "this pipe end")
        self._queues = queues  # in the notebook: keeps the pipe's queues alive
        self._polled: Optional[list] = None  # a message poll() took, for the next recv()
        self._closed = False

    @property
    def readable(self) -> bool:
        return self._receiving is not None

    @property
    def writable(self) -> bool:
        return self._sending is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, obj: Any) -> None:
        """Send ``obj`` to the other end; returns once the notebook's broker holds it."""
        self._check("write")
        self._sending.put(_pickled(obj, "send"))

    def recv(self) -> Any:
        """The next message from the other end; waits until there is one."""
        self._check("read")
        frames = self._polled if self._polled is not None else self._receiving.get(None)
        self._polled = None
        return _unpickled(frames)

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether a message is there to ``recv``, waiting up to ``timeout`` s (None: for ever)."""
        self._check("read")
        if self._polled is None:
            try:
                self._polled = self._receiving.get(timeout)
            except queue.Empty:
                return False
        return True

    def close(self) -> None:
        """Close this end's connections; a copy of it elsewhere keeps working. Idempotent."""
        self._closed = True
        for channel in (self._receiving, self._sending):
            if channel is not None:
                channel.close()

    def _check(self, access: str) -> None:
        if self._closed:
            raise ChannelError("this Connection is closed")
        if access == "read" and not self.readable:
            raise ChannelError("this Connection is write-only")
        if access == "write" and not self.writable:
            raise ChannelError("this Connection is read-only")

    def __reduce__(self) -> Tuple[Callable[..., "Connection"], Tuple]:
        receiving = self._receiving and self._receiving.endpoint
        sending = self._sending and self._sending.endpoint
        return Connection, (receiving, sending, None)

    def __repr__(self) -> str:
        access = "duplex" if self.readable and self.writable else (
            "read-only" if self.readable else "write-only")
        return f"<fiber_jupyter.Connection {access}{' closed' if self._closed else ''}>"


def Pipe(duplex: bool = True, *, backend: Backend = None) -> Tuple[Connection, Connection]:
    """Two connected ends, as :func:`multiprocessing.Pipe`.

    ``duplex=False`` gives ``(reader, writer)``: the first end only receives,
    the second only sends. ``backend`` as for :class:`SimpleQueue`.
    """
    queues = _PipeQueues(backend, duplex)
    if not duplex:
        return (Connection(queues.forward, None, queues),
                Connection(None, queues.forward, queues))
    return (Connection(queues.backward, queues.forward, queues),
            Connection(queues.forward, queues.backward, queues))

