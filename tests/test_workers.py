"""Specification of the worker table and the scale-down policy."""

from fiber_jupyter.jobs import Batch, Job
from fiber_jupyter.workers import (CREDIT, ResizePlan, WorkerRecord, WorkerState,
                                   WorkerTable, plan_resize)


def _batch(batch_id: int, count: int = 1) -> Batch:
    job = Job(0, "map(f)", b"", 0, list(range(100)), None, sink=None)
    return Batch(batch_id, job, 0, count)


def _ready(table: WorkerTable, worker_id: str) -> WorkerRecord:
    worker = WorkerRecord(worker_id)
    table.add(worker)
    table.set_state(worker, WorkerState.READY)
    return worker


def test_counts_follow_state_changes_and_removal():
    table = WorkerTable()
    worker = _ready(table, "w0")
    table.add(WorkerRecord("w1"))
    assert table.counts[WorkerState.READY] == 1 and table.counts[WorkerState.STARTING] == 1
    assert table.live() == 1
    table.remove("w0")
    assert table.live() == 0 and table.get("w0") is None and worker.state is WorkerState.READY


def test_a_ready_worker_is_hungry_until_it_holds_its_credit():
    table = WorkerTable()
    worker = _ready(table, "w0")
    for batch_id in range(CREDIT):
        assert table.can_take(worker)
        table.assign(worker, _batch(batch_id, count=3))
    assert not table.can_take(worker)
    assert table.busy == 1 and table.running_items == 3 * CREDIT
    table.release(worker, 0)
    assert table.can_take(worker) and table.running_items == 3 * (CREDIT - 1)


def test_removing_a_busy_worker_takes_its_tasks_out_of_the_running_count():
    table = WorkerTable()
    worker = _ready(table, "w0")
    table.assign(worker, _batch(0, count=5))
    table.remove("w0")
    assert table.busy == 0 and table.running_items == 0


def test_a_worker_with_no_batches_left_is_not_hungry():
    table = WorkerTable()
    worker = _ready(table, "w0")
    worker.batches_left = 1
    table.assign(worker, _batch(0))
    table.release(worker, 0)
    assert not table.can_take(worker)


def test_draining_and_starting_workers_take_no_batches():
    table = WorkerTable()
    worker = _ready(table, "w0")
    table.set_state(worker, WorkerState.DRAINING)
    assert not table.can_take(worker)
    assert not table.can_take(table.get("w0") or worker) and table.live() == 1


def test_scale_down_stops_starting_then_idle_then_least_busy_workers():
    starting = WorkerRecord("s")
    idle = WorkerRecord("i", state=WorkerState.READY)
    busy = WorkerRecord("b", state=WorkerState.READY, in_flight={1: None, 2: None})
    light = WorkerRecord("l", state=WorkerState.READY, in_flight={3: None})
    draining = WorkerRecord("d", state=WorkerState.DRAINING)
    workers = [busy, light, draining, idle, starting]
    assert plan_resize(workers, 1) == ResizePlan([], 0, [starting, idle, light])
    assert plan_resize(workers, 0).stop == [starting, idle, light, busy]


def test_scale_up_keeps_draining_workers_before_launching_new_ones():
    ready = WorkerRecord("r", state=WorkerState.READY)
    draining = [WorkerRecord(f"d{i}", state=WorkerState.DRAINING) for i in range(2)]
    assert plan_resize([ready, *draining], 2) == ResizePlan(draining[:1], 0, [])
    assert plan_resize([ready, *draining], 5) == ResizePlan(draining, 2, [])


def test_at_target_nothing_changes():
    workers = [WorkerRecord("s"), WorkerRecord("r", state=WorkerState.READY)]
    assert plan_resize(workers, 2) == ResizePlan([], 0, [])
