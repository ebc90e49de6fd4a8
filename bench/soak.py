"""Soak: what a notebook's pool lives through in a day, measured.

Usage: python -m bench.soak [--idle-minutes 10] [--cycles 100] [--tasks 1000000]
                            [--out docs/benchmarks.md]

Local backend. Three measurements, each on a fresh pool:

- idle: a ``Pool(2)`` with default settings answers a map, sits idle for
  ``--idle-minutes``, then answers another; reported: both maps' seconds, and
  the workers lost or started during the idle time (none is expected).
- cycles: ``--cycles`` times create a ``Pool(2)``, map, terminate and join;
  reported: threads, file descriptors and child processes of this process
  before and after (after one warm-up cycle), which must be equal.
- memory: ``imap_unordered`` over ``--tasks`` tasks with ``chunksize=10``,
  results consumed as they come; the master's resident memory is sampled at
  every fifth of the tasks. Each result must arrive exactly once.

The tests use the same functions with shorter settings. Writes the "soak"
section of the report (see ``bench.sections``); progress goes to stderr.
"""

import argparse
import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple

import psutil

import fiber_jupyter
from fiber_jupyter import WorkerLost, WorkerStarting

from bench import observe, recovery_tasks, sections

log = logging.getLogger("bench.soak")

IDLE_MINUTES = 10
CYCLES = 100
TASKS = 1_000_000
CHUNKSIZE = 10
MEMORY_SAMPLES = 5
MAP_TIMEOUT_S = 60


class Resources(NamedTuple):
    """What a pool could leak in the process that made it."""

    threads: int
    fds: int
    children: int


def resources() -> Resources:
    """This process's threads, open file descriptors and live child processes, after a gc."""
    gc.collect()
    me = psutil.Process()
    return Resources(threading.active_count(), me.num_fds(), len(me.children(recursive=True)))


def one_cycle() -> None:
    """Create a pool, use it, end it: a notebook cell run again and again."""
    pool = fiber_jupyter.Pool(2)
    try:
        checked_map(pool, 20)
    finally:
        pool.terminate()
        pool.join()


def resources_around_cycles(cycles: int) -> tuple:
    """(before, after) ``cycles`` create/map/terminate cycles, after one warm-up cycle.

    The warm-up pays for imports and lazily made singletons (ZeroMQ's context).
    """
    one_cycle()
    before = resources()
    for _ in range(cycles):
        one_cycle()
    return before, resources()


def checked_map(pool: fiber_jupyter.Pool, tasks: int) -> float:
    """Seconds for a map of ``tasks`` squares, checked against the serial answer."""
    started = time.perf_counter()
    results = pool.map_async(recovery_tasks.square, range(tasks)).get(MAP_TIMEOUT_S)
    if results != [recovery_tasks.square(x) for x in range(tasks)]:
        raise AssertionError("a map returned wrong results")
    return time.perf_counter() - started


@dataclass
class Idle:
    """A map before and after an idle pause, and what the pool did meanwhile."""

    idle_s: float
    before_s: float
    after_s: float
    lost: int
    started: int


def map_after_idle(pool: fiber_jupyter.Pool, idle_s: float) -> Idle:
    """Map, stay idle ``idle_s`` seconds (the subject, not a synchronisation), map again."""
    before_s = checked_map(pool, 1000)
    during: list = []
    pool.events.subscribe(during.append)
    threading.Event().wait(idle_s)
    after_s = checked_map(pool, 1000)
    return Idle(idle_s, before_s, after_s,
                lost=sum(isinstance(e, WorkerLost) for e in during),
                started=sum(isinstance(e, WorkerStarting) for e in during))


def memory_over_tasks(pool: fiber_jupyter.Pool, tasks: int, samples: int = MEMORY_SAMPLES,
                      chunksize: int = CHUNKSIZE) -> List[int]:
    """Resident bytes of this process at every ``tasks / samples`` results of one imap.

    The first sample is taken once the call is under way, so the call's own
    arguments are already counted. Fails unless each result arrived once.
    """
    me = psutil.Process()
    every = max(1, tasks // samples)
    resident: List[int] = []
    total = received = 0
    for received, value in enumerate(pool.imap_unordered(recovery_tasks.square, range(tasks),
                                                         chunksize=chunksize), 1):
        total += value
        if received % every == 0:
            resident.append(me.memory_info().rss)
    if received != tasks or total != sum(recovery_tasks.square(x) for x in range(tasks)):
        raise AssertionError(f"{received} results for {tasks} tasks, or a wrong one among them")
    return resident


def report(idle: Idle, cycles: int, around: tuple, tasks: int, resident: List[int]) -> str:
    """The markdown of the soak section."""
    before, after = around
    mib = [f"{r / 2**20:.0f}" for r in resident]
    growth = (max(resident) - resident[0]) / 2**20
    return "\n".join([
        "## Soak",
        "",
        sections.provenance("bench.soak"),
        "",
        f"- **Idle**: `Pool(2)` with default settings, idle for {idle.idle_s / 60:g} min "
        f"between two maps of 1,000 tasks: {idle.before_s * 1e3:.0f} ms before, "
        f"{idle.after_s * 1e3:.0f} ms after; workers lost during the idle time: "
        f"{idle.lost}, started: {idle.started}.",
        f"- **{cycles} create/map/terminate cycles** of `Pool(2)`: threads {before.threads} → "
        f"{after.threads}, file descriptors {before.fds} → {after.fds}, child processes "
        f"{before.children} → {after.children}.",
        f"- **Memory over {tasks:,} tasks** (`imap_unordered`, `chunksize={CHUNKSIZE}`, "
        f"results consumed as they come): the master's resident MiB at each fifth: "
        f"{', '.join(mib)}; growth after the first sample {growth:.1f} MiB.",
    ]) + "\n"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-minutes", type=float, default=IDLE_MINUTES)
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--out", type=Path, default=sections.DEFAULT_PATH,
                        help="markdown report whose soak section is rewritten")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    with fiber_jupyter.Pool(2, name="soak-idle") as pool:
        log.info("idle for %g min", args.idle_minutes)
        idle = map_after_idle(pool, args.idle_minutes * 60)
    log.info("%d cycles", args.cycles)
    around = resources_around_cycles(args.cycles)
    with fiber_jupyter.Pool(2, name="soak-memory") as pool:
        log.info("memory over %d tasks", args.tasks)
        resident = memory_over_tasks(pool, args.tasks)
    observe.check_no_leftovers()
    text = report(idle, args.cycles, around, args.tasks, resident)
    sections.write(args.out, sections.SOAK, text)
    print(text)


if __name__ == "__main__":
    main()
