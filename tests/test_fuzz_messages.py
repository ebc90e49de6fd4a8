"""Specification: no message an authenticated peer sends can crash or hang the other side.

Connections are authenticated (test_security.py), so whatever arrives comes
from the pool's own master or workers: a bug or a version mix there must cost
at most the worker involved, never the pool, and must never leave a call
waiting. Both sides are fuzzed with hypothesis, in this process, with the real
code on real sockets over loopback:

- the worker: its task loop and its control thread, fed anything a master could
  send, must answer each well-formed request exactly once and skip the rest;
- the master: a pool whose workers the test plays (``Scripted``), one of which
  sends anything, must finish every call and keep working;
- and a pool of real worker processes gets malformed frames from an impostor
  that holds the pool's secret, in the middle of a map.

``tests/test_protocol.py`` fuzzes ``protocol.decode`` on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import pickle
import queue
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest
import zmq
from hypothesis import event, given, settings
from hypothesis import strategies as st

import fiber_jupyter
from fiber_jupyter import (BrokenPoolError, WorkerLost, WorkerReady, outcomes, protocol,
                           security, serialization)
from fiber_jupyter import worker as worker_process
from fiber_jupyter.backends import Backend, WorkerExit, WorkerLaunch, local
from fiber_jupyter.outcomes import TaskFailure
from fiber_jupyter.scheduler import MAX_START_FAILURES

from . import tasks
from .conftest import EventRecorder, wait_for

# Seconds any one answer may take before the test calls it a hang.
ANSWER_TIMEOUT = 10.0
# Ids of the probes that show a worker's thread handled what came before; fuzzed ids stay below.
PROBES = 10**9


def _header(fields: Sequence[Any]) -> bytes:
    return pickle.dumps(tuple(fields), protocol=5)


def _frames(message: Any, body: Sequence[bytes] = ()) -> List[bytes]:
    return protocol.encode(message, list(body))


# Strategies ----------------------------------------------------------------------------------

# Code the worker runs (Welcome's setup steps, Execute): the master's code runs by design,
# so only its outcome varies here (defines, prints, raises, does not compile).
CODES = st.sampled_from(["x = 1", "print('set up')", "raise ValueError('no GPU')", "def (", ""])
KINDS = st.sampled_from(sorted(protocol.MESSAGE_TYPES))
# Pickles a body frame may hold: functions, arguments, initializers, outcomes, and not those.
PICKLES = [pickle.dumps(value, protocol=5) for value in (
    tasks.square, abs, divmod, 5, [1, -2, 3], [(1, 2), (3, 4)], [((1, 2), {}), ((-3,), {})],
    7, "abc", {1: 2}, (tasks.square, (3,)), (abs, ()), [TaskFailure(ValueError("x"), "tb")])]
BODY_FRAMES = st.lists(st.sampled_from(PICKLES) | st.binary(max_size=24), max_size=4)
# Any field value: of the right type or not. A count sizes lists on the worker, and the
# master's counts come from its calls, so they stay small here.
SMALL_INTS = st.integers(-10_000, 10_000)
ANYTHING = st.one_of(st.none(), st.booleans(), SMALL_INTS, st.floats(), st.binary(max_size=8),
                     CODES, st.lists(SMALL_INTS, max_size=3).map(tuple),
                     st.lists(SMALL_INTS, max_size=3))


def _mangled(message: Any) -> st.SearchStrategy:
    """The message's kind and header, with some of its fields swapped for anything."""
    return st.tuples(*[st.just(value) | ANYTHING for value in message]).map(
        lambda fields: [message.KIND, _header(fields)])


def _frames_around(well_formed: st.SearchStrategy, body: st.SearchStrategy) -> st.SearchStrategy:
    """Frames made from these messages: as they are, with fields of other types, with
    fields missing or added, as noise, or cut short; then body frames."""
    heads = st.one_of(
        well_formed.map(lambda message: _frames(message)),  # twice: they reach deepest
        well_formed.map(lambda message: _frames(message)),
        well_formed.flatmap(_mangled),
        st.builds(lambda kind, fields: [kind, _header(fields)], KINDS,
                  st.lists(ANYTHING, max_size=7)),
        st.builds(lambda kind, header: [kind, header], KINDS | st.binary(max_size=2),
                  st.binary(max_size=24)),
        KINDS.map(lambda kind: [kind]))
    return st.builds(lambda head, rest: [*head, *rest], heads, body)


