"""Specification: a pool that lives long (idle, made again and again, fed a million
tasks) stays as it was.

The measurements are ``bench.soak``'s, which runs them longer (10 minutes idle,
100 cycles, a million tasks) and reports the numbers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import soak

from .conftest import worker_pids

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
FIBER_HUNG_AFTER_S = 60  # Fiber's pools stopped answering after a minute idle


@pytest.mark.timeout(240)
def test_a_pool_idle_for_longer_than_a_minute_answers_with_the_workers_it_had(make_pool):
    pool = make_pool(2)
    idle = soak.map_after_idle(pool, FIBER_HUNG_AFTER_S + 10)
    assert (idle.lost, idle.started) == (0, 0)
    assert pool.status().live == 2


@pytest.mark.timeout(300)
def test_100_create_use_terminate_cycles_leak_no_threads_fds_or_processes():
    before, after = soak.resources_around_cycles(100)
    assert after == before
    assert worker_pids() == []


@pytest.mark.timeout(300)
def test_the_masters_memory_stays_flat_over_a_million_tasks(make_pool):
    """Results wait in the master as pickled frames; small frames must not pin libzmq's
    shared 8 KB receive buffers, or a map of small chunks costs 8 KB per chunk."""
    pool = make_pool(2)
    resident = soak.memory_over_tasks(pool, 1_000_000)
    assert max(resident) - resident[0] < 16 * MiB


WAITING_RESULTS = """
import resource, fiber_jupyter
from bench import recovery_tasks
with fiber_jupyter.Pool(2) as pool:
    pool.map(recovery_tasks.square, range(100))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = pool.map(recovery_tasks.square, range(200_000), chunksize=10)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.timeout(120)
def test_the_waiting_results_of_a_map_cost_memory_for_their_size_not_per_message():
    """20,000 chunks of ten small results: held as received, each would pin one of
    libzmq's shared 8 KB receive buffers (160 MB) until the map returns."""
    done = subprocess.run([sys.executable, "-c", WAITING_RESULTS], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    peak_growth_kib = int(done.stdout)
    assert peak_growth_kib * 1024 < 48 * MiB
