"""Task functions and workload drivers W1–W6 (definitions in BASELINES.md).

Task functions are module-level so that every framework pickles them by
reference as ``bench.workloads.<name>``; workers import this module because
child.py puts the repository root on PYTHONPATH.

Each driver checks the results it gets back, so that a framework returning
wrong or missing results fails loudly instead of looking fast.
"""

import statistics
import time
from dataclasses import dataclass

import numpy as np

WORKERS = 2
W4_PERIODS_S = (0.001, 0.010, 0.100)
W6_ELEMENTS = 1_000_000  # 8 MB of float64 per array
ES_DIM = 10_000  # 80 KB of float64 parameters
ES_POPULATION = 64
ES_ROUNDS = 230  # about 5 ms of numpy per evaluation on the 2-core reference machine
ES_SIGMA = 0.05
ES_LEARNING_RATE = 0.01
ES_REFERENCE_EVALS = 15


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; quick mode shrinks them so a smoke run stays short."""

    w2_calls: int
    w2_warmup_calls: int
    w3_tasks: int
    w4_ideal_s: float
    w5_iterations: int
    w6_arrays: int


FULL = Sizes(w2_calls=300, w2_warmup_calls=20, w3_tasks=20_000, w4_ideal_s=2.0,
             w5_iterations=20, w6_arrays=16)
QUICK = Sizes(w2_calls=50, w2_warmup_calls=10, w3_tasks=1_000, w4_ideal_s=0.3,
              w5_iterations=3, w6_arrays=4)


def noop(x=None):
    """Trivial task: returns its argument so results can be checked for order."""
    return x


def array_sum(array):
    """W6 task: touches every element, so the whole 8 MB must have arrived."""
    return float(array.sum())


def es_eval(task):
    """W5 task: fitness of theta perturbed by the noise that ``seed`` generates."""
    theta, seed = task
    noise = np.random.default_rng(seed).standard_normal(theta.size)
    return _objective(theta + ES_SIGMA * noise)


def _objective(x):
    """A fixed amount of elementwise numpy work (no BLAS, so no hidden threads)."""
    y = x
    for _ in range(ES_ROUNDS):
        y = np.tanh(y) + 0.1 * x
    return -float((y * y).sum())


def _check(condition, message):
    """Fail the measurement when a framework returned wrong results."""
    if not condition:
        raise RuntimeError(f"wrong results: {message}")


def start(adapter):
    """W1 for every child: time start(n) until a first trivial task returns."""
    t0 = time.perf_counter()
    handle = adapter.start(WORKERS)
    result = handle.apply(noop, (1,))
    elapsed = time.perf_counter() - t0
    _check(result == 1, f"apply(noop, (1,)) returned {result!r}")
    return handle, elapsed


def _warm_up(handle):
    """Wait for every worker, then run the map path once, so set-up is not charged."""
    wait_ready = getattr(handle, "wait_ready", None)
    if wait_ready is not None:
        wait_ready()
    _check(handle.map(noop, range(2 * WORKERS)) == list(range(2 * WORKERS)), "warm-up map")


def w2_latency(handle, sizes):
    """W2: synchronous apply(noop) round trips, one at a time."""
    _warm_up(handle)
    for i in range(sizes.w2_warmup_calls):
        handle.apply(noop, (i,))
    samples = []
    for i in range(sizes.w2_calls):
        t0 = time.perf_counter()
        result = handle.apply(noop, (i,))
        samples.append(time.perf_counter() - t0)
        _check(result == i, f"apply(noop, ({i},)) returned {result!r}")
    return {"median_ms": 1e3 * statistics.median(samples),
            "p99_ms": 1e3 * float(np.percentile(samples, 99))}


def w3_throughput(handle, sizes):
    """W3: map(noop) over many tiny tasks with the framework's default chunking."""
    _warm_up(handle)
    t0 = time.perf_counter()
    results = handle.map(noop, range(sizes.w3_tasks))
    elapsed = time.perf_counter() - t0
    _check(results == list(range(sizes.w3_tasks)), "map(noop, range(n)) out of order")
    return {"tasks_per_s": sizes.w3_tasks / elapsed}


def w4_overhead(handle, sizes):
    """W4: map(time.sleep, [T] * N) whose ideal duration is N * T / workers."""
    _warm_up(handle)
    metrics = {}
    for period in W4_PERIODS_S:
        count = w4_task_count(period, sizes)
        t0 = time.perf_counter()
        results = handle.map(time.sleep, [period] * count)
        elapsed = time.perf_counter() - t0
        _check(len(results) == count, f"sleep map returned {len(results)} of {count}")
        metrics[f"ratio_{round(period * 1e3)}ms"] = elapsed / sizes.w4_ideal_s
    return metrics


def w4_task_count(period, sizes):
    """N such that N * T / workers is the ideal duration."""
    return round(sizes.w4_ideal_s * WORKERS / period)


def w5_evolution_strategies(handle, sizes):
    """W5: ES iterations; every task carries its own copy of the 80 KB vector."""
    _warm_up(handle)
    eval_s = _reference_eval_seconds()
    theta = np.zeros(ES_DIM)
    t0 = time.perf_counter()
    for iteration in range(sizes.w5_iterations):
        seeds = range(iteration * ES_POPULATION, (iteration + 1) * ES_POPULATION)
        fitness = handle.map(es_eval, [(theta.copy(), seed) for seed in seeds])
        _check(len(fitness) == ES_POPULATION, "ES fitness count")
        theta = _es_update(theta, seeds, np.asarray(fitness))
    s_per_iter = (time.perf_counter() - t0) / sizes.w5_iterations
    ideal = eval_s * ES_POPULATION / WORKERS
    return {"s_per_iter": s_per_iter, "eval_ms": 1e3 * eval_s, "vs_ideal": s_per_iter / ideal}


def _reference_eval_seconds():
    """Median time of one es_eval on the driver, the unit of W5's ideal."""
    theta = np.zeros(ES_DIM)
    samples = []
    for seed in range(ES_REFERENCE_EVALS):
        t0 = time.perf_counter()
        es_eval((theta, seed))
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _es_update(theta, seeds, fitness):
    """Standard ES step: every task's noise, rebuilt from its seed, weighted by z-scored fitness."""
    weights = (fitness - fitness.mean()) / (fitness.std() + 1e-12)
    gradient = np.zeros_like(theta)
    for weight, seed in zip(weights, seeds):
        gradient += weight * np.random.default_rng(seed).standard_normal(theta.size)
    return theta + ES_LEARNING_RATE * gradient / (len(seeds) * ES_SIGMA)


def w6_large_arguments(handle, sizes):
    """W6: map(array_sum) over 8 MB arrays, dominated by moving the bytes."""
    _warm_up(handle)
    arrays = [np.full(W6_ELEMENTS, float(i)) for i in range(sizes.w6_arrays)]
    t0 = time.perf_counter()
    sums = handle.map(array_sum, arrays)
    elapsed = time.perf_counter() - t0
    _check(sums == [float(i * W6_ELEMENTS) for i in range(sizes.w6_arrays)], "array sums")
    return {"seconds": elapsed}


DRIVERS = {
    "W2": w2_latency,
    "W3": w3_throughput,
    "W4": w4_overhead,
    "W5": w5_evolution_strategies,
    "W6": w6_large_arguments,
}
WORKLOADS = ("W1", *DRIVERS)