def frames_from_a_master() -> st.SearchStrategy:
    """Anything a master could send a worker's task connection, except Stop (which ends it)."""
    well_formed = st.one_of(
        st.builds(protocol.Welcome, st.none() | st.sampled_from(PICKLES) | st.binary(max_size=16),
                  st.lists(CODES, max_size=2).map(tuple)),
        st.builds(protocol.Run, SMALL_INTS, st.integers(0, 3), st.integers(-1, 3),
                  st.integers(-2, 5), st.booleans(), st.lists(st.integers(0, 3), max_size=2)
                  .map(tuple)),
        st.builds(protocol.Execute, SMALL_INTS, CODES),
        st.builds(protocol.Cancel, st.lists(SMALL_INTS, max_size=2).map(tuple)),
        st.builds(protocol.Done, SMALL_INTS, SMALL_INTS, SMALL_INTS, st.floats()),
        st.just(protocol.Heartbeat(0.5, 1 << 20)))
    return _frames_around(well_formed, BODY_FRAMES).filter(
        lambda frames: frames[:2] != _frames(protocol.Stop()))


def frames_from_a_worker(batch_id: int) -> st.SearchStrategy:
    """Anything a worker holding batch ``batch_id`` could send its master."""
    ids = st.just(batch_id) | st.integers(-2**70, 2**70)
    counts = st.just(1) | st.integers(-2**70, 2**70)
    outcomes_frames = st.lists(st.sampled_from(
        [serialization.dumps(value).data for value in ([-3], [7], [], [1, 2], 5)]
        + [outcomes.encode_outcomes([TaskFailure(ValueError("rogue"), "tb")])[0].data])
        | st.binary(max_size=16), max_size=2)
    texts = st.text(max_size=6)
    done = st.builds(protocol.Done, ids, counts, st.integers(-1, 2) | st.integers(), st.floats())
    well_formed = st.one_of(
        done, done, done,  # the message the master acts on most
        st.builds(protocol.Hello, texts, st.integers(), texts,
                  st.just(protocol.PROTOCOL_VERSION) | st.integers()),
        st.builds(protocol.Ready, st.none(), st.none() | st.integers()),
        st.builds(protocol.Executed, st.integers(), texts, st.none() | texts),
        st.just(protocol.Heartbeat(0.5, 1 << 20)),
        st.builds(protocol.Cancel, st.lists(ids, max_size=2).map(tuple)))
    return _frames_around(well_formed, outcomes_frames).filter(
        lambda frames: not _reports_a_failed_initializer(frames))


def _reports_a_failed_initializer(frames: List[bytes]) -> bool:
    """A Ready with an error: that worker's initializer failed, which breaks its pool by
    design (test_recovery.py), so it is no malformed message."""
    decoded = _decoded(frames)
    return bool(decoded) and isinstance(decoded[0], protocol.Ready) and decoded[0].error is not None


def _decoded(frames: List[bytes]) -> Optional[Tuple[Any, List[bytes]]]:
    try:
        return protocol.decode(frames)
    except protocol.ProtocolError:
        return None


# The worker side -----------------------------------------------------------------------------

