"""Scale: does the master's cost per task stay flat from 2 to 2,048 workers?

Usage: python -m bench.scale [--sizes 2,8,32,128,512,2048] [--reps 3]
                             [--min-tasks 20000] [--out docs/benchmarks.md]

One master (a ``fiber_jupyter.Pool`` in this process, used through its public
API) serves n simulated workers: ``bench.simulated`` runs them as pairs of
real, authenticated ZeroMQ connections in 4 host processes, so 2,048 workers
fit on a 2-core machine. Simulated workers run no code, so what is measured is
the master's own work (and the transport's) per task. For each n:

- time to live: from ``Pool(n)`` until the pool's Scaled event reports n live
  workers (every worker connected, authenticated, greeted and ready), and the
  kernel's count of TCP listen-queue overflows meanwhile (system-wide);
- per-task cost: wall time of ``pool.map(noop, range(T), chunksize=1)`` / T,
  T = max(min-tasks, 10 n), median of the repetitions after a warm-up map;
  reported relative to n = 2 (target: flat within ±20 % up to 2,048);
- master CPU per task: CPU time of this process (the pool's threads and the
  caller's) during the same maps / T. Wall time at small n is bound by round
  trips (each worker holds at most 2 batches), CPU time is the master's work.

Writes the "scale" section of the report (see ``bench.sections``); progress is
logged to stderr, the section is also printed.
"""

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import fiber_jupyter
from fiber_jupyter.backends import BACKENDS

from bench import observe, sections, simulated
from bench.workloads import noop

log = logging.getLogger("bench.scale")

SIZES = (2, 8, 32, 128, 512, 2048)
REPETITIONS = 3
MIN_TASKS = 20_000
TASKS_PER_WORKER = 10
WARMUP_TASKS_PER_WORKER = 4
FLATNESS = 0.20
NETSTAT = Path("/proc/net/netstat")
# Generous bounds, only reached if something is broken; the pool's own start
# timeout is raised too, so a slow start-up is measured rather than killed.
START_TIMEOUT_S = 600
MAP_TIMEOUT_S = 600
CLOSE_TIMEOUT_S = 120


DESCRIPTION = (
    "Each simulated worker is two authenticated ZeroMQ connections speaking the real "
    "protocol; {hosts} host processes serve them all (`bench/simulated.py`) and run no task "
    "code, so this measures the master's work per task.\n\n"
    "- **Time to live**: from `Pool(n)` until its Scaled event reports n live workers.\n"
    "- **Listen overflows**: the kernel's TcpExt ListenOverflows count over that start-up "
    "(system-wide). Each overflow is a connection attempt dropped by the master's full "
    "listen queue, which the client's kernel retries 1, 3, 7, 15 and 31 s later.\n"
    "- **Per-task cost**: wall time of `map(noop, range(T), chunksize=1)` / T, median "
    "(min–max) of {reps} maps after a warm-up map. **Master CPU**: this process's CPU "
    "time (the pool's threads, the caller's and libzmq's) over the same maps / T. "
    "**Relative**: to {baseline} workers; with few workers the wall time is bound by round "
    "trips (a worker holds at most 2 batches), and the master's fixed cost per wakeup is "
    "shared by fewer messages."
)


@dataclass
class SizeResult:
    """What one pool size measured, or why it could not."""

    workers: int
    tasks: int = 0
    live_s: float = 0.0
    listen_overflows: int | None = None
    costs_us: list = field(default_factory=list)
    cpu_us: list = field(default_factory=list)
    lost: int = 0
    error: str = ""

    @property
    def cost_us(self):
        return statistics.median(self.costs_us)

    @property
    def median_cpu_us(self):
        return statistics.median(self.cpu_us)


def _sizes(text):
    """Comma-separated positive pool sizes."""
    sizes = [int(size) for size in text.split(",") if size.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"pool sizes must be positive integers, got {text!r}")
    return sizes


