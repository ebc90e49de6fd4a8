"""Specification: SimpleQueue and Pipe carry items between the notebook and job-backed processes.

- A queue is FIFO, and each item goes to exactly one getter, also with several
  consuming processes. ``put`` returns once the notebook's broker holds the
  item, so a job that puts and exits at once loses nothing.
- ``get(timeout)`` raises ``queue.Empty`` when nothing came; a get that timed
  out or was interrupted takes no item with it. ``empty()`` says whether items wait.
- A Pipe's ends talk both ways (``duplex``) or one way (read-only and
  write-only ends); ``poll`` says whether a message waits without taking it;
  pipes work between the notebook and a process, and between two processes.
- Bad input fails at the call: an item that cannot be pickled is a
  ``TypeError`` naming it; a closed object is a ``ChannelError`` (an ``OSError``).
- Security: the broker listens on loopback for local processes; a peer without
  its credentials is refused and nothing it sends reaches a getter; queues
  for pods are encrypted.
- Lifetime: a queue lives while the object made in the notebook does, also
  when only a running Process holds it; closing a copy leaves the others
  working; once the objects are gone, no thread or descriptor is left.
"""

from __future__ import annotations

import gc
import pickle
import queue
import threading

import psutil
import pytest
import zmq

from fiber_jupyter import ChannelError, Pipe, SimpleQueue, channels, security
from fiber_jupyter.backends import Kubernetes

from . import process_targets as targets
from .conftest import wait_for

JOIN = 60


def _endpoint(shared) -> channels.Endpoint:
    """What a copy of ``shared`` connects to (read from the object, as only a test may)."""
    return shared._channel.endpoint


class TestOrderAndDelivery:
    def test_items_come_out_in_the_order_they_went_in(self, start):
        results = SimpleQueue()
        for value in range(100):
            results.put(value)
        assert [results.get(timeout=JOIN) for _ in range(100)] == list(range(100))
        start(targets.put_range, results, 0, 300)
        assert [results.get(timeout=JOIN) for _ in range(300)] == list(range(300))

    def test_a_process_gets_work_and_puts_results_through_queues(self, start):
        work, results = SimpleQueue(), SimpleQueue()
        process = start(targets.double_until_none, work, results)
        for value in (1, 2, 3, None):
            work.put(value)
        assert [results.get(timeout=JOIN) for _ in range(3)] == [2, 4, 6]
        process.join(JOIN)
        assert process.exitcode == 0

    def test_each_item_goes_to_exactly_one_of_several_consuming_processes(self, start):
        work, taken = SimpleQueue(), SimpleQueue()
        consumers = [start(targets.consume_until_none, work, taken, f"c{i}") for i in range(3)]
        for value in range(90):
            work.put(value)
        received = [taken.get(timeout=JOIN) for _ in range(90)]
        for _ in consumers:
            work.put(None)
        for consumer in consumers:
            consumer.join(JOIN)
            assert consumer.exitcode == 0
        assert sorted(value for _, value in received) == list(range(90))
        assert taken.empty() and work.empty()

    def test_an_item_put_just_before_the_job_exits_is_not_lost(self, start):
        results = SimpleQueue()
        process = start(targets.put_then_exit, results, "last words")
        assert results.get(timeout=JOIN) == "last words"
        process.join(JOIN)
        assert process.exitcode == 0

    def test_large_items_arrive_intact(self, start):
        work, results = SimpleQueue(), SimpleQueue()
        start(targets.double_until_none, work, results)
        work.put(bytes(range(256)) * 40_000)  # 10 MB, sent as frames of their own
        work.put(None)
        assert results.get(timeout=JOIN) == bytes(range(256)) * 80_000


