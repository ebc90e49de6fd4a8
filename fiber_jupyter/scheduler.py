"""The master's I/O thread: the one owner of the pool's sockets and state.

::

    user threads ──Pool API──▶ commands (queue + wakeup pipe) ─┐
    backend thread ──worker exits──────────────────────────────┤
                                                               ▼
              ┌──────────────────── Scheduler.run(): one poll over ──────────────┐
              │  ZAP socket (authenticate)  wakeup pipe (commands)  ROUTER (workers)
              │  then: check heartbeats → reconcile size → dispatch → progress    │
              └───────┬────────────────────────┬─────────────────────┬──────────┘
          Run/Cancel/Stop ▼        finished batches ▼         events ▼
        workers (DEALER, one per process)   AsyncResult / IMapIterator   notifier thread
                                            (unpickled by the caller)    → subscribers, callbacks

- **User threads** never touch a socket. ``submit``, ``scale``, ``cancel``,
  ``close`` and ``terminate`` put a command on a queue and write a byte to the
  wakeup pipe (CPython's ``_ThreadWakeup`` pattern).
- **The backend** reports worker exits through the same command queue.
- **The I/O thread** reads commands and worker messages, and after each wakeup
  runs the same few verbs: check heartbeats, reconcile the worker count with
  the target, hand batches to workers with free credit, report progress.
  Anything unexpected breaks the pool loudly (every waiter gets the error)
  rather than leaving callers waiting on a dead thread.
- **Lost work takes the normal path**: a lost worker's batches go back to the
  queue (with the exit recorded against the batch that surely caused it, see
  ``_requeue``) and come back as results or, once a batch has been lost more
  than ``max_retries`` times, as a :class:`WorkerLostError` for its tasks.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Type

import zmq

from . import inbox, protocol, security
from .inbox import Inbox
from .status import PoolState, PoolStatus, WorkerInfo, WorkerOutput
from .backends import Backend, WorkerExit, WorkerLaunch
from .errors import (BrokenPoolError, InitializerError, PoolStateError, PoolTerminatedError,
                     TaskCancelled, WorkerLostError)
from .events import (EventStream, PoolClosed, PoolEvent, Progress, Scaled, TaskRetried,
                     TaskSpeculated, WorkerWaiting,
                     TasksFailed, WorkerLost, WorkerReady, WorkerStarting, WorkerStopped)
from .adaptive import Adaptation, AdaptSettings
from .executions import ExecutionRun, SetupSteps
from .jobs import Batch, BatchState, Job
from .results import Chunk
from .timeline import Span, TaskLog
from .workers import CREDIT, WorkerRecord, WorkerState, WorkerTable, plan_resize

log = logging.getLogger(__name__)

# Messages read from the ROUTER per wakeup before commands and dispatch get a
# turn; bounds how long a flood of results can delay a scale or cancel.
RECEIVE_BATCH = 256
# Progress events per call are at most this often (plus one when it ends).
PROGRESS_INTERVAL = 0.1
# Workers that exit before connecting, in a row, before the pool gives up:
# a bad interpreter or environment must not become an endless restart loop.
MAX_START_FAILURES = 5
# Seconds to wait before starting workers after the first failed start; doubles
# with each further failure in a row, up to MAX_START_BACKOFF.
START_BACKOFF = 0.25
MAX_START_BACKOFF = 30.0
# A running batch is a straggler once it has run this many times the call's
# typical time for its size, and at least SPECULATE_MIN_SECONDS.
SPECULATE_FACTOR = 3.0
SPECULATE_MIN_SECONDS = 0.1


@dataclass(frozen=True)
class SchedulerConfig:
    """One pool's settings, fixed when it is created."""

    name: str
    backend: Type[Backend]
    target: Optional[int]
    initializer: Optional[bytes]
    maxtasksperchild: Optional[int]
    max_retries: int
    heartbeat_timeout: float
    start_timeout: float

    @property
    def heartbeat_interval(self) -> float:
        # Six beats per timeout: one late or lost beat never looks like a hang.
        return self.heartbeat_timeout / 6


