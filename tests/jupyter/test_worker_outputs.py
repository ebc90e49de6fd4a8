"""Specification of how %%fiber shows what every worker printed (worker_outputs.py)."""

from fiber_jupyter import WorkerOutput
from fiber_jupyter.jupyter.worker_outputs import render, worker_ranges


def test_consecutive_workers_collapse_into_ranges_in_start_order():
    assert worker_ranges(["w10", "w2", "w0", "w1", "w3", "w7", "w9"]) == "w0-w3, w7, w9-w10"
    assert worker_ranges(["w5"]) == "w5"


def test_512_workers_that_did_the_same_read_as_one_line():
    outputs = [WorkerOutput(f"w{n}", "", None) for n in range(512)]
    assert render(outputs) == "ran on 512 workers: all ok"


def test_outputs_are_grouped_by_what_was_printed_and_how_it_ended():
    error = "Traceback (most recent call last):\nFileNotFoundError: data.npy\n"
    outputs = ([WorkerOutput(f"w{n}", "loaded 10 rows\n", None) for n in range(4)]
               + [WorkerOutput("w4", "", error), WorkerOutput("w6", "", error)]
               + [WorkerOutput("w5", "loaded 10 rows\n", None)])
    assert render(outputs) == "\n".join([
        "ran on 7 workers: 5 ok, 2 failed",
        "[w0-w3, w5] (5 workers):",
        "  loaded 10 rows",
        "[w4, w6] (2 workers) raised:",
        "  Traceback (most recent call last):",
        "  FileNotFoundError: data.npy",
    ])


def test_a_pool_without_connected_workers_says_so():
    assert render([]).startswith("ran on no worker: the pool has none connected yet")
