"""Chaos: a long map under SIGKILLs, SIGSTOPs and resizing, measured.

Usage: python -m bench.chaos [--tasks 100000] [--minutes 0] [--seed 1] [--out docs/benchmarks.md]

Local backend, ``Pool(4, heartbeat_timeout=2, max_retries=100)``. One map of
``--tasks`` tasks of mixed lengths (90 % instant, 8 % 1 ms, 2 % 10 ms, default
chunking) runs first in peace, then while a ``ChaosMonkey`` strikes every
200 ms: it SIGKILLs a random live worker (one strike in ten is a SIGSTOP
instead, which only the heartbeat timeout can detect) and, one time in five,
rescales the pool to 1–6 workers. Every map must return exactly the serial
answer and raise the pool's done count by exactly its number of tasks: nothing
lost, nothing counted twice. A map that does not end within its time limit is
reported as a hang and fails the run.

Reported: throughput in peace and under chaos, and their ratio; the strikes;
for each SIGKILLed worker: kill → ``WorkerLost`` (detection) and, when it held
tasks, kill → ``TaskRetried`` (its tasks dispatched to another worker); for
each SIGSTOPped one, stop → ``WorkerLost`` (bounded by the heartbeat timeout).

``--minutes N`` is the soak mode: chaotic maps one after another until N
minutes have passed, each reported. Writes the "chaos" section of the report
(see ``bench.sections``); progress goes to stderr.
"""

import argparse
import logging
import os
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import fiber_jupyter
from fiber_jupyter import TaskRetried, WorkerLost, WorkerReady, WorkerStopped

from bench import observe, recovery_tasks, sections

log = logging.getLogger("bench.chaos")

WORKERS = 4
HEARTBEAT_TIMEOUT_S = 2.0
MAX_RETRIES = 100
TASKS = 100_000
SEED = 1
# (seconds, weight): the mixed task lengths.
TASK_MIX = ((0.0, 90), (0.001, 8), (0.01, 2))
MAP_TIMEOUT_S = 600
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Strike:
    """One signal sent to one worker."""

    time: float
    worker_id: str
    signal: signal.Signals


class ChaosMonkey:
    """Every ``period`` s: SIGKILL a random live worker (sometimes SIGSTOP it), maybe rescale.

    Used as a context manager around the work it disturbs. It learns worker
    pids from the pool's own events and strikes each worker at most once, so
    every strike can be matched to the pool's reaction: ``lost`` and
    ``retried`` keep the first ``WorkerLost`` of each worker and the first
    ``TaskRetried`` of the tasks lost with it.
    """

    def __init__(self, pool: fiber_jupyter.Pool, seed: int, period: float = 0.2,
                 stop_share: float = 0.1, resize_share: float = 0.2, largest: int = 6) -> None:
        self._pool = pool
        self._random = random.Random(seed)
        self._period = period
        self._stop_share = stop_share
        self._resize_share = resize_share
        self._largest = largest
        self._pids: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monkey", daemon=True)
        self.strikes: List[Strike] = []
        self.resizes = 0
        self.lost: Dict[str, WorkerLost] = {}
        self.retried: Dict[str, TaskRetried] = {}
        pool.events.subscribe(self._track)

    def __enter__(self) -> "ChaosMonkey":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def count(self, signum: signal.Signals) -> int:
        return sum(strike.signal == signum for strike in self.strikes)

    def _track(self, event) -> None:
        with self._lock:
            if isinstance(event, WorkerReady):
                self._pids[event.worker_id] = event.pid
            elif isinstance(event, WorkerLost):
                self._pids.pop(event.worker_id, None)
                self.lost.setdefault(event.worker_id, event)
            elif isinstance(event, WorkerStopped):
                self._pids.pop(event.worker_id, None)
            elif isinstance(event, TaskRetried):
                self.retried.setdefault(event.lost_on, event)

    def _run(self) -> None:
        # The period is the chaos cadence, not a synchronisation.
        while not self._done.wait(self._period):
            self._strike()
            if self._random.random() < self._resize_share:
                self._pool.scale(self._random.randint(1, self._largest))
                self.resizes += 1

    def _strike(self) -> None:
        with self._lock:
            if not self._pids:
                return
            worker_id = self._random.choice(sorted(self._pids))
            pid = self._pids.pop(worker_id)
        signum = signal.SIGSTOP if self._random.random() < self._stop_share else signal.SIGKILL
        struck_at = time.time()
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return  # it ended on its own first
        self.strikes.append(Strike(struck_at, worker_id, signum))


@dataclass
class Round:
    """One map: its throughput, and under chaos what was done to it and how the pool answered."""

    seconds: float
    tasks: int
    kills: int = 0
    stops: int = 0
    resizes: int = 0
    detection_ms: List[float] = field(default_factory=list)
    redispatch_ms: List[float] = field(default_factory=list)
    stop_detection_ms: List[float] = field(default_factory=list)

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds


def task_lengths(count: int, seed: int) -> List[float]:
    """The mixed task lengths of ``TASK_MIX``, the same for the same seed."""
    seconds, weights = zip(*TASK_MIX)
    return random.Random(seed).choices(seconds, weights, k=count)


def measure(monkey: ChaosMonkey, round_: Round) -> Round:
    """Match each strike to the pool's reaction, in milliseconds after it."""
    for strike in monkey.strikes:
        lost = monkey.lost.get(strike.worker_id)
        if lost is None:
            continue  # retired by a scale-down before the pool noticed
        after_ms = (lost.time - strike.time) * 1e3
        if strike.signal == signal.SIGSTOP:
            round_.stop_detection_ms.append(after_ms)
            continue
        round_.detection_ms.append(after_ms)
        retried = monkey.retried.get(strike.worker_id)
        if retried is not None:
            round_.redispatch_ms.append((retried.time - strike.time) * 1e3)
    round_.kills = monkey.count(signal.SIGKILL)
    round_.stops = monkey.count(signal.SIGSTOP)
    round_.resizes = monkey.resizes
    return round_