def _parse_args(argv):
    """Command line; the defaults are the sizes and counts the target is stated for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES),
                        help="comma-separated worker counts (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=REPETITIONS, help="maps timed per size")
    parser.add_argument("--min-tasks", type=int, default=MIN_TASKS,
                        help=f"tasks per map, at least; {TASKS_PER_WORKER} per worker beyond")
    parser.add_argument("--out", type=Path, default=sections.DEFAULT_PATH,
                        help="markdown report whose scale section is rewritten")
    return parser.parse_args(argv)


def _listen_overflows():
    """The kernel's count of connection attempts dropped by full listen queues, or None.

    A dropped attempt is retried by the client's kernel 1, 3, 7, 15 and 31 s
    later, which shows up as a time to live in whole seconds.
    """
    try:
        lines = NETSTAT.read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counts = dict(zip(names.split()[1:], values.split()[1:]))
            return int(counts["ListenOverflows"]) if "ListenOverflows" in counts else None
    return None


def _timed_map(pool, tasks):
    """(wall, CPU) seconds of one map of no-op tasks, one task per batch; checks every result."""
    cpu = time.process_time()
    started = time.perf_counter()
    results = pool.map_async(noop, range(tasks), chunksize=1).get(MAP_TIMEOUT_S)
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    if results != list(range(tasks)):
        raise AssertionError(f"map of {tasks} no-op tasks returned wrong results")
    return elapsed


def _check_every_end_reported(events):
    """Each worker seen must have ended exactly once: stopped, or lost.

    Workers are seen by their Starting or Ready events: a pool starts its
    workers at once, so the Starting events of the first ones may come before
    the benchmark subscribes.
    """
    seen = {e.worker_id for kind in (fiber_jupyter.WorkerStarting, fiber_jupyter.WorkerReady)
            for e in events.of(kind)}
    ends = [e.worker_id for kind in (fiber_jupyter.WorkerStopped, fiber_jupyter.WorkerLost)
            for e in events.of(kind)]
    if sorted(ends) != sorted(seen):
        raise AssertionError(f"{len(seen)} workers seen but {len(ends)} ends were reported")


def _measure(workers, reps, min_tasks):
    """Start a pool of ``workers`` simulated workers, time it, close it."""
    result = SizeResult(workers, tasks=max(min_tasks, TASKS_PER_WORKER * workers))
    overflows = _listen_overflows()
    pool, events, result.live_s = observe.start_pool(
        workers, START_TIMEOUT_S, backend=simulated.SimulatedBackend.name,
        name=f"scale-{workers}", start_timeout=START_TIMEOUT_S)
    if overflows is not None:
        result.listen_overflows = _listen_overflows() - overflows
    try:
        log.info("%d workers live after %.2f s (%s listen overflows)", workers, result.live_s,
                 result.listen_overflows)
        _timed_map(pool, WARMUP_TASKS_PER_WORKER * workers)
        for rep in range(reps):
            seconds, cpu_seconds = _timed_map(pool, result.tasks)
            result.costs_us.append(seconds / result.tasks * 1e6)
            result.cpu_us.append(cpu_seconds / result.tasks * 1e6)
            log.info("%d workers, map %d/%d: %.2f s, %.1f µs per task, %.1f µs CPU", workers,
                     rep + 1, reps, seconds, result.costs_us[-1], result.cpu_us[-1])
        result.lost = pool.status().lost
    except Exception:
        pool.terminate()
        pool.join()
        raise
    observe.close_pool(pool, events, CLOSE_TIMEOUT_S)
    _check_every_end_reported(events)
    return result


def _measure_all(args):
    """Every size in turn; a size that fails is reported, and the others still run."""
    results = []
    for workers in args.sizes:
        try:
            results.append(_measure(workers, args.reps, args.min_tasks))
        except Exception as exc:
            log.exception("%d workers: failed", workers)
            results.append(SizeResult(workers, error=f"{type(exc).__name__}: {exc}"))
        observe.check_no_leftovers()
    return results


def _spread(values, fmt):
    """'median (min–max)'."""
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _row(result, baseline):
    """One table row; cost relative to the smallest size measured."""
    if result.error:
        return f"| {result.workers} | failed: {result.error} | | | | | | | | |"
    overflows = "n/a" if result.listen_overflows is None else result.listen_overflows
    return (f"| {result.workers} | {result.live_s:.2f} | {overflows} | {result.tasks} | "
            f"{_spread(result.costs_us, '.1f')} | {result.cost_us / baseline.cost_us:.2f} | "
            f"{_spread(result.cpu_us, '.1f')} | "
            f"{result.median_cpu_us / baseline.median_cpu_us:.2f} | "
            f"{1e6 / result.cost_us:,.0f} | {result.lost} |")


def _flatness(ratios):
    """'met'/'not met' for ratios to the smallest size, with their range.

    The range shows which way a miss goes: above 1, larger pools cost more
    per task; below 1, the smallest pool is the dear one.
    """
    met = all(abs(ratio - 1) <= FLATNESS for ratio in ratios)
    return (f"**{'met' if met else 'not met'}** ({min(ratios):.2f}×–{max(ratios):.2f}× "
            "the smallest pool's)")


def _verdict(results, baseline):
    """The flatness target on wall time (the target's measure) and on master CPU."""
    measured = [r for r in results if not r.error]
    if baseline is None or len(measured) < 2:
        return "Target (flat within ±20 %): not judged, fewer than two sizes were measured."
    wall = _flatness([r.cost_us / baseline.cost_us for r in measured])
    cpu = _flatness([r.median_cpu_us / baseline.median_cpu_us for r in measured])
    failed = [str(r.workers) for r in results if r.error]
    missing = f" Not measured: {', '.join(failed)} workers." if failed else ""
    return (f"Target, per-task cost flat within ±20 % from {measured[0].workers} to "
            f"{measured[-1].workers} workers: wall time {wall}; master CPU {cpu}.{missing}")


def render(results, reps):
    """The scale section of the report."""
    measured = [r for r in results if not r.error]
    baseline = measured[0] if measured else None
    lines = [
        "## Scale: one master, many simulated workers",
        sections.provenance("bench.scale"),
        DESCRIPTION.format(hosts=simulated.HOSTS, reps=reps,
                           baseline=baseline.workers if baseline else "the smallest pool"),
        "| workers | time to live s | listen overflows | tasks per map (T) | wall µs per task | "
        "relative | master CPU µs per task | relative | tasks/s | workers lost |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(_row(result, baseline) for result in results),
        _verdict(results, baseline),
    ]
    return "\n\n".join(lines)


def main():
    """Measure every size, then write and print the scale section."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse_args(sys.argv[1:])
    BACKENDS[simulated.SimulatedBackend.name] = simulated.SimulatedBackend
    results = _measure_all(args)
    text = render(results, args.reps)
    sections.write(args.out, sections.SCALE, text)
    log.info("scale section written to %s", args.out)
    print(text)


if __name__ == "__main__":
    main()