class InProcessWorker:
    """A real worker in this process (its task loop and its control thread, as
    ``worker.main`` starts them) and its master's end: a guarded ROUTER on loopback.

    A thread of the worker that dies keeps its exception, and the test fails at
    once with it instead of waiting for an answer that cannot come.
    """

    def __init__(self) -> None:
        self._context = zmq.Context()
        credentials = security.new_credentials(encrypted=False)
        self._guard = security.ConnectionGuard(self._context, credentials)
        self._router = self._context.socket(zmq.ROUTER)
        self._router.linger = 0
        self._guard.protect(self._router)
        port = self._router.bind_to_random_port("tcp://127.0.0.1")
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._guard.socket, zmq.POLLIN)
        options = argparse.Namespace(address=f"tcp://127.0.0.1:{port}", worker_id="w0",
                                     heartbeat_interval=0.2, secret_from="env:UNUSED",
                                     master_timeout=None)
        self.running = worker_process.RunningBatch()
        control = worker_process.ControlLink(self._context, options, credentials.token,
                                             self.running)
        runner = worker_process.TaskRunner(self._context, options, credentials.token,
                                           self.running)
        self.died: Dict[str, BaseException] = {}
        self._threads = [threading.Thread(target=self._keeping_errors, args=(name, run),
                                          name=f"fuzzed {name}", daemon=True)
                         for name, run in (("control thread", control.run),
                                           ("task loop", runner.serve))]
        for thread in self._threads:
            thread.start()
        self._probes = itertools.count(PROBES)
        connected = set()
        while connected != {"w0", "w0" + protocol.CONTROL_SUFFIX}:
            connected.add(self.next()[0])

    def _keeping_errors(self, name: str, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:
            self.died[name] = exc

    def send(self, frames: List[bytes], to: str = "w0") -> None:
        self._router.send_multipart([to.encode(), *frames])

    def next(self) -> Tuple[str, Any, List[bytes]]:
        """The worker's next message: (identity, message, body), heartbeats included."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            if self.died:
                pytest.fail(f"the worker's {', '.join(self.died)} died: {self.died}")
            ready = dict(self._poller.poll(50))
            if self._guard.socket in ready:
                self._guard.handle_pending()
            if self._router in ready:
                identity, *frames = self._router.recv_multipart()
                return (identity.decode(), *protocol.decode(frames))
        pytest.fail(f"the worker sent nothing within {ANSWER_TIMEOUT} s")

    def answers_until_probe(self) -> List[Tuple[Any, List[bytes]]]:
        """What the task loop sent, up to its answer to a probe sent now (heartbeats aside).

        The loop handles messages in order, so once the probe is answered every
        message sent before it was handled.
        """
        probe = next(self._probes)
        self.send(_frames(protocol.Execute(probe, "pass")))
        answers = []
        while True:
            _, message, body = self.next()
            if message == protocol.Executed(probe, "", None):
                return answers
            if not isinstance(message, protocol.Heartbeat):
                answers.append((message, body))

    def cancels_until_probe(self) -> Set[int]:
        """The batches the control thread was told to cancel, once it took a probe sent now."""
        probe = next(self._probes)
        self.send(_frames(protocol.Cancel((probe,))), to="w0" + protocol.CONTROL_SUFFIX)
        wait_for(lambda: self.died or probe in self.running.cancelled, ANSWER_TIMEOUT,
                 "the control thread to take the probe's cancel", interval=0.001)
        assert not self.died, f"the worker's {', '.join(self.died)} died: {self.died}"
        with self.running.lock:
            return {batch for batch in self.running.cancelled if batch < PROBES}

    def stop(self) -> None:
        self.send(_frames(protocol.Stop()))
        for thread in self._threads:
            thread.join(ANSWER_TIMEOUT)
        self._guard.close()
        self._router.close()
        if not any(thread.is_alive() for thread in self._threads) and not self.died:
            self._context.term()  # else a dead thread's sockets are still open: it would hang


@contextlib.contextmanager
def in_process_worker() -> Iterator[InProcessWorker]:
    worker = InProcessWorker()
    try:
        yield worker
    finally:
        worker.stop()


def _expected_answer(frames: List[bytes]) -> Optional[Tuple[str, Any]]:
    """What a worker's task loop owes a master for these frames: one answer per request."""
    decoded = _decoded(frames)
    message = decoded[0] if decoded else None
    if isinstance(message, protocol.Welcome):
        return ("Ready", None)
    if isinstance(message, protocol.Run):
        return ("Done", message.batch_id)
    if isinstance(message, protocol.Execute):
        return ("Executed", message.run_id)
    return None


def _answer_key(message: Any) -> Tuple[str, Any]:
    return type(message).__name__, getattr(message, "batch_id", getattr(message, "run_id", None))


def _check_done(done: protocol.Done, body: List[bytes]) -> None:
    """A Done a master can take: its outcomes, counted, and a time spent."""
    results = serialization.loads(body[0], body[1:])
    assert isinstance(results, list) and len(results) == done.count
    assert done.errors == sum(isinstance(result, TaskFailure) for result in results)
    assert 0 <= done.seconds < math.inf


FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(sent=st.lists(frames_from_a_master(), min_size=1, max_size=3))
def test_the_task_loop_answers_each_request_once_skips_the_rest_and_keeps_serving(sent):
    with in_process_worker() as worker:
        for frames in sent:
            worker.send(frames)
            answers = worker.answers_until_probe()
            expected = _expected_answer(frames)
            event(f"answered with {expected[0] if expected else 'nothing'}")
            assert [_answer_key(message) for message, _ in answers] == (
                [expected] if expected else [])
            for message, body in answers:
                if isinstance(message, protocol.Done):
                    _check_done(message, body)


@FUZZ
@given(sent=st.lists(frames_from_a_master(), min_size=1, max_size=3))
def test_the_control_thread_takes_cancels_skips_the_rest_and_keeps_serving(sent):
    with in_process_worker() as worker:
        cancelled: Set[int] = set()
        for frames in sent:
            worker.send(frames, to="w0" + protocol.CONTROL_SUFFIX)
            decoded = _decoded(frames)
            if decoded and isinstance(decoded[0], protocol.Cancel):
                cancelled.update(decoded[0].batch_ids)
            assert worker.cancels_until_probe() == cancelled


@pytest.fixture
def worker() -> Iterator[InProcessWorker]:
    with in_process_worker() as running:
        yield running


def test_a_run_whose_items_are_not_a_list_fails_its_tasks_and_the_worker_carries_on(worker):
    run = protocol.Run(1, 1, int(outcomes.CallMode.ONE), 2, True, ())
    worker.send(_frames(run, [pickle.dumps(tasks.square), pickle.dumps(7)]))
    [(done, body)] = worker.answers_until_probe()
    assert (done.batch_id, done.count, done.errors) == (1, 2, 2)
    failures = serialization.loads(body[0], body[1:])
    assert [str(failure.exception) for failure in failures] == [
        "a batch's items must be a list, got <class 'int'>"] * 2


def test_a_malformed_message_is_logged_by_the_worker_and_skipped(worker, caplog):
    worker.send([protocol.Run.KIND, _header([1, 2, 0, "3", True, ()])])
    assert worker.answers_until_probe() == []
    assert ("worker w0: ignored a malformed message from the master: malformed Run header: "
            "count must be int, got '3'") in caplog.text


# The master side -----------------------------------------------------------------------------

class ScriptedBackend(Backend):
    """Workers played by the test: each launch is handed to it; a stop ends one at once."""

    name = "scripted"

    def __init__(self, on_exit: Callable[[WorkerExit], None], on_waiting: Any = None,
                 pool_name: str = "pool") -> None:
        super().__init__(on_exit, on_waiting, pool_name)
        self.launches: "queue.Queue[WorkerLaunch]" = queue.Queue()
        self._lock = threading.Lock()
        self._running: Dict[str, WorkerLaunch] = {}

    @property
    def listen_host(self) -> str:
        return "127.0.0.1"

    def natural_size(self) -> int:
        return 1

    def start(self, launches: Sequence[WorkerLaunch]) -> None:
        for launch in launches:
            with self._lock:
                self._running[launch.worker_id] = launch
            self.launches.put(launch)

    def stop(self, worker_id: str) -> None:
        with self._lock:
            launch = self._running.pop(worker_id, None)
        if launch is not None:
            self._on_exit(WorkerExit(worker_id, -9))

    def is_running(self, worker_id: str) -> bool:
        with self._lock:
            return worker_id in self._running

    def close(self) -> None:
        with self._lock:
            ended, self._running = list(self._running), {}
        for worker_id in ended:
            self._on_exit(WorkerExit(worker_id, -9))


class Scripted:
    """The backend factory a pool is given: it keeps the backend it made, for the test."""

    name = ScriptedBackend.name
    encrypts = False
    backend: ScriptedBackend

    def __call__(self, on_exit: Callable[[WorkerExit], None], on_waiting: Any,
                 pool_name: str) -> ScriptedBackend:
        self.backend = ScriptedBackend(on_exit, on_waiting, pool_name)
        return self.backend


def _connect_as(context: zmq.Context, launch: WorkerLaunch) -> zmq.Socket:
    """A connection to the pool as the launched worker, with what the pool gave it."""
    connection = context.socket(zmq.DEALER)
    connection.linger = 0
    connection.identity = launch.worker_id.encode()
    security.authenticate(connection, launch.secret)
    connection.connect(launch.address)
    return connection


class PlayedWorker:
    """One worker of a scripted pool, played by the test: honest unless told otherwise."""

    def __init__(self, context: zmq.Context, launch: WorkerLaunch) -> None:
        self.worker_id = launch.worker_id
        self.socket = _connect_as(context, launch)
        self._functions: Dict[int, Any] = {}
        self.send(protocol.Hello(launch.worker_id, 1, "played", protocol.PROTOCOL_VERSION))

    def send(self, message: Any, body: Sequence[Any] = ()) -> None:
        self.socket.send_multipart(_frames(message, body))

    def receive(self) -> Tuple[Any, List[bytes]]:
        return protocol.decode(self.socket.recv_multipart())

    def next_run(self) -> Tuple[protocol.Run, List[bytes]]:
        """The next Run, after answering the Welcome that comes first."""
        while True:
            if not self.socket.poll(ANSWER_TIMEOUT * 1000):
                pytest.fail(f"{self.worker_id} got no batch within {ANSWER_TIMEOUT} s")
            message, body = self.receive()
            if isinstance(message, protocol.Run):
                return message, body
            self.answer(message, body)

    def answer(self, message: Any, body: List[bytes]) -> None:
        """What a worker answers: Ready to a Welcome, the outcomes of a Run."""
        if isinstance(message, protocol.Welcome):
            self.send(protocol.Ready(None, None))
        elif isinstance(message, protocol.Run):
            if message.function_included:
                self._functions[message.job_id] = serialization.loads(body[0])
            items = serialization.loads(body[1], body[2:])
            results, errors = outcomes.call_all(self._functions[message.job_id], message.mode,
                                                items)
            encoded, unencodable = outcomes.encode_outcomes(results)
            self.send(protocol.Done(message.batch_id, len(results), errors + unencodable, 0.001),
                      encoded.frames())

    def close(self) -> None:
        self.socket.close()


class PlayedCrew:
    """Every worker of one scripted pool, answering honestly whatever the pool asks."""

    def __init__(self, context: zmq.Context, backend: ScriptedBackend) -> None:
        self._context = context
        self._backend = backend
        self.workers: List[PlayedWorker] = []

    def admit(self) -> PlayedWorker:
        """The next worker the pool launched, connected and greeting."""
        self.workers.append(PlayedWorker(self._context, self._backend.launches.get(
            timeout=ANSWER_TIMEOUT)))
        return self.workers[-1]

    def serve_until(self, finished: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while not finished():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {ANSWER_TIMEOUT} s waiting for {what}")
            while not self._backend.launches.empty():
                self.admit()
            poller = zmq.Poller()
            serving = [w for w in self.workers if self._backend.is_running(w.worker_id)]
            for played in serving:
                poller.register(played.socket, zmq.POLLIN)
            for socket, _ in poller.poll(10):
                played = next(w for w in serving if w.socket is socket)
                played.answer(*played.receive())

    def close(self) -> None:
        for played in self.workers:
            played.close()


@pytest.fixture(scope="module")
def played_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.term()


def _answers_the_batch(decoded: Optional[Tuple[Any, List[bytes]]], batch_id: int) -> bool:
    """A Done a master must take as the result of batch ``batch_id`` (of one task)."""
    if decoded is None or not isinstance(decoded[0], protocol.Done):
        return False
    done, body = decoded
    return (done.batch_id == batch_id and done.count == 1 and 0 <= done.errors <= 1
            and 0 <= done.seconds < math.inf and bool(body))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_whatever_one_worker_sends_every_call_ends_and_the_pool_keeps_working(played_context,
                                                                              data):
    factory = Scripted()
    pool = fiber_jupyter.Pool(1, backend=factory, name="fuzzed", progress=False)
    crew = PlayedCrew(played_context, factory.backend)
    try:
        rogue = crew.admit()
        first = pool.apply_async(abs, (-3,))
        run, body = rogue.next_run()
        sent = data.draw(st.lists(frames_from_a_worker(run.batch_id), min_size=1, max_size=3),
                         label="the rogue's frames")
        for frames in sent:
            rogue.socket.send_multipart(frames)
        rogue.answer(run, body)
        crew.serve_until(first.ready, "the first call to end")
        answered = any(_answers_the_batch(_decoded(frames), run.batch_id) for frames in sent)
        kept = factory.backend.is_running(rogue.worker_id)
        event("the rogue answered its batch" if answered else
              "the rogue was kept" if kept else "the rogue was stopped")
        if not answered:
            assert first.get(0) == 3
        second = pool.apply_async(abs, (-4,))
        crew.serve_until(second.ready, "the second call to end")
        assert second.get(0) == 4
        assert pool.status().state == "running"
    finally:
        pool.terminate()
        pool.join()
        crew.close()


MALFORMED = {
    "a header that is no pickle": lambda batch: [protocol.Done.KIND, b"\x80\x05garbage"],
    "an unknown kind": lambda batch: [b"?", _header([batch])],
    "too few frames": lambda batch: [protocol.Done.KIND],
    "an unhashable batch id": lambda batch: _frames(protocol.Done([batch], 1, 0, 0.1), [b""]),
    "a count of another type": lambda batch: _frames(protocol.Done(batch, "1", 0, 0.1), [b""]),
    "a count its batch does not have": lambda batch: _frames(protocol.Done(batch, 0, 0, 0.1),
                                                             [b""]),
    "more errors than outcomes": lambda batch: _frames(protocol.Done(batch, 1, 2, 0.1), [b""]),
    "a time that is not a number": lambda batch: _frames(protocol.Done(batch, 1, 0, math.nan),
                                                         [b""]),
    "no outcomes": lambda batch: _frames(protocol.Done(batch, 1, 0, 0.1)),
    "a Hello whose pid is not a number": lambda batch: _frames(
        protocol.Hello("w0", "1", "host", protocol.PROTOCOL_VERSION)),
}


@pytest.mark.parametrize("problem", MALFORMED)
def test_a_worker_that_sends_a_malformed_message_is_stopped_and_its_batch_runs_elsewhere(
        played_context, problem, caplog):
    factory = Scripted()
    pool = fiber_jupyter.Pool(1, backend=factory, name="strict", progress=False)
    recorder = EventRecorder(pool)
    crew = PlayedCrew(played_context, factory.backend)
    try:
        rogue = crew.admit()
        result = pool.apply_async(abs, (-3,))
        run, _ = rogue.next_run()
        rogue.socket.send_multipart(MALFORMED[problem](run.batch_id))
        lost = recorder.next(WorkerLost)
        assert lost.worker_id == rogue.worker_id
        assert lost.reason.startswith("sent a malformed message: ")
        assert f"worker {rogue.worker_id} sent a malformed message (" in caplog.text
        crew.serve_until(result.ready, "the batch to run again")
        assert result.get(0) == 3
        assert pool.status().state == "running" and pool.status().lost == 1
    finally:
        pool.terminate()
        pool.join()
        crew.close()


# A live pool ---------------------------------------------------------------------------------

def _holds_no_connection(launch: WorkerLaunch) -> list:
    """A worker process that reads its secret and never connects, until it is killed."""
    return [sys.executable, "-c", "import sys; sys.stdin.read()"]


def test_malformed_frames_from_an_authenticated_impostor_cost_that_worker_only(
        make_pool, monkeypatch, caplog):
    pool = make_pool(2, name="impostor")
    recorder = EventRecorder(pool)
    recorder.collect(WorkerReady, 2)
    # A third worker that never connects leaves a worker id the pool expects free:
    # the impostor takes it, with the address and secret the pool gave that worker.
    launched: "queue.Queue[WorkerLaunch]" = queue.Queue()
    monkeypatch.setattr(local, "worker_command",
                        lambda launch: launched.put(launch) or _holds_no_connection(launch))
    pool.scale(3)
    slot = launched.get(timeout=ANSWER_TIMEOUT)
    impostor = PlayedWorker(zmq.Context.instance(), slot)
    try:
        running = pool.map_async(tasks.slow_square, range(100), chunksize=1)
        run, _ = impostor.next_run()  # once welcomed, it gets batches of the running map
        for frames in MALFORMED.values():
            impostor.socket.send_multipart(frames(run.batch_id))
        lost = recorder.next(WorkerLost, where=lambda e: e.worker_id == slot.worker_id)
        assert lost.reason.startswith("sent a malformed message: malformed Done header")
        assert running.get(timeout=60) == [x * x for x in range(100)]
        assert pool.status().state == "running"
        assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
    finally:
        impostor.close()
    assert caplog.text.count(f"worker {slot.worker_id} sent a malformed message") == 1


# Regressions, one per problem found ----------------------------------------------------------

@pytest.mark.parametrize("frames, error", [
    ([b"D", _header([[1], 1, 0, 0.1])], "malformed Done header: batch_id must be int, got [1]"),
    ([b"D", _header([1, "1", 0, 0.1])], "malformed Done header: count must be int, got '1'"),
    ([b"R", _header([1, 2, 0, 3, True, (1, "x")])],
     "malformed Run header: forget must be Tuple[int, ...], got (1, 'x')"),
    ([b"Y", _header([5, None])], "malformed Ready header: error must be Optional[str], got 5"),
    ([b"C", _header([None])],
     "malformed Cancel header: batch_ids must be Tuple[int, ...], got None"),
    ([b"X", _header([{}, "", None])], "malformed Executed header: run_id must be int, got {}"),
])
def test_a_field_of_another_type_is_a_protocol_error_naming_the_field(frames, error):
    with pytest.raises(protocol.ProtocolError) as raised:
        protocol.decode(frames)
    assert str(raised.value) == error


@pytest.mark.parametrize("done, body, problem", [
    (protocol.Done(4, 2, 0, 0.1), [b""], None),
    (protocol.Done(4, 3, 0, 0.1), [b""], "Done 4 has 3 outcomes for a batch of 2"),
    (protocol.Done(4, 2, 3, 0.1), [b""], "Done 4 counts 3 errors among 2 outcomes"),
    (protocol.Done(4, 2, -1, 0.1), [b""], "Done 4 counts -1 errors among 2 outcomes"),
    (protocol.Done(4, 2, 0, math.nan), [b""], "Done 4 took nan s"),
    (protocol.Done(4, 2, 0, math.inf), [b""], "Done 4 took inf s"),
    (protocol.Done(4, 2, 0, -0.5), [b""], "Done 4 took -0.5 s"),
    (protocol.Done(4, 2, 0, 0.1), [], "Done 4 carries no outcomes"),
])
def test_a_done_must_account_for_every_task_of_its_batch(done, body, problem):
    assert protocol.done_problem(done, 2, body) == problem


def test_a_task_whose_worker_sent_a_malformed_result_runs_again_instead_of_waiting(
        played_context):
    """A malformed Done used to be logged and ignored: its call then waited forever."""
    factory = Scripted()
    pool = fiber_jupyter.Pool(1, backend=factory, name="no-hang", progress=False)
    crew = PlayedCrew(played_context, factory.backend)
    try:
        rogue = crew.admit()
        result = pool.apply_async(abs, (-3,))
        run, _ = rogue.next_run()
        rogue.socket.send_multipart([protocol.Done.KIND, _header([run.batch_id, 1, 0])])
        crew.serve_until(result.ready, "the batch to run again")  # the rogue never answers
        assert result.get(0) == 3
    finally:
        pool.terminate()
        pool.join()
        crew.close()


def test_workers_that_cannot_say_hello_in_this_version_break_the_pool_saying_so(
        played_context):
    """They used to wait out the start timeout, one after the other, with no reason given."""
    factory = Scripted()
    pool = fiber_jupyter.Pool(1, backend=factory, name="mixed", progress=False)
    connections = []
    try:
        for _ in range(MAX_START_FAILURES):
            launch = factory.backend.launches.get(timeout=ANSWER_TIMEOUT)
            connections.append(_connect_as(played_context, launch))
            connections[-1].send_multipart([protocol.Hello.KIND, _header(
                [launch.worker_id, 1, "host", protocol.PROTOCOL_VERSION, "a new field"])])
        with pytest.raises(BrokenPoolError, match=r"\(last: w4, sent a malformed message: "
                                                  r"malformed Hello header: "):
            pool.map(abs, [1, 2], chunksize=1)
    finally:
        pool.terminate()
        pool.join()
        for connection in connections:
            connection.close()