def run_map(pool: fiber_jupyter.Pool, lengths: List[float]) -> float:
    """One map, checked against the serial answer and the done count; returns its seconds."""
    done_before = pool.status().tasks_done
    started = time.perf_counter()
    result = pool.starmap_async(recovery_tasks.square_after, list(enumerate(lengths)))
    try:
        results = result.get(MAP_TIMEOUT_S)
    except fiber_jupyter.TimeoutError:
        raise RuntimeError(f"hang: a map of {len(lengths)} tasks did not end within "
                           f"{MAP_TIMEOUT_S} s; pool status {pool.status()}") from None
    seconds = time.perf_counter() - started
    if results != [recovery_tasks.square(x) for x in range(len(lengths))]:
        raise AssertionError("a map under chaos returned wrong results")
    counted = pool.status().tasks_done - done_before
    if counted != len(lengths):
        raise AssertionError(f"{counted} tasks counted done for a map of {len(lengths)}")
    return seconds


def chaotic_round(pool: fiber_jupyter.Pool, lengths: List[float], seed: int) -> Round:
    """One map under a fresh monkey, measured."""
    with ChaosMonkey(pool, seed) as monkey:
        seconds = run_map(pool, lengths)
    return measure(monkey, Round(seconds, len(lengths)))


def _percentiles(values: List[float]) -> str:
    if not values:
        return "–"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(ordered):.0f} / {p90:.0f} / {ordered[-1]:.0f}"


def report(peace: Round, rounds: List[Round], tasks: int) -> str:
    """The markdown of the chaos section."""
    pooled = Round(sum(r.seconds for r in rounds), sum(r.tasks for r in rounds))
    for r in rounds:
        pooled.detection_ms += r.detection_ms
        pooled.redispatch_ms += r.redispatch_ms
        pooled.stop_detection_ms += r.stop_detection_ms
    lines = [
        "## Chaos",
        "",
        sections.provenance("bench.chaos"),
        "",
        f"`Pool({WORKERS}, heartbeat_timeout={HEARTBEAT_TIMEOUT_S:g}, "
        f"max_retries={MAX_RETRIES})`, maps of {tasks:,} tasks (90 % instant, 8 % 1 ms, "
        "2 % 10 ms). Under chaos, every 200 ms a random live worker is SIGKILLed (one "
        "strike in ten: SIGSTOPped) and one time in five the pool is rescaled to 1–6 "
        "workers. Every map returned exactly the serial answer and counted each task done "
        "once; no map hung.",
        "",
        "| map | seconds | tasks/s | SIGKILL | SIGSTOP | resizes |",
        "|---|---:|---:|---:|---:|---:|",
        f"| in peace | {peace.seconds:.1f} | {peace.tasks_per_s:,.0f} | – | – | – |",
    ]
    for number, r in enumerate(rounds, 1):
        lines.append(f"| under chaos #{number} | {r.seconds:.1f} | {r.tasks_per_s:,.0f} | "
                     f"{r.kills} | {r.stops} | {r.resizes} |")
    lines += [
        "",
        f"Throughput under chaos / in peace: **{pooled.tasks_per_s / peace.tasks_per_s:.2f}**.",
        "",
        "| reaction (ms after the signal) | samples | median / p90 / max |",
        "|---|---:|---:|",
        f"| SIGKILL → WorkerLost | {len(pooled.detection_ms)} | "
        f"{_percentiles(pooled.detection_ms)} |",
        f"| SIGKILL → its tasks re-dispatched (TaskRetried) | {len(pooled.redispatch_ms)} | "
        f"{_percentiles(pooled.redispatch_ms)} |",
        f"| SIGSTOP → WorkerLost (heartbeat timeout {HEARTBEAT_TIMEOUT_S:g} s) | "
        f"{len(pooled.stop_detection_ms)} | {_percentiles(pooled.stop_detection_ms)} |",
    ]
    return "\n".join(lines) + "\n"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=TASKS, help="tasks per map")
    parser.add_argument("--minutes", type=float, default=0,
                        help="soak: chaotic maps until this many minutes have passed")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=sections.DEFAULT_PATH,
                        help="markdown report whose chaos section is rewritten")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    lengths = task_lengths(args.tasks, args.seed)
    pool, _, _ = observe.start_pool(WORKERS, START_TIMEOUT_S, name="chaos",
                                    heartbeat_timeout=HEARTBEAT_TIMEOUT_S,
                                    max_retries=MAX_RETRIES)
    try:
        peace = Round(run_map(pool, lengths), len(lengths))
        log.info("in peace: %.1f s", peace.seconds)
        rounds: List[Round] = []
        soak_ends = time.monotonic() + args.minutes * 60
        while not rounds or time.monotonic() < soak_ends:
            rounds.append(chaotic_round(pool, lengths, args.seed + len(rounds)))
            log.info("under chaos #%d: %.1f s, %d kills", len(rounds), rounds[-1].seconds,
                     rounds[-1].kills)
    finally:
        pool.terminate()
        pool.join()
    observe.check_no_leftovers()
    text = report(peace, rounds, args.tasks)
    sections.write(args.out, sections.CHAOS, text)
    print(text)


if __name__ == "__main__":
    main()
