"""Specification: under kills, stops and resizing, a long map still gives the serial answer.

The chaos is ``bench.chaos.ChaosMonkey``, the one the chaos benchmark measures
with: every 200 ms a random live worker is SIGKILLed (one strike in ten is a
SIGSTOP, which only heartbeats can detect) and one time in five the pool is
rescaled to 1–6 workers.
"""

from __future__ import annotations

import signal

import pytest

from bench.chaos import ChaosMonkey, task_lengths

from . import tasks

CHAOS_POOL = dict(heartbeat_timeout=2.0, max_retries=100)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_100000_task_map_under_chaos_gives_the_serial_answer_counted_once(make_pool, seed):
    pool = make_pool(4, **CHAOS_POOL)
    lengths = task_lengths(100_000, seed)
    with ChaosMonkey(pool, seed) as monkey:
        results = pool.starmap(tasks.slow_square, list(enumerate(lengths)))
    assert results == [x * x for x in range(len(lengths))]
    assert pool.status().tasks_done == len(lengths)
    assert monkey.count(signal.SIGKILL) > 0
    assert set(monkey.retried) <= set(monkey.lost)  # every re-run follows a loss it names


@pytest.mark.timeout(240)
def test_imap_unordered_under_chaos_yields_each_result_exactly_once(make_pool):
    pool = make_pool(3, **CHAOS_POOL)
    with ChaosMonkey(pool, seed=3) as monkey:
        results = list(pool.imap_unordered(tasks.slow_square, range(1000), chunksize=3))
    assert sorted(results) == [x * x for x in range(1000)]
    assert monkey.count(signal.SIGKILL) > 0
