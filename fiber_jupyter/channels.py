"""How a process uses a queue of the notebook's broker: the wire format and the client side.

Every SimpleQueue and Pipe is one or two queues held by a broker in the
notebook's process (:mod:`fiber_jupyter.broker`). Whoever holds a queue's
:class:`Endpoint` (the broker's address, its credentials, the queue's id) can
use it from any process: the notebook, a local job, a pod. An endpoint is
what a SimpleQueue or a Pipe end pickles into; the copy connects on first use.

Wire format: one ZeroMQ multipart message per request and per reply::

    request  [op, queue id, *item]     DEALER -> broker ROUTER (which prepends the identity)
    reply    [status, *item or text]

    PUT     item  -> OK            the item is in the broker when put() returns
    GET           -> ITEM item     at once, or when an item arrives
                  |  NONE          after a CANCEL that found the GET still waiting
    CANCEL        -> NONE, or no reply: the ITEM already sent is the GET's answer
    UNGET   item  -> no reply      an item a getter received but cannot return
                                   (it was interrupted) goes back to the front
    COUNT         -> COUNT n
    any           -> ERROR text    for instance, the queue was dropped in the notebook

``item`` is a pickle and its out-of-band buffers (:mod:`fiber_jupyter.serialization`);
the broker never unpickles anything. Every request but UNGET gets exactly one
reply, and a connection serves one thread at a time, so replies need no ids.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import List, Optional

import zmq

from . import security
from .errors import FiberError
from .results import wait_slices

log = logging.getLogger(__name__)

# Seconds the broker may take to answer a request it answers at once (PUT, COUNT,
# CANCEL), item transfer included. Past it the broker is taken to be gone (its
# queue dropped, the notebook closed, the network cut) and the call fails instead
# of waiting for ever; a slow link moving a huge item needs it.
REPLY_TIMEOUT = 60.0
# How long a closed connection may still deliver an UNGET or a last request.
LINGER_MS = 1000


class Op(bytes, enum.Enum):
    PUT = b"P"
    GET = b"G"
    CANCEL = b"C"
    UNGET = b"U"
    COUNT = b"N"


class Status(bytes, enum.Enum):
    OK = b"K"
    ITEM = b"I"
    NONE = b"0"
    COUNT = b"#"
    ERROR = b"E"


class ChannelError(FiberError, OSError):
    """A queue or pipe end that cannot be used: closed, dropped in the notebook, or unreachable.

    An ``OSError``, as multiprocessing raises for a closed connection.
    """


@dataclass(frozen=True)
class Endpoint:
    """Where one queue is, and the credentials that open its broker's door."""

    address: str
    token: str = field(repr=False)
    queue_id: int

    def request(self, op: Op, item: List = ()) -> list:
        return [op.value, str(self.queue_id).encode(), *item]


# This process's ZeroMQ context for queue connections, created with the first
# connection and terminated with the last, so that a process which closed its
# queues keeps no ZeroMQ thread. An RLock: a queue collected by a garbage
# collection that runs while this thread holds it closes its connections inside.
_context_lock = threading.RLock()
_context: Optional[zmq.Context] = None
_context_users = 0


def _acquire_context() -> zmq.Context:
    global _context, _context_users
    with _context_lock:
        if _context is None:
            _context = zmq.Context()
        _context_users += 1
        return _context


def _release_context() -> None:
    global _context, _context_users
    with _context_lock:
        _context_users -= 1
        if _context_users == 0:
            _context.term()
            _context = None


