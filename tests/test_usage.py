"""Specification: each worker reports its CPU and memory with its heartbeats, and
``pool.workers()`` shows them; a busy worker's CPU is high, an idle one's low."""

from __future__ import annotations

import pytest

from fiber_jupyter.usage import CpuMeter, resource_use

from . import tasks
from .conftest import wait_for

MiB = 2**20


def test_a_process_knows_its_cpu_time_and_resident_memory():
    cpu_before, resident = resource_use()
    sum(x * x for x in range(2_000_000))
    cpu_after, _ = resource_use()
    assert cpu_after > cpu_before
    assert 10 * MiB < resident < 10_000 * MiB


def test_the_cpu_meter_gives_the_percent_used_between_two_samples():
    meter = CpuMeter()
    meter.sample(10.0, now=100.0)
    assert meter.percent is None
    meter.sample(10.5, now=101.0)
    assert meter.percent == 50.0


@pytest.mark.timeout(60)
def test_a_busy_worker_reports_high_cpu_and_an_idle_one_low(make_pool):
    pool = make_pool(2, heartbeat_timeout=0.6)  # a heartbeat every 0.1 s
    wait_for(lambda: all(w.memory_bytes for w in pool.workers()) and len(pool.workers()) == 2,
             what="both workers' first heartbeats")
    pool.apply_async(tasks.spin, (30.0,))  # ended by the pool's terminate
    wait_for(lambda: sorted(w.tasks for w in pool.workers()) == [0, 1], what="the task to run")
    wait_for(lambda: max(w.cpu_percent or 0 for w in pool.workers()) > 50,
             what="the busy worker's CPU above 50 %")
    # A new worker's first interval holds its start-up; later ones show it idle.
    wait_for(lambda: [w.cpu_percent is not None and w.cpu_percent < 50
                      for w in pool.workers() if w.tasks == 0] == [True],
             what="the idle worker's CPU below 50 %")
    assert all(w.memory_bytes > 10 * MiB for w in pool.workers())
