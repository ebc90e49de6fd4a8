"""Speculative tails: a heavy-tailed map on a pool with one slowed worker, with and without.

Usage: python -m bench.speculation [--tasks 400] [--reps 3] [--out docs/benchmarks.md]

Local backend, ``Pool(4)``. One worker is slowed: every task it runs takes
ten times as long (a slow node, a noisy neighbour). The map's task durations
are heavy-tailed (Pareto, shape 1.5, 10 ms minimum, capped at 2 s; the same
for every run). Each repetition runs the map twice, in alternating order, on
the same pool: ``speculate=False`` (every task runs where it was first sent)
and ``speculate=True`` (once the queue is empty, tasks running three times
longer than the call's average also run on idle workers; the first result
wins). Both must return the serial answer. Reported: end-to-end seconds
(median of the repetitions), their ratio, the copies made, and the ideal
(total work / 4 workers, as if no worker were slowed).
"""

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from fiber_jupyter import TaskSpeculated

from bench import observe, recovery_tasks, sections

log = logging.getLogger("bench.speculation")

WORKERS = 4
TASKS = 400
REPS = 3
SLOWDOWN = 10
SEED = 7
START_TIMEOUT_S = 120
MAP_TIMEOUT_S = 600


def task_seconds(count: int, seed: int = SEED) -> List[float]:
    """Pareto-distributed durations: most tasks short, a few very long."""
    generator = random.Random(seed)
    return [min(2.0, 0.01 * generator.paretovariate(1.5)) for _ in range(count)]


def timed_map(pool, jobs: list, speculate: bool) -> float:
    """Seconds for one map, checked against the serial answer."""
    started = time.perf_counter()
    results = pool.starmap_async(recovery_tasks.square_after_slowed, jobs,
                                 speculate=speculate).get(MAP_TIMEOUT_S)
    seconds = time.perf_counter() - started
    if results != [recovery_tasks.square(x) for x in range(len(jobs))]:
        raise AssertionError("a map returned wrong results")
    return seconds


def report(durations: List[float], off: List[float], on: List[float], copies: int) -> str:
    ideal = sum(durations) / WORKERS
    off_s, on_s = statistics.median(off), statistics.median(on)
    return "\n".join([
        "## Speculative tails",
        "",
        sections.provenance("bench.speculation"),
        "",
        f"Local backend, `Pool({WORKERS})`, one worker slowed {SLOWDOWN}×. A map of "
        f"{len(durations)} tasks with Pareto-distributed durations (shape 1.5, 10 ms "
        f"minimum, capped at 2 s; mean {statistics.mean(durations) * 1e3:.0f} ms, longest "
        f"{max(durations):.2f} s), run with and without speculation in alternating order, "
        f"{len(off)} times each; every result equal to the serial answer.",
        "",
        "| | end-to-end s (median) | runs |",
        "|---|---:|---|",
        f"| `speculate=False` | {off_s:.2f} | {', '.join(f'{s:.2f}' for s in off)} |",
        f"| `speculate=True` | {on_s:.2f} | {', '.join(f'{s:.2f}' for s in on)} |",
        f"| ideal (work / {WORKERS}, no slowed worker) | {ideal:.2f} | |",
        "",
        f"With / without speculation: **{on_s / off_s:.2f}**; {copies} task copies made "
        f"in {len(on)} maps.",
    ]) + "\n"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--out", type=Path, default=sections.DEFAULT_PATH,
                        help="markdown report whose speculation section is rewritten")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    durations = task_seconds(args.tasks)
    pool, events, _ = observe.start_pool(WORKERS, START_TIMEOUT_S, name="speculation")
    off: List[float] = []
    on: List[float] = []
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".pid") as slowed:
            slowed.write(f"{pool.workers()[0].pid} {SLOWDOWN}")
            slowed.flush()
            jobs = [(x, seconds, slowed.name) for x, seconds in enumerate(durations)]
            timed_map(pool, jobs, speculate=False)  # warm-up
            for rep in range(args.reps):
                for speculate in ((False, True) if rep % 2 == 0 else (True, False)):
                    seconds = timed_map(pool, jobs, speculate)
                    (on if speculate else off).append(seconds)
                    log.info("speculate=%s: %.2f s", speculate, seconds)
        copies = len(events.of(TaskSpeculated))
    finally:
        pool.terminate()
        pool.join()
    observe.check_no_leftovers()
    text = report(durations, off, on, copies)
    sections.write(args.out, sections.SPECULATION, text)
    print(text)


if __name__ == "__main__":
    main()
