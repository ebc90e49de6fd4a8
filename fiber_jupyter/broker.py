"""The queue broker: the notebook's process holds every SimpleQueue and Pipe, and serves them.

::

    SimpleQueue(), Pipe() ── open / drop ──▶ inbox ─┐
                                                    ▼
    processes: the notebook, local jobs, pods      Broker thread: one poll over
      DEALER (channels.Link) ══ tcp ══ ROUTER ──▶   ZAP socket · inbox · ROUTER
                                                    queues {id: items, waiting getters}

As Fiber did, queues live in the process that made them (Fiber ran one
ZeroMQ device per queue; here one broker serves all the queues of one listen
address). Processes connect to it; nobody listens anywhere else.

- **Where it listens:** where the pools of the queue's backend listen
  (:func:`listen_host`): 127.0.0.1 for local jobs, the address pods reach for
  Kubernetes. One broker per address and kind of security, started with its
  first queue and stopped (thread, sockets, ZeroMQ context) with its last.
- **Who may talk to it:** holders of its credentials, checked in the ZeroMQ
  handshake by the same ZAP handler as a pool's (:mod:`fiber_jupyter.security`):
  PLAIN on loopback, CURVE (encrypted) for remote backends. A peer without them
  never gets a frame delivered. Items are never unpickled here anyway.
- **Its one thread owns every socket and every queue.** Owners in other threads
  open and drop queues through its inbox; requests arrive on the ROUTER.
- **Hand-off:** an item goes to the getter that has waited longest, else to the
  back of its queue. A getter that disconnected while waiting is skipped
  (``router_mandatory`` makes the send fail); an item sent to a getter that dies
  with it is lost with it, as with a multiprocessing queue.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Tuple, Union

import zmq

from . import security
from .backends import BackendFactory, backend_factory
from .backends.kubernetes.config import default_address
from .channels import Endpoint, Op, Status
from .inbox import Inbox
from .results import COPY_FRAMES_BELOW

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"  # where local pools listen (LocalBackend.listen_host)
# Requests read per wakeup before the inbox and the ZAP socket get a turn.
RECEIVE_BATCH = 256
# How long replies already sent (a dropped queue's ERRORs) may take to leave at stop.
LINGER_MS = 1000


def listen_host(factory: BackendFactory) -> str:
    """Where the jobs of ``factory``'s backend reach this process: where its pools listen.

    A remote backend's address is its ``address`` option when it has one (the
    Kubernetes backend), else what this host's name resolves to (in a pod, its IP).
    """
    if not factory.encrypts:
        return LOOPBACK
    return getattr(factory, "address", None) or default_address()


@dataclass(eq=False)
class _Queue:
    """One queue: items waiting for getters, or getters waiting for items (never both)."""

    # Pickled items, oldest first, e.g. [[b"\x80\x05...", <buffer>], ...]
    items: Deque[List[Any]] = field(default_factory=collections.deque)
    # Identities of the connections whose GET waits, longest-waiting first.
    waiting: Deque[bytes] = field(default_factory=collections.deque)


@dataclass
class _Open:
    queue_id: int


@dataclass
class _Drop:
    queue_id: int


@dataclass
class _Stop:
    pass


class Broker(threading.Thread):
    """Holds the queues of one listen address and serves their requests."""

    def __init__(self, host: str, encrypted: bool) -> None:
        super().__init__(name=f"fiber-queue-broker-{host}", daemon=True)
        self._inbox = Inbox()
        self._context = zmq.Context()
        self._credentials = security.new_credentials(encrypted)
        self._guard = security.ConnectionGuard(self._context, self._credentials)
        self._router = self._context.socket(zmq.ROUTER)
        try:  # an address that is not this machine's fails here; leave nothing open
            self.address = self._bind(host)
        except BaseException:
            self._close()
            raise
        self._poller = zmq.Poller()
        for readable in (self._guard.socket, self._inbox.fileno(), self._router):
            self._poller.register(readable, zmq.POLLIN)
        # queue id -> queue, for queues opened and not dropped; the I/O thread's alone.
        self._queues: Dict[int, _Queue] = {}
        self._queue_ids = itertools.count()
        # Queues opened and not dropped, counted by their owners' threads (under the
        # registry's lock) so the last drop stops the broker exactly once.
        self.open_queues = 0

    def _bind(self, host: str) -> str:
        self._router.router_mandatory = True  # a send to a vanished getter fails, not vanishes
        self._router.sndhwm = self._router.rcvhwm = 0  # never drop an item
        self._router.linger = LINGER_MS
        self._guard.protect(self._router)
        self._router.bind_to_random_port(f"tcp://{host}")
        return self._router.last_endpoint.decode()

    # Called by owners, from any thread --------------------------------------

    def open_queue(self) -> Endpoint:
        queue_id = next(self._queue_ids)
        self.open_queues += 1
        self._inbox.put(_Open(queue_id))
        return Endpoint(self.address, self._credentials.token, queue_id)

    def drop_queue(self, queue_id: int) -> None:
        self.open_queues -= 1
        self._inbox.put(_Drop(queue_id))
        if not self.open_queues:
            self._inbox.put(_Stop())

    # The I/O thread -----------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        except BaseException:
            # Getters would wait for ever on a dead broker; closing its socket at
            # least makes their next request fail after REPLY_TIMEOUT.
            log.critical("fiber_jupyter queue broker at %s failed", self.address, exc_info=True)
        finally:
            self._close()

    def _serve(self) -> None:
        while True:
            ready = dict(self._poller.poll())
            if self._guard.socket in ready:
                self._guard.handle_pending()
            # Commands first: a queue's Open always precedes its first request.
            if self._inbox.fileno() in ready and not self._run_commands():
                return
            if self._router in ready:
                self._receive()

    def _run_commands(self) -> bool:
        """Open and drop queues; False once told to stop."""
        for command in self._inbox.drain():
            if isinstance(command, _Open):
                self._queues[command.queue_id] = _Queue()
            elif isinstance(command, _Drop):
                self._drop(command.queue_id)
            else:
                return False
        return True

    def _drop(self, queue_id: int) -> None:
        """Forget a queue's items; its waiting getters learn it is gone."""
        dropped = self._queues.pop(queue_id)
        for getter in dropped.waiting:
            self._reply(getter, Status.ERROR, [_closed(queue_id)])

    def _receive(self) -> None:
        for _ in range(RECEIVE_BATCH):
            try:
                identity, *frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle(identity.bytes, frames)

    def _handle(self, peer: bytes, frames: List[zmq.Frame]) -> None:
        try:
            op, queue_id, item = Op(frames[0].bytes), int(frames[1].bytes), frames[2:]
        except (IndexError, ValueError):
            # Authenticated, so a bug or a version mix: say so to the sender.
            log.error("queue broker at %s: ignored a malformed request", self.address)
            self._reply(peer, Status.ERROR, [b"malformed request"])
            return
        queue = self._queues.get(queue_id)
        if queue is None:
            if op in (Op.PUT, Op.GET, Op.COUNT):  # a CANCEL's GET got its ERROR at the drop
                self._reply(peer, Status.ERROR, [_closed(queue_id)])
        elif op is Op.PUT:
            self._offer(queue, [_kept(frame) for frame in item])
            self._reply(peer, Status.OK)
        elif op is Op.GET:
            self._serve_getter(queue, peer)
        elif op is Op.CANCEL:
            self._cancel(queue, peer)
        elif op is Op.UNGET:
            self._offer(queue, item, front=True)
        else:
            self._reply(peer, Status.COUNT, [str(len(queue.items)).encode()])

    def _offer(self, queue: _Queue, item: List[Any], front: bool = False) -> None:
        """Give ``item`` to the longest-waiting getter still connected, else keep it."""
        while queue.waiting:
            if self._reply(queue.waiting.popleft(), Status.ITEM, item):
                return
        if front:
            queue.items.appendleft(item)
        else:
            queue.items.append(item)

    def _serve_getter(self, queue: _Queue, peer: bytes) -> None:
        if not queue.items:
            queue.waiting.append(peer)
            return
        item = queue.items.popleft()
        if not self._reply(peer, Status.ITEM, item):
            queue.items.appendleft(item)  # it left before its answer: the next getter's

    def _cancel(self, queue: _Queue, peer: bytes) -> None:
        """Answer NONE if the peer's GET still waits; else its ITEM was the answer."""
        if peer in queue.waiting:
            queue.waiting.remove(peer)
            self._reply(peer, Status.NONE)

    def _reply(self, peer: bytes, status: Status, frames: List[Any] = ()) -> bool:
        """Send to one peer; False if it is no longer connected."""
        try:
            self._router.send_multipart([peer, status.value, *frames], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer disconnected
            log.debug("queue broker: peer %r is gone: %s", peer, exc)
            return False
        return True

    def _close(self) -> None:
        self._inbox.close()
        self._router.close()
        self._guard.close()
        self._context.term()


def _closed(queue_id: int) -> bytes:
    return (f"queue {queue_id} was closed in the notebook: the SimpleQueue or Pipe made there "
            "was garbage-collected").encode()


def _kept(frame: zmq.Frame) -> Union[zmq.Frame, bytes]:
    """A frame to keep in a queue; small ones are copied so they pin no receive buffer."""
    return frame if len(frame) >= COPY_FRAMES_BELOW else frame.bytes


# The brokers of this process, by (listen host, encrypted). An RLock: an owner
# collected by a garbage collection that runs while this thread holds the lock
# drops its queue from inside.
_lock = threading.RLock()
_brokers: Dict[Tuple[str, bool], Broker] = {}


def open_queue(backend: Union[None, str, BackendFactory] = None
               ) -> Tuple[Endpoint, Callable[[], None]]:
    """A new queue for the jobs of ``backend`` (default local): its endpoint and its release.

    Call the release exactly once, when the queue's owner goes: it drops the
    queue, and the last release of a broker stops it.
    """
    factory = backend_factory(backend)
    key = (listen_host(factory), factory.encrypts)
    with _lock:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = Broker(*key)
            broker.start()
        endpoint = broker.open_queue()
    return endpoint, lambda: _release(key, broker, endpoint.queue_id)


def _release(key: Tuple[str, bool], broker: Broker, queue_id: int) -> None:
    with _lock:
        broker.drop_queue(queue_id)
        if not broker.open_queues and _brokers.get(key) is broker:
            del _brokers[key]
