"""Does the scheduler belong in a thread of the kernel? Measure it.

The pool's I/O thread shares the GIL with whatever the notebook runs. This
compares a map while the calling thread waits (the usual ``pool.map``) with
the same map while the calling thread spins in pure Python (a cell doing
other work after ``map_async``), which makes the I/O thread wait up to one
GIL switch interval (5 ms) per wakeup.

Run: ``python -m bench.busy_kernel``.
"""

import logging
import statistics
import time

import fiber_jupyter

log = logging.getLogger(__name__)

WORKERS = 2
REPETITIONS = 3
CASES = ((0.001, 2000), (0.010, 200))  # (task seconds, tasks): 1 s of ideal time each


def _run(pool, seconds, count, busy):
    """Wall time of one map_async of sleeps, the caller waiting or spinning."""
    t0 = time.perf_counter()
    result = pool.map_async(time.sleep, [seconds] * count)
    spins = 0
    while busy and not result.ready():
        spins += 1
    result.get()
    return time.perf_counter() - t0


def _median_run(pool, seconds, count, busy):
    return statistics.median(_run(pool, seconds, count, busy) for _ in range(REPETITIONS))


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = ["| task | caller waiting: measured/ideal | caller spinning: measured/ideal "
            "| slowdown |", "|---|---|---|---|"]
    with fiber_jupyter.Pool(WORKERS) as pool:
        pool.map(abs, range(2 * WORKERS))
        for seconds, count in CASES:
            ideal = seconds * count / WORKERS
            waiting = _median_run(pool, seconds, count, busy=False)
            spinning = _median_run(pool, seconds, count, busy=True)
            rows.append(f"| {seconds * 1e3:g} ms x {count} | {waiting / ideal:.3f} | "
                        f"{spinning / ideal:.3f} | {spinning / waiting:.3f}x |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