class Scheduler(threading.Thread):
    """Runs one pool: sockets, workers, batches, retries and events."""

    def __init__(self, config: SchedulerConfig, events: EventStream,
                 post: Callable[[Callable[[], None]], None]) -> None:
        super().__init__(name=f"fiber-scheduler-{config.name}", daemon=True)
        self.config = config
        self._events = events
        self._post = post
        self._inbox = Inbox()
        try:  # first: a backend that cannot run (no cluster, no image) leaves nothing open
            self._backend = config.backend(self._worker_ended, self._worker_waiting, config.name)
        except BaseException:
            self._inbox.close()
            raise
        self._context = zmq.Context()
        self._credentials = security.new_credentials(encrypted=config.backend.encrypts)
        self._guard = security.ConnectionGuard(self._context, self._credentials)
        self._router = self._bind_router()
        self._poller = zmq.Poller()
        for readable in (self._guard.socket, self._inbox.fileno(), self._router):
            self._poller.register(readable, zmq.POLLIN)
        self.state = PoolState.RUNNING
        self.broken_reason: Optional[BaseException] = None
        self._target = config.target if config.target is not None else self._backend.natural_size()
        self._workers = WorkerTable()
        self._worker_ids = itertools.count()
        self._batch_ids = itertools.count()
        # job id -> job, for calls not yet finished, in submission order.
        self._jobs: Dict[int, Job] = {}
        # Jobs with undispatched items, oldest first.
        self._feeding: Deque[Job] = collections.deque()
        # Batches of lost workers, waiting to be dispatched again.
        self._retries: Deque[Batch] = collections.deque()
        # pool.execute runs waiting for answers, by run id; the code new workers replay.
        self._executions: Dict[int, ExecutionRun] = {}
        self._run_ids = itertools.count()
        self._setup = SetupSteps()
        self._lost_total = 0
        self._tasks_done = 0
        self._start_failures = 0
        # After failed starts, no new worker before this time (doubling, capped).
        self._launch_not_before = 0.0
        self._launch_deferred = False
        self._reconcile_needed = True
        self._next_heartbeat_check = time.monotonic() + config.heartbeat_interval
        self._next_report = 0.0
        self._target_changed = False
        self._last_scaled: Optional[tuple] = None
        # Set while the target follows the backlog (pool.adapt); pool.scale clears it.
        self._adaptation: Optional[Adaptation] = None
        self._next_adapt = 0.0
        self._next_speculation = 0.0
        # Each worker's recent batches, for pool.timeline().
        self.task_log = TaskLog()
        # Callers to release for what arrived this turn, in the order it arrived, just
        # before the loop sleeps: a result sink's wake, an execution's answer.
        self._to_wake: List[Callable[[], None]] = []
        self._command_handlers: Dict[type, Callable[[Any], None]] = {
            inbox.Submit: self._on_submit, inbox.Scale: self._on_scale, inbox.Adapt: self._on_adapt,
            inbox.Cancel: self._on_cancel, inbox.Close: self._on_close,
            inbox.Terminate: self._on_terminate, inbox.WorkerEnded: self._on_worker_ended,
            inbox.ListWorkers: self._on_list_workers, inbox.Execute: self._on_execute,
            inbox.WorkerWaiting: self._on_worker_waiting,
        }
        self.status = self._snapshot()

    def _bind_router(self) -> zmq.Socket:
        router = self._context.socket(zmq.ROUTER)
        router.router_mandatory = True  # an unroutable send raises instead of vanishing
        router.sndhwm = router.rcvhwm = 0  # never drop: worker credit bounds the traffic
        router.linger = 0
        # Thousands of workers connect at once when a big pool starts; with the
        # default backlog of 100 the kernel drops connects and clients retry
        # seconds later (2,048 simulated workers: 2.6-31 s to start, 1.3 s with this).
        router.backlog = 8192
        self._guard.protect(router)
        router.bind_to_random_port(f"tcp://{self._backend.listen_host}")
        return router

    @property
    def address(self) -> str:
        return self._router.last_endpoint.decode()

    # Commands: called from any thread ---------------------------------------

    def submit(self, job: Job) -> None:
        if not self._inbox.put(inbox.Submit(job)):
            job.sink._fail(self._refusal())
            job.sink._wake()

    def adapt(self, settings: AdaptSettings) -> None:
        self._inbox.put(inbox.Adapt(settings))

    def scale(self, target: int) -> None:
        self._inbox.put(inbox.Scale(target))

    def cancel(self, job_id: int, timeout: float = 5.0) -> Optional[str]:
        """Cancel a call's work; the description of what was cancelled, or None."""
        reply = inbox.Reply()
        if not self._inbox.put(inbox.Cancel(job_id, reply)):
            return None
        return reply.wait(timeout)

    def workers(self, timeout: float = 5.0) -> List[WorkerInfo]:
        """Every worker's state, as the I/O thread sees it; [] once the pool stopped."""
        reply = inbox.Reply()
        if not self._inbox.put(inbox.ListWorkers(reply)):
            return []
        return reply.wait(timeout) or []

    def execute(self, code: str, keep: bool) -> inbox.Reply:
        """Ask every worker to run ``code``; the reply gets their outputs or a refusal."""
        reply = inbox.Reply()
        if not self._inbox.put(inbox.Execute(code, keep, reply)):
            reply.set(self._refusal())
        return reply

    def close(self) -> None:
        self._inbox.put(inbox.Close())

    def terminate(self) -> None:
        self._inbox.put(inbox.Terminate())

    def _worker_ended(self, exit: WorkerExit) -> None:
        self._inbox.put(inbox.WorkerEnded(exit))

    def _worker_waiting(self, worker_id: str, reason: str) -> None:
        self._inbox.put(inbox.WorkerWaiting(worker_id, reason))

    # The I/O thread ----------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            # Letting this thread die quietly would leave every caller waiting
            # on results that can never come, with the pool looking healthy.
            log.critical("fiber_jupyter pool %r: scheduler failed", self.config.name,
                         exc_info=True)
            self._break(BrokenPoolError(f"the pool's scheduler failed: {exc!r}"))
        finally:
            self._shut_down()

    def _serve(self) -> None:
        while not self._finished():
            ready = dict(self._poller.poll(self._poll_timeout_ms()))
            if self._guard.socket in ready:
                self._guard.handle_pending()
            if self._inbox.fileno() in ready:
                self._run_commands()
            if self._router in ready:
                self._receive()
            self._check_heartbeats()
            self._adapt()
            self._reconcile()
            self._dispatch()
            self._report()
            self._wake_callers()

    def _finished(self) -> bool:
        if self.state in (PoolState.TERMINATING, PoolState.BROKEN):
            return True
        return self.state is PoolState.CLOSING and not self._jobs and not len(self._workers)

    def _poll_timeout_ms(self) -> int:
        if self._reconcile_needed:
            return 0  # e.g. a new pool: start its workers now, not at the next heartbeat check
        now = time.monotonic()
        until_heartbeat = self._next_heartbeat_check - now
        until_progress = self._next_report - now if self._jobs else until_heartbeat
        until_launch = self._launch_not_before - now if self._launch_deferred else until_heartbeat
        until_adapt = self._until_adapt(now)
        return max(0, int(1000 * min(until_heartbeat, until_progress, until_launch, until_adapt)))

    def _until_adapt(self, now: float) -> float:
        """Seconds until an adaptive pool above its minimum may next shrink.

        Growing needs work, and work wakes the loop; shrinking needs time
        alone: the next check (which starts a surplus) or the end of one.
        """
        adaptation = self._adaptation
        if adaptation is None or self._target <= adaptation.settings.minimum:
            return math.inf
        decides_at = adaptation.decides_at() or self._next_adapt
        return max(decides_at, self._next_adapt) - now

    def _run_commands(self) -> None:
        for command in self._inbox.drain():
            self._command_handlers[type(command)](command)

    def _on_submit(self, command: inbox.Submit) -> None:
        job = command.job
        if self.state is not PoolState.RUNNING:
            self._fail_call(job, self._refusal())
            return
        self._jobs[job.job_id] = job
        self._feeding.append(job)
        if job.total == 0:
            self._deliver(job, Chunk(0, 0, 0))
            self._finish_job(job)

    def _on_scale(self, command: inbox.Scale) -> None:
        self._adaptation = None
        self._set_target(command.target)

    def _on_adapt(self, command: inbox.Adapt) -> None:
        self._adaptation = Adaptation(command.settings)
        self._target_changed = True
        self._next_adapt = 0.0

    def _set_target(self, target: int) -> None:
        self._target = target
        self._target_changed = True
        self._reconcile_needed = True

    def _on_list_workers(self, command: inbox.ListWorkers) -> None:
        command.reply.set([
            WorkerInfo(w.worker_id, w.state.value, sum(b.count for b in w.in_flight.values()),
                       w.pid, w.host, w.cpu.percent, w.memory_bytes)
            for w in self._workers])

    def _on_execute(self, command: inbox.Execute) -> None:
        if self.state is not PoolState.RUNNING:
            command.reply.set(self._refusal())
            return
        # Starting workers that were not welcomed yet get the step in their Welcome.
        targets = [w for w in self._workers if w.greeted and w.state is not WorkerState.STOPPING]
        run = ExecutionRun(next(self._run_ids), command.code, command.keep, command.reply,
                           {w.worker_id for w in targets})
        if run.keep:
            self._setup.keep(run)
        self._executions[run.run_id] = run
        for worker in targets:
            self._send(worker, protocol.Execute(run.run_id, run.code))
        self._settle(run)

    def _on_executed(self, worker: WorkerRecord, executed: protocol.Executed) -> None:
        run = self._executions.get(executed.run_id)
        if run is not None:
            run.record(WorkerOutput(worker.worker_id, executed.output, executed.error))
            self._settle(run)

    def _settle(self, run: ExecutionRun) -> None:
        """Answer the caller once every worker did; a step that failed anywhere is not kept."""
        if run.waiting:
            return
        del self._executions[run.run_id]
        if run.keep and run.failed:
            self._setup.drop(run)
        answers = run.answers()
        # After the results of the batches the workers ran before it, not before.
        self._to_wake.append(lambda: run.reply.set(answers))

    def _on_cancel(self, command: inbox.Cancel) -> None:
        job = self._jobs.get(command.job_id)
        if job is None:
            command.reply.set(None)
            return
        queued = job.undispatched + sum(b.count for b in job.batches
                                        if b.state is BatchState.QUEUED)
        running = self._cancel_running(job)
        description = (f"cancelled {job.label}: {job.done} of {job.total} tasks done, "
                       f"{queued} queued tasks dropped, {running} running tasks interrupted")
        self._fail_call(job, TaskCancelled(description))
        self._finish_job(job)
        command.reply.set(description)

    def _on_close(self, command: inbox.Close) -> None:
        if self.state is PoolState.RUNNING:
            self.state = PoolState.CLOSING
            self._reconcile_needed = True

    def _on_terminate(self, command: inbox.Terminate) -> None:
        self.state = PoolState.TERMINATING
        for job in list(self._jobs.values()):
            terminated = f"the pool was terminated before {job.label} finished"
            self._fail_call(job, PoolTerminatedError(terminated))
            self._finish_job(job)

    def _on_worker_ended(self, command: inbox.WorkerEnded) -> None:
        exit = command.exit
        worker = self._workers.remove(exit.worker_id)
        if worker is None:
            return
        self._reconcile_needed = True
        for run in list(self._executions.values()):
            if worker.worker_id in run.waiting:
                run.record(WorkerOutput(worker.worker_id, "",
                                        f"worker lost: {worker.kill_reason or exit.describe()}"))
                self._settle(run)
        shutting_down = self.state in (PoolState.TERMINATING, PoolState.BROKEN)
        if shutting_down or (worker.state is WorkerState.STOPPING and not worker.in_flight):
            self._emit(WorkerStopped(self.config.name, worker.worker_id))
            return
        reason = worker.kill_reason or exit.describe()
        requeued = self._requeue(worker, reason)
        self._lost_total += 1
        log.warning("fiber_jupyter pool %r: worker %s lost: %s; %d tasks re-queued",
                    self.config.name, worker.worker_id, reason, requeued)
        self._emit(WorkerLost(self.config.name, worker.worker_id, reason, exit.exit_code, requeued))
        if not worker.greeted:
            self._count_start_failure(worker, reason)

    def _on_worker_waiting(self, command: inbox.WorkerWaiting) -> None:
        worker = self._workers.get(command.worker_id)
        if worker is not None and not worker.greeted:
            worker.waiting_reason = command.reason
            self._emit(WorkerWaiting(self.config.name, command.worker_id, command.reason))

    def _count_start_failure(self, worker: WorkerRecord, reason: str) -> None:
        """Back off before starting more; break only a pool that has no worker at all.

        A pool whose workers cannot start is misconfigured and its calls would
        wait forever; a pool that cannot grow (a full cluster, a quota) keeps
        working with the workers it has, and keeps trying, more slowly.
        """
        self._start_failures += 1
        backoff = min(START_BACKOFF * 2 ** (self._start_failures - 1), MAX_START_BACKOFF)
        self._launch_not_before = time.monotonic() + backoff
        if (self._start_failures >= MAX_START_FAILURES and self.state is PoolState.RUNNING
                and not self._workers.live()):
            self._break(BrokenPoolError(
                f"{self._start_failures} workers in a row ended before connecting "
                f"(last: {worker.worker_id}, {reason}); {self._backend.start_failure_hint}"))

    # Worker messages ---------------------------------------------------------

    def _receive(self) -> None:
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity = frames[0].bytes.decode(errors="replace")
            worker = self._workers.get(identity.removesuffix(protocol.CONTROL_SUFFIX))
            if worker is None:
                continue  # a worker already removed; its late messages mean nothing
            try:
                message, body = protocol.decode(frames[1:])
            except protocol.ProtocolError as exc:
                self._expel(worker, str(exc))
                continue
            worker.last_seen = time.monotonic()
            self._handle(worker, message, body)

    def _handle(self, worker: WorkerRecord, message: Any, body: list) -> None:
        if isinstance(message, protocol.Done):
            self._on_done(worker, message, body)
        elif isinstance(message, protocol.Hello):
            self._on_hello(worker, message)
        elif isinstance(message, protocol.Ready):
            self._on_ready(worker, message)
        elif isinstance(message, protocol.Executed):
            self._on_executed(worker, message)
        elif isinstance(message, protocol.Heartbeat):
            worker.cpu.sample(message.cpu_seconds, time.monotonic())
            worker.memory_bytes = message.memory_bytes

    def _expel(self, worker: WorkerRecord, problem: str) -> None:
        """Stop a worker that broke the protocol; the batches it holds run again elsewhere.

        Its connection is authenticated, so this is a bug or a version mix, not
        an attack. Ignoring the message instead could leave a call waiting
        forever for the result it should have carried.
        """
        if worker.kill_reason is None:  # the first problem is the one worth reading
            log.error("fiber_jupyter pool %r: worker %s sent a malformed message (%s); "
                      "stopping it", self.config.name, worker.worker_id, problem)
            worker.kill_reason = f"sent a malformed message: {problem}"
        self._backend.stop(worker.worker_id)

    def _on_hello(self, worker: WorkerRecord, hello: protocol.Hello) -> None:
        if hello.protocol != protocol.PROTOCOL_VERSION:
            worker.kill_reason = (f"speaks protocol {hello.protocol}, the pool speaks "
                                  f"{protocol.PROTOCOL_VERSION}: install the same fiber_jupyter")
            self._backend.stop(worker.worker_id)
            return
        worker.greeted = True
        worker.pid, worker.host = hello.pid, hello.host
        self._send(worker, protocol.Welcome(self.config.initializer, self._setup.codes()))

    def _on_ready(self, worker: WorkerRecord, ready: protocol.Ready) -> None:
        if ready.error is not None:
            what = ("the pool's initializer" if ready.failed_step is None else
                    f"setup step {ready.failed_step} (kept by pool.execute)")
            self._break(InitializerError(f"{what} raised in worker {worker.worker_id}:\n"
                                         f"{ready.error}"))
            return
        self._start_failures = 0
        self._launch_not_before = 0.0
        worker.batches_left = self.config.maxtasksperchild
        if worker.state is WorkerState.STARTING:
            self._workers.set_state(worker, WorkerState.READY)
            self._reconcile_needed = True
        self._emit(WorkerReady(self.config.name, worker.worker_id, worker.pid, worker.host))

    def _on_done(self, worker: WorkerRecord, done: protocol.Done, body: list) -> None:
        held = worker.in_flight.get(done.batch_id)
        problem = None if held is None else protocol.done_problem(done, held.count, body)
        if problem is not None:
            self._expel(worker, problem)
            return
        batch = self._workers.release(worker, done.batch_id)
        if batch is None or batch.state is BatchState.DONE:
            self._after_release(worker)
            return  # a duplicate, or a batch of a cancelled call
        self._log_span(worker.worker_id, batch, "done", time.monotonic() - done.seconds)
        self._take_result(batch, done, body)
        self._after_release(worker)

    def _take_result(self, batch: Batch, done: protocol.Done, body: list) -> None:
        """First result wins: record it, and withdraw any other copy of the batch."""
        job = batch.job
        self._withdraw(batch)
        job.record_timing(done.count, done.seconds)
        job.done += done.count
        job.failed += done.errors
        self._tasks_done += done.count
        if job.finished:
            return
        failed_fast = self._deliver(job, Chunk(batch.start, done.count, done.errors, body))
        if failed_fast or job.done >= job.total:
            self._finish_job(job)

    def _deliver(self, job: Job, chunk: Chunk) -> bool:
        self._to_wake.append(job.sink._wake)
        return job.sink._deliver(chunk)

    def _fail_call(self, job: Job, failure: BaseException) -> None:
        self._to_wake.append(job.sink._wake)
        job.sink._fail(failure)

    def _wake_callers(self) -> None:
        """Release callers whose answers arrived this turn, as the loop's last act."""
        for wake in self._to_wake:
            wake()
        self._to_wake.clear()

    def _withdraw(self, batch: Batch) -> None:
        """The batch is over: cancel it wherever it still runs (a speculative copy too)."""
        holders = (batch.worker_id, batch.copy_on) if batch.state is BatchState.RUNNING else ()
        for holder in filter(None, map(self._workers.get, filter(None, holders))):
            if batch.batch_id in holder.in_flight:
                self._log_span(holder.worker_id, batch, "cancelled",
                               batch.sent_on(holder.worker_id))
                self._workers.release(holder, batch.batch_id)
                self._send(holder, protocol.Cancel((batch.batch_id,)), control=True)
        batch.copy_on = None
        batch.state = BatchState.DONE
        batch.frames = []
        batch.job.batches.discard(batch)

    def _after_release(self, worker: WorkerRecord) -> None:
        """Stop a draining or retired worker once it holds nothing."""
        retiring = worker.batches_left == 0 or worker.state is WorkerState.DRAINING
        if retiring and not worker.in_flight and worker.state is not WorkerState.STOPPING:
            self._stop_gracefully(worker)

    # Jobs and batches --------------------------------------------------------

    def _finish_job(self, job: Job) -> None:
        """The call is over: drop what is left of it and tell its workers to forget it."""
        if job.finished:
            return
        job.finished = True
        for batch in list(job.batches):
            if batch.state is BatchState.QUEUED:
                self._withdraw(batch)
        job.dispatched = job.total
        for worker_id in job.known_by:
            worker = self._workers.get(worker_id)
            if worker is not None and job.job_id in worker.known_jobs:
                worker.known_jobs.discard(job.job_id)
                worker.forget.append(job.job_id)
        self._jobs.pop(job.job_id, None)
        self._emit_progress(job, finished=True)
        job.release_items()
        self._reconcile_needed = self._reconcile_needed or self.state is PoolState.CLOSING

    def _cancel_running(self, job: Job) -> int:
        """Interrupt this job's running batches; returns how many tasks they held."""
        interrupted = 0
        for batch in list(job.batches):
            if batch.state is BatchState.RUNNING:
                interrupted += batch.count
                self._withdraw(batch)
        return interrupted

    def _requeue(self, worker: WorkerRecord, reason: str) -> int:
        """Send a lost worker's batches back to the queue, or fail those out of retries.

        The loss is charged only where it is certain: to the one batch the
        worker held. A worker holding several may have finished one whose result
        was still being sent when the next one killed it, so none of them is
        charged; they become suspects, which run alone on a worker from now on,
        where a loss is surely their own. A task that kills workers never takes
        innocent neighbours down with it. Batches of a call that has already
        failed are dropped, not run again; a batch whose speculative copy (or
        original) still runs on another worker just goes on there.
        """
        requeued = 0
        held = [b for b in worker.in_flight.values() if b.state is BatchState.RUNNING]
        for batch in held:
            self._log_span(worker.worker_id, batch, "lost", batch.sent_on(worker.worker_id))
            if batch.job.finished:
                self._withdraw(batch)
                continue
            if batch.copy_on is not None:  # the other copy goes on alone
                if batch.worker_id == worker.worker_id:
                    batch.worker_id = batch.copy_on
                batch.copy_on = None
                continue
            batch.lost_at = time.time()
            batch.lost_on = worker.worker_id
            batch.suspect = batch.suspect or len(held) > 1
            if len(held) == 1:
                batch.losses.append(f"{worker.worker_id}: {reason}")
                if len(batch.losses) > self.config.max_retries:
                    self._give_up(batch)
                    continue
            batch.job.retries += batch.count
            batch.state = BatchState.QUEUED
            batch.worker_id = None
            self._retries.append(batch)
            requeued += batch.count
        return requeued

    def _give_up(self, batch: Batch) -> None:
        error = WorkerLostError(batch.describe(), batch.losses)
        self._emit(TasksFailed(self.config.name, batch.job.job_id, batch.job.label,
                               batch.start, batch.stop, str(error)))
        self._fail_batch(batch, error)

    def _fail_batch(self, batch: Batch, error: BaseException) -> None:
        job = batch.job
        self._withdraw(batch)
        job.done += batch.count
        job.failed += batch.count
        if not job.finished and (self._deliver(job, Chunk.failed(batch.start, batch.count, error))
                                 or job.done >= job.total):
            self._finish_job(job)

    def _next_batch(self, alone: bool) -> Optional[Batch]:
        """The next batch to send; a suspect only to a worker it will have to itself.

        While a suspect waits, no worker gets a second batch: the first worker
        to finish the one it holds takes the suspect, instead of the suspect
        waiting for a new worker or the end of the queue.
        """
        suspect_waits = False
        for batch in list(self._retries):
            if batch.state is not BatchState.QUEUED or batch.job.finished:
                self._retries.remove(batch)
            elif alone or not batch.suspect:
                self._retries.remove(batch)
                return batch
            else:
                suspect_waits = True
        if suspect_waits:
            return None
        while self._feeding:
            job = self._feeding[0]
            if job.undispatched <= 0 or job.finished:
                self._feeding.popleft()
                continue
            batch = job.carve(next(self._batch_ids), max(1, self._workers.live()))
            if batch.encoding_error is None:
                return batch
            self._fail_batch(batch, batch.encoding_error)
        return None

    def _dispatch(self) -> None:
        if not (self._retries or self._feeding):
            self._speculate()
            return
        # Breadth first: every idle worker gets a batch before any worker gets a
        # second one, so two long tasks on two workers run in parallel.
        for depth in range(CREDIT):
            for worker in self._workers.hungry():
                if len(worker.in_flight) != depth:
                    continue
                batch = self._next_batch(alone=depth == 0)
                if batch is None:
                    return
                self._send_batch(worker, batch)

    def _send_batch(self, worker: WorkerRecord, batch: Batch) -> None:
        job = batch.job
        self._send_run(worker, batch)
        batch.state = BatchState.RUNNING
        batch.worker_id = worker.worker_id
        batch.sent_at = time.monotonic()
        batch.attempts += 1
        if batch.lost_at is not None:
            self._emit(TaskRetried(self.config.name, job.job_id, job.label, batch.start,
                                   batch.stop, batch.attempts, worker.worker_id,
                                   batch.lost_at, batch.lost_on))

    def _send_run(self, worker: WorkerRecord, batch: Batch) -> None:
        """Send ``batch`` to ``worker``, with the call's function if it lacks it."""
        job = batch.job
        include_function = job.job_id not in worker.known_jobs
        run = protocol.Run(batch.batch_id, job.job_id, job.mode, batch.count,
                           include_function, tuple(worker.forget))
        worker.forget.clear()
        function_frame = job.function if include_function else b""
        self._send(worker, run, [function_frame, *batch.frames])
        worker.known_jobs.add(job.job_id)
        job.known_by.add(worker.worker_id)
        self._workers.assign(worker, batch)

    def _speculate(self) -> None:
        """Copy the most overdue running batches to idle workers; the first result wins.

        Only when nothing is queued (so no copy takes a worker from fresh
        work) and at most every PROGRESS_INTERVAL. Suspects never get a copy:
        one of them may be what kills workers.
        """
        now = time.monotonic()
        if now < self._next_speculation:
            return
        self._next_speculation = now + PROGRESS_INTERVAL
        idle = [w for w in self._workers.hungry() if not w.in_flight]
        if not idle:
            return
        overdue = sorted((b for job in self._jobs.values() if job.speculate
                          for b in job.batches if self._straggles(b, now)),
                         key=lambda b: b.sent_at)
        for worker, batch in zip(idle, overdue):
            self._send_run(worker, batch)
            batch.copy_on = worker.worker_id
            batch.copy_sent_at = now
            typical = batch.job.seconds_per_item() * batch.count
            self._emit(TaskSpeculated(self.config.name, batch.job.job_id, batch.job.label,
                                      batch.start, batch.stop, worker.worker_id,
                                      batch.worker_id, now - batch.sent_at, typical))

    @staticmethod
    def _straggles(batch: Batch, now: float) -> bool:
        """A lone running copy, far past the call's typical time for its size."""
        per_item = batch.job.seconds_per_item()
        if (batch.state is not BatchState.RUNNING or batch.copy_on is not None
                or batch.suspect or per_item is None):
            return False
        limit = max(SPECULATE_FACTOR * per_item * batch.count, SPECULATE_MIN_SECONDS)
        return now - batch.sent_at > limit

    def _send(self, worker: WorkerRecord, message: Any, body: list = (),
              control: bool = False) -> None:
        identity = worker.worker_id + protocol.CONTROL_SUFFIX if control else worker.worker_id
        frames = [identity.encode(), *protocol.encode(message, body)]
        try:
            self._router.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:
            # Not connected (yet, or any more): the backend's exit report or the
            # heartbeat check settles the worker's fate; a batch it was sent is
            # recovered as part of that worker's in-flight work.
            log.debug("could not send %s to %s: %s", type(message).__name__, worker.worker_id, exc)

    # Size, liveness, reporting -----------------------------------------------

    def _adapt(self) -> None:
        """Let an adaptive pool's target follow its backlog, every PROGRESS_INTERVAL."""
        now = time.monotonic()
        if self._adaptation is None or now < self._next_adapt:
            return
        self._next_adapt = now + PROGRESS_INTERVAL
        outstanding = sum(job.total - job.done for job in self._jobs.values())
        work = sum((job.total - job.done) * job.seconds_per_item_so_far(now)
                   for job in self._jobs.values())
        target = self._adaptation.target(self._target, outstanding, work, now)
        if target != self._target:
            log.info("fiber_jupyter pool %r: adapting from %d to %d workers for %d tasks",
                     self.config.name, self._target, target, outstanding)
            self._set_target(target)

    def _reconcile(self) -> None:
        if self._launch_deferred and time.monotonic() >= self._launch_not_before:
            self._launch_deferred = False
            self._reconcile_needed = True
        if not self._reconcile_needed:
            return
        self._reconcile_needed = False
        # A closing pool keeps its size until its last call is done, then drains.
        working = self.state is PoolState.RUNNING or (self.state is PoolState.CLOSING
                                                      and self._jobs)
        target = self._target if working else 0
        counts = self._workers.counts
        active = counts[WorkerState.STARTING] + counts[WorkerState.READY]
        if active == target or (active < target and not counts[WorkerState.DRAINING]):
            if active < target:
                self._launch(target - active)
            return  # the common cases, without a pass over every worker
        plan = plan_resize(list(self._workers), target)
        for worker in plan.reactivate:
            self._workers.set_state(worker, WorkerState.READY)
        if plan.launch:
            self._launch(plan.launch)
        for worker in plan.stop:
            self._stop_worker(worker)

    def _launch(self, count: int) -> None:
        if time.monotonic() < self._launch_not_before:
            self._launch_deferred = True  # _poll_timeout_ms wakes the loop when it may
            return
        launches = []
        for _ in range(count):
            worker = WorkerRecord(f"w{next(self._worker_ids)}")
            self._workers.add(worker)
            launches.append(WorkerLaunch(worker.worker_id, self.address, self._credentials.token,
                                         self.config.heartbeat_interval))
            self._emit(WorkerStarting(self.config.name, worker.worker_id))
        self._backend.start(launches)

    def _stop_worker(self, worker: WorkerRecord) -> None:
        if worker.state is WorkerState.STARTING:
            self._workers.set_state(worker, WorkerState.STOPPING)
            self._backend.stop(worker.worker_id)
        elif worker.in_flight:
            self._workers.set_state(worker, WorkerState.DRAINING)
        else:
            self._stop_gracefully(worker)

    def _stop_gracefully(self, worker: WorkerRecord) -> None:
        self._workers.set_state(worker, WorkerState.STOPPING)
        self._send(worker, protocol.Stop())

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat_check:
            return
        self._next_heartbeat_check = now + self.config.heartbeat_interval
        for worker in self._workers:
            silence = now - worker.last_seen
            limit = self.config.heartbeat_timeout if worker.greeted else self.config.start_timeout
            if silence > limit and worker.kill_reason is None:
                worker.kill_reason = (f"no heartbeat for {silence:.1f} s (hung or stopped)"
                                      if worker.greeted else self._start_timeout_reason(worker))
                self._backend.stop(worker.worker_id)

    def _start_timeout_reason(self, worker: WorkerRecord) -> str:
        reason = f"did not connect within {self.config.start_timeout:.0f} s"
        return f"{reason}: {worker.waiting_reason}" if worker.waiting_reason else reason

    def _report(self) -> None:
        """Refresh ``status`` and emit progress.

        While calls run, at most every PROGRESS_INTERVAL (or when workers change):
        this runs after every wakeup, and on a busy pool its cost would sit
        between each result and the caller waiting for it. When idle, always,
        so the last snapshot of a finished call is exact.
        """
        now = time.monotonic()
        size_changed = self._workers.take_changed() or self._target_changed
        if self._jobs and now < self._next_report and not size_changed:
            return
        self._next_report = now + PROGRESS_INTERVAL
        self._target_changed = False
        for job in self._jobs.values():
            self._emit_progress(job, finished=False)
        self.status = self._snapshot()
        scaled = (self.status.target, self.status.live, self.status.pending, self.status.adapt)
        if scaled != self._last_scaled:
            self._last_scaled = scaled
            self._emit(Scaled(self.config.name, *scaled))

    def _emit_progress(self, job: Job, finished: bool) -> None:
        if self._events.has_subscribers:
            self._emit(Progress(self.config.name, job.job_id, job.label, job.done, job.total,
                                job.failed, job.retries, time.monotonic() - job.started,
                                finished))

    def _log_span(self, worker_id: str, batch: Batch, outcome: str, began: float) -> None:
        """Record one batch's time on one worker; ``began`` is ``time.monotonic()``."""
        now, wall = time.monotonic(), time.time()
        job = batch.job
        self.task_log.span(Span(worker_id, job.job_id, job.label, batch.start, batch.stop,
                                wall - (now - began), wall, outcome))

    def _emit(self, event: PoolEvent) -> None:
        self.task_log.on_event(event)
        if self._events.has_subscribers:
            self._post(lambda: self._events.deliver(event))

    def _snapshot(self) -> PoolStatus:
        counts = self._workers.counts
        live = self._workers.live()
        queued = sum(j.undispatched for j in self._jobs.values()) + sum(
            b.count for b in self._retries if b.state is BatchState.QUEUED)
        return PoolStatus(
            state=self.state.value, target=self._target, live=live,
            pending=counts[WorkerState.STARTING], busy=self._workers.busy,
            idle=counts[WorkerState.READY] - self._workers.busy, lost=self._lost_total,
            tasks_queued=queued, tasks_running=self._workers.running_items,
            tasks_done=self._tasks_done,
            adapt=None if self._adaptation is None else (self._adaptation.settings.minimum,
                                                         self._adaptation.settings.maximum))

    # Ending ------------------------------------------------------------------

    def _refusal(self) -> BaseException:
        if self.broken_reason is not None:
            return BrokenPoolError(f"the pool is broken: {self.broken_reason}")
        return PoolStateError(f"Pool not running: the pool is {self.state.value}")

    def _break(self, reason: BaseException) -> None:
        """Fail every waiting call with ``reason``; the loop then shuts down."""
        self.broken_reason = reason
        self.state = PoolState.BROKEN
        for job in list(self._jobs.values()):
            self._fail_call(job, reason)
            self._finish_job(job)

    def _shut_down(self) -> None:
        """Kill what is left, then answer every command that came too late.

        The backend reports its kills as commands; closing the inbox first
        makes later calls fail at once (``Inbox.put`` refuses them), so a call
        racing with ``terminate`` from another thread can never wait forever.
        """
        self._backend.close()
        self._inbox.close()
        self._run_commands()
        for run in list(self._executions.values()):
            run.give_up(f"the pool stopped ({self.state.value}) before this worker answered")
            self._settle(run)
        self._wake_callers()
        self._router.close(linger=0)
        self._guard.close()
        self._context.term()
        reason = self.state.value if self.state is not PoolState.BROKEN else str(self.broken_reason)
        if self.state is not PoolState.BROKEN:
            self.state = PoolState.STOPPED
        self.status = self._snapshot()
        self._emit(PoolClosed(self.config.name, reason))