class TestWaiting:
    def test_empty_says_whether_items_wait(self):
        shared = SimpleQueue()
        assert shared.empty()
        shared.put("x")
        assert not shared.empty()
        assert shared.get() == "x"
        assert shared.empty()

    def test_a_get_that_times_out_raises_empty_and_takes_no_later_item(self, start):
        shared = SimpleQueue()
        with pytest.raises(queue.Empty):
            shared.get(timeout=0.05)
        shared.put("later")
        assert shared.get(timeout=0) == "later"  # an item that waits is taken at once

    def test_a_process_whose_get_timed_out_takes_no_later_item(self, start):
        inbox, results = SimpleQueue(), SimpleQueue()
        process = start(targets.get_with_timeout, inbox, results, 0.05)
        assert results.get(timeout=JOIN) == "empty"
        process.join(JOIN)
        inbox.put("for the notebook")
        assert inbox.get(timeout=JOIN) == "for the notebook"

    def test_a_blocked_get_returns_when_a_process_puts(self, start):
        results = SimpleQueue()
        start(targets.put_range, results, 7, 8)
        assert results.get() == 7

    @pytest.mark.parametrize("waiting", [[], ["already there"]], ids=["empty", "item waiting"])
    def test_an_interrupted_get_leaves_the_item_for_the_next_get(self, monkeypatch, waiting):
        shared = SimpleQueue()
        for item in waiting:
            shared.put(item)
        receive = channels.Link.receive
        interrupts = [KeyboardInterrupt()]

        def interrupted_once(link, timeout):
            if interrupts:  # as Jupyter's stop button would, while the GET waits
                raise interrupts.pop()
            return receive(link, timeout)

        monkeypatch.setattr(channels.Link, "receive", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            shared.get()
        shared.put("next")
        assert [shared.get(timeout=JOIN) for _ in range(len(waiting) + 1)] == [*waiting, "next"]


class TestPipes:
    def test_a_duplex_pipe_talks_both_ways_with_a_process(self, start):
        mine, theirs = Pipe()
        process = start(targets.echo_doubled, theirs)
        for value in (1, 10, 100):
            mine.send(value)
            assert mine.recv() == 2 * value
        mine.send(None)
        process.join(JOIN)
        assert process.exitcode == 0

    def test_closing_the_notebooks_copy_of_the_other_end_leaves_the_process_s_working(
            self, start):
        mine, theirs = Pipe()
        start(targets.echo_doubled, theirs)
        theirs.close()  # the usual multiprocessing idiom, once the process has started
        mine.send(21)
        assert mine.recv() == 42

    def test_two_processes_talk_through_a_pipe(self, start):
        sender, receiver = Pipe()
        results = SimpleQueue()
        start(targets.send_each, sender, [1, "two", (3,)])
        start(targets.receive_all, receiver, results)
        assert results.get(timeout=JOIN) == [1, "two", (3,)]

    def test_a_simplex_pipe_has_a_read_only_and_a_write_only_end(self):
        reader, writer = Pipe(duplex=False)
        assert (reader.readable, reader.writable, writer.readable, writer.writable) == (
            True, False, False, True)
        writer.send("one way")
        assert reader.recv() == "one way"
        with pytest.raises(ChannelError, match="this Connection is read-only"):
            reader.send("back")
        with pytest.raises(ChannelError, match="this Connection is write-only"):
            writer.recv()

    def test_poll_says_whether_a_message_waits_without_taking_it(self):
        mine, theirs = Pipe()
        assert not mine.poll()
        theirs.send("x")
        assert mine.poll(timeout=JOIN)
        assert mine.poll()
        assert mine.recv() == "x"
        assert not mine.poll(timeout=0.01)


class TestBadInput:
    def test_an_item_that_cannot_be_pickled_is_a_type_error_naming_it(self):
        shared = SimpleQueue()
        mine, _ = Pipe()
        reason = (r"<unlocked _thread.lock object at 0x[0-9a-f]+>: it cannot be pickled "
                  r"\(TypeError: cannot pickle '_thread.lock' object\)")
        with pytest.raises(TypeError, match="cannot put " + reason):
            shared.put(threading.Lock())
        with pytest.raises(TypeError, match="cannot send " + reason):
            mine.send(threading.Lock())
        shared.put("still works")
        assert shared.get() == "still works"

    def test_a_closed_queue_or_connection_refuses_use_with_a_channel_error(self):
        shared = SimpleQueue()
        mine, _ = Pipe()
        shared.close()
        shared.close()
        mine.close()
        with pytest.raises(ChannelError, match=rf"SimpleQueue {_endpoint(shared).queue_id} "
                                               "is closed") as refused:
            shared.put(1)
        assert isinstance(refused.value, OSError)
        with pytest.raises(ChannelError, match="this Connection is closed"):
            mine.recv()
        assert mine.closed


class TestSecurity:
    def test_the_broker_of_local_processes_listens_on_loopback_only(self):
        port = int(_endpoint(SimpleQueue()).address.rsplit(":", 1)[1])
        (listener,) = [c for c in psutil.Process().net_connections(kind="tcp")
                       if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listener.laddr.ip == "127.0.0.1"

    def test_a_peer_without_the_credentials_is_refused_and_nothing_it_sends_is_delivered(
            self, caplog, tmp_path):
        shared = SimpleQueue()
        endpoint = _endpoint(shared)
        proof = tmp_path / "pwned"
        evil = pickle.dumps(_CreatesFile(str(proof)))
        attackers = [_peer(endpoint.address, "0" * 64), _peer(endpoint.address, None)]
        for attacker in attackers:
            try:
                attacker.send_multipart(endpoint.request(channels.Op.PUT, [evil]), zmq.NOBLOCK)
            except zmq.Again:
                pass  # no authenticated connection exists, so nothing can be delivered
        wait_for(lambda: "refused a connection without the pool's secret" in caplog.text)
        assert shared.empty()
        with pytest.raises(queue.Empty):
            shared.get(timeout=0.1)
        assert not proof.exists()
        for attacker in attackers:
            attacker.close()

    def test_a_queue_for_pods_listens_where_pods_reach_it_and_is_encrypted(self):
        shared = SimpleQueue(backend=Kubernetes(address="127.0.0.1"))
        endpoint = _endpoint(shared)
        assert endpoint.address.startswith("tcp://127.0.0.1:")
        assert endpoint.token.startswith(security.CURVE_PREFIX)
        assert endpoint != _endpoint(SimpleQueue())
        copy = pickle.loads(pickle.dumps(shared))
        copy.put("through CURVE")
        assert shared.get(timeout=JOIN) == "through CURVE"


class _CreatesFile:
    """A pickle that, when loaded, creates a file: proof of code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _peer(address: str, token) -> zmq.Socket:
    peer = zmq.Context.instance().socket(zmq.DEALER)
    peer.linger = 0
    if token is not None:
        security.authenticate(peer, token)
    peer.connect(address)
    return peer


def _threads_and_descriptors() -> tuple:
    return threading.active_count(), psutil.Process().num_fds()


class TestLifetime:
    def test_a_queue_lives_while_a_running_process_holds_it(self, start):
        inbox, results = SimpleQueue(), SimpleQueue()
        copy = pickle.loads(pickle.dumps(inbox))
        process = start(targets.double_until_none, inbox, results)
        del inbox
        gc.collect()
        copy.put(21)
        assert results.get(timeout=JOIN) == 42
        copy.put(None)
        process.join(JOIN)

    def test_a_queue_whose_notebook_object_is_gone_refuses_its_copies(self):
        shared = SimpleQueue()
        queue_id = _endpoint(shared).queue_id
        copy = pickle.loads(pickle.dumps(shared))
        keep_the_broker = SimpleQueue()
        del shared
        gc.collect()
        with pytest.raises(ChannelError, match=f"queue {queue_id} was closed in the notebook"):
            copy.put(1)
        keep_the_broker.close()

    def test_closed_and_collected_queues_and_pipes_leave_no_thread_or_descriptor(self):
        gc.collect()
        wait_for(lambda: not _broker_threads(), what="the brokers of earlier tests to stop")
        before = _threads_and_descriptors()
        _use_and_drop()
        gc.collect()
        wait_for(lambda: _threads_and_descriptors() == before,
                 what=f"threads and descriptors back to {before}, "
                      f"not {_threads_and_descriptors()}")
        assert not _broker_threads()


def _broker_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("fiber-queue-broker")]


def _use_and_drop() -> None:
    """Queues and pipes, local and for pods, used; some closed, all dropped on return."""
    local, for_pods = SimpleQueue(), SimpleQueue(backend=Kubernetes(address="127.0.0.1"))
    mine, theirs = Pipe()
    for shared in (local, for_pods):
        shared.put(1)
        assert shared.get() == 1
    mine.send(2)
    assert theirs.recv() == 2
    local.close()
    mine.close()