class Link:
    """One connection to a broker, created on first use; its ``lock`` serialises requests."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.lock = threading.Lock()
        self._endpoint = endpoint
        self._socket: Optional[zmq.Socket] = None

    def send(self, frames: list) -> None:
        self._connected().send_multipart(frames, copy=False)

    def receive(self, timeout: Optional[float]) -> Optional[list]:
        """The next reply, or None after ``timeout`` seconds (None: no limit)."""
        socket = self._connected()
        for seconds in wait_slices(timeout):
            if socket.poll(None if seconds is None else int(seconds * 1000)):
                return socket.recv_multipart(copy=False)
        return None

    def answer(self) -> list:
        """The reply to a request the broker answers at once."""
        reply = self.receive(REPLY_TIMEOUT)
        if reply is None:
            self.close()  # a late reply must not be taken for the next request's
            raise ChannelError(f"the queue's broker at {self._endpoint.address} did not answer "
                               f"within {REPLY_TIMEOUT:.0f} s: the notebook that holds the queue "
                               "dropped it, ended, or cannot be reached from here")
        return reply

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=LINGER_MS)
            self._socket = None
            _release_context()

    def _connected(self) -> zmq.Socket:
        if self._socket is None:
            socket = _acquire_context().socket(zmq.DEALER)
            socket.identity = uuid.uuid4().hex.encode()  # the broker routes replies by it
            socket.sndhwm = socket.rcvhwm = 0  # never drop: every request waits for its reply
            security.authenticate(socket, self._endpoint.token)
            socket.connect(self._endpoint.address)
            self._socket = socket
        return self._socket


def _close_links(*links: Link) -> None:
    for link in links:
        with link.lock:
            link.close()


class Channel:
    """One queue as one object of one process sees it: put, get, count, close.

    Getting and putting use a connection each, as multiprocessing's SimpleQueue
    has a read lock and a write lock: a thread blocked in ``get`` never holds up
    another thread's ``put`` on the same object. Connections close with the
    object, or when it is garbage-collected.
    """

    def __init__(self, endpoint: Endpoint, label: str) -> None:
        self.endpoint = endpoint
        self._label = label
        self._reader = Link(endpoint)
        self._writer = Link(endpoint)
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_links, self._reader, self._writer)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: list) -> None:
        """Hand ``item`` (pickled frames) to the broker; returns once it holds it."""
        with self._writer.lock:
            self._check_open()
            self._writer.send(self.endpoint.request(Op.PUT, item))
            _check(self._writer.answer(), Status.OK)

    def get(self, timeout: Optional[float]) -> list:
        """The next item's frames; ``queue.Empty`` if none came within ``timeout`` seconds."""
        link = self._reader
        with link.lock:
            self._check_open()
            link.send(self.endpoint.request(Op.GET))
            try:
                reply = link.receive(timeout)
                if reply is None:
                    link.send(self.endpoint.request(Op.CANCEL))
                    reply = link.answer()
            except ChannelError:
                raise  # the broker is gone: nothing to withdraw
            except BaseException:  # interrupted: the GET must not leave an item on this link
                self._abandon(link)
                raise
        if Status(reply[0].bytes) is Status.NONE:
            raise queue.Empty
        return _check(reply, Status.ITEM)

    def count(self) -> int:
        """How many items the queue holds now."""
        with self._writer.lock:
            self._check_open()
            self._writer.send(self.endpoint.request(Op.COUNT))
            (count,) = _check(self._writer.answer(), Status.COUNT)
        return int(count.bytes)

    def close(self) -> None:
        """Close this object's connections; other copies of the queue keep working.

        Waits for a ``get`` that another thread has in progress on this object.
        """
        self._closed = True
        self._finalizer()

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelError(f"{self._label} is closed")

    def _abandon(self, link: Link) -> None:
        """Withdraw a pending GET; an item already on its way goes back to the front.

        A second CANCEL (if the first was sent already) gets no reply, so the one
        reply awaited here answers the GET either way.
        """
        try:
            link.send(self.endpoint.request(Op.CANCEL))
            reply = link.receive(REPLY_TIMEOUT)
            if reply is not None and Status(reply[0].bytes) is Status.ITEM:
                link.send(self.endpoint.request(Op.UNGET, reply[1:]))
        finally:
            link.close()  # anything still unread belongs to no request of a new link


def _check(reply: list, expected: Status) -> list:
    """The frames after the status; a ChannelError if the broker answered ERROR."""
    status = Status(reply[0].bytes)
    if status is Status.ERROR:
        raise ChannelError(reply[1].bytes.decode(errors="replace"))
    if status is not expected:
        raise ChannelError(f"the queue's broker answered {status.name} where {expected.name} "
                           "was due: a fiber_jupyter version mix?")
    return reply[1:]
