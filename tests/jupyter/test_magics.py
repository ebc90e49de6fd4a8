"""Specification: the ``%fiber_*`` magics in a real kernel, as a notebook shows them.

One kernel serves the module. Every test starts with no pools (the ``shell``
fixture shuts down whatever a test left, and checks no worker survived) and
asserts on exactly what each cell showed: printed text, the result, stderr,
the error reported, and the absence of a traceback.
"""

from __future__ import annotations

import os
import re

import pytest

from fiber_jupyter import PoolStatus
from fiber_jupyter.jupyter.status_text import StatusRow, render_status

from ..conftest import wait_for
from .kernel import WAIT_LIVE, shown, start_kernel, usage_error, worker_processes

NO_POOLS = "no pools in this kernel; start one with %fiber_pool"
# The kernel's KUBECONFIG: a path that cannot exist (/dev/null is no directory).
NO_KUBECONFIG = os.path.join(os.devnull, "kubeconfig")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel with the extension loaded; at the end it is shut down with a pool running."""
    running = start_kernel(tmp_path_factory.mktemp("kernel"), env={"KUBECONFIG": NO_KUBECONFIG})
    try:
        assert running.run("%load_ext fiber_jupyter") == shown()
        yield running
        assert running.run(f"{WAIT_LIVE}\n%fiber_pool 1 --name last\n_wait_live(pool, 1)") == shown(
            "started pool 'last' (local, 1 worker); bound to `pool`\n", "True")
        assert len(worker_processes(running.tag)) == 1
    finally:
        running.stop()
    wait_for(lambda: not worker_processes(running.tag), timeout=30,
             what="the workers of the shut-down kernel to exit")


@pytest.fixture
def shell(kernel):
    """The module's kernel, left with no pool, no worker and no variable after the test."""
    assert kernel.run(WAIT_LIVE) == shown()
    yield kernel
    assert kernel.run("%fiber_shutdown --all").stderr == ""
    assert worker_processes(kernel.tag) == []
    assert kernel.run("%reset -f") == shown()


def row(table: str, index: int = 0) -> list:
    """The cells of one pool's row in a status table (after the two header lines).

    Columns are two or more spaces apart; a cell may hold one ("adaptive 1-8").
    """
    return re.split(" {2,}", table.split("\n")[2 + index])


def test_a_pool_is_started_used_scaled_shown_and_shut_down(shell):
    started = shell.run("%fiber_pool 2")
    assert started.stdout == "started pool 'pool' (local, 2 workers); bound to `pool`\n"
    assert row(started.result)[:5] == ["pool", "local", "running", "manual", "2"]

    squares = shell.run("def square(x):\n    return x * x\n\npool.map(square, range(10))")
    assert squares == shown(result=str([x * x for x in range(10)]))

    scaled = shell.run("%fiber_scale 3")
    assert scaled.stdout == "scaled pool 'pool' (local) from 2 to 3 workers\n"
    assert row(scaled.result)[:5] == ["pool", "local", "running", "manual", "3"]
    assert shell.run("_wait_live(pool, 3)") == shown(result="True")

    ready = PoolStatus(state="running", target=3, live=3, pending=0, busy=0, idle=3, lost=0,
                       tasks_queued=0, tasks_running=0, tasks_done=10)
    assert shell.run("%fiber_status") == shown(
        result=render_status([StatusRow("pool", "local", ready)]))

    assert shell.run("%fiber_shutdown --all") == shown(
        "shut down pool 'pool' (local, 3 workers stopped); `pool` still refers to it\n")
    assert worker_processes(shell.tag) == []
    assert shell.run("pool.status().state") == shown(result="'stopped'")


@pytest.mark.parametrize("code, message", [
    ("%fiber_pool 0", "argument N: must be a positive integer, got '0'"),
    ("%fiber_pool -2", "argument N: must be a positive integer, got '-2'"),
    ("%fiber_pool abc", "argument N: must be a positive integer, got 'abc'"),
    ("%fiber_pool 2 --bogus", "unrecognized arguments: --bogus"),
    ("%fiber_pool 2 3", "unrecognized arguments: 3"),
    ("%fiber_pool 2 --backend kubernetes",
     f"no Kubernetes cluster to run on: no kubeconfig at {NO_KUBECONFIG} "
     "(outside a cluster, set KUBECONFIG or pass Kubernetes(kubeconfig=..., context=...))"),
    ("%fiber_pool 2 --cpu 2", "--cpu applies to remote backends only, not to backend 'local'"),
    ("%fiber_pool --memory 4Gi --image python:3.11-slim",
     "--memory, --image apply to remote backends only, not to backend 'local'"),
    ("%fiber_pool 2 --cpu lots",
     "argument --cpu: must be a positive number of cores like 2, 0.5 or 500m, got 'lots'"),
    ("%fiber_pool 2 --max-retries -1",
     "argument --max-retries: must be a non-negative integer, got '-1'"),
    ("%fiber_pool 2 -o 1x", "argument -o: must be a Python variable name, got '1x'"),
    ("%fiber_pool 2 --name my/pool",
     "argument --name: must be letters, digits, '_', '.' or '-', got 'my/pool'"),
    ("%fiber_pool 2 --name 'x\"", "cannot split the options: No closing quotation"),
    ("%fiber_scale 3", "no pool named 'pool' (this kernel's pools: none yet)"),
    ("%fiber_scale", "give N or --adapt MIN:MAX"),
    ("%fiber_scale 0", "argument N: must be a positive integer, got '0'"),
    ("%fiber_pool --adapt 8:4", "argument --adapt: MIN 8 is larger than MAX 4 in '8:4'"),
    ("%fiber_pool --adapt x",
     "argument --adapt: must be MIN:MAX, two positive integers like 1:8, got 'x'"),
    ("%fiber_pool --adapt 0:4", "argument --adapt: MIN must be a positive integer, got '0' "
                                "in '0:4'"),
    ("%fiber_pool 5 --adapt 1:4",
     "N 5 is outside --adapt 1:4: an adaptive pool starts within its bounds"),
    ("%fiber_scale --adapt 1:4", "no pool named 'pool' (this kernel's pools: none yet)"),
    ("%fiber_scale --adapt 1:x", "argument --adapt: MAX must be a positive integer, got 'x' "
                                 "in '1:x'"),
    ("%fiber_scale 2 --adapt 1:4", "give N or --adapt MIN:MAX, not both"),
    ("%fiber_pool 2 --idle-after 5", "--idle-after needs --adapt MIN:MAX"),
    ("%fiber_pool 2 --idle-after 5 --target-duration 1",
     "--idle-after and --target-duration need --adapt MIN:MAX"),
    ("%fiber_pool --adapt 1:4 --idle-after 0",
     "argument --idle-after: must be a positive number of seconds, got '0'"),
    ("%fiber_scale --adapt 1:4 --target-duration nan",
     "argument --target-duration: must be a positive number of seconds, got 'nan'"),
    ("%fiber_scale --adapt 1:4 --idle-after 1m",
     "argument --idle-after: must be a positive number of seconds, got '1m'"),
    ("%fiber_status nosuch", "no pool named 'nosuch' (this kernel's pools: none yet)"),
    ("%fiber_shutdown nosuch", "no pool named 'nosuch' (this kernel's pools: none yet)"),
    ("%fiber_shutdown", "no pool named 'pool' (this kernel's pools: none yet)"),
    ("%fiber_shutdown pool --all", "give a pool name or --all, not both"),
    ("%%fiber\nimport math", "no pool named 'pool' (this kernel's pools: none yet)"),
    ("%%fiber --name nosuch\nimport math",
     "no pool named 'nosuch' (this kernel's pools: none yet)"),
    ("%%fiber --bogus\nimport math", "unrecognized arguments: --bogus"),
])
def test_misuse_is_a_one_line_usage_error_and_starts_nothing(shell, code, message):
    assert shell.run(code) == usage_error(message)
    assert shell.run("%fiber_status") == shown(result=NO_POOLS)
    assert worker_processes(shell.tag) == []


def test_options_are_never_evaluated(shell):
    code = "%fiber_pool __import__('os').cpu_count()"
    assert shell.run(code) == usage_error(
        "argument N: must be a positive integer, got \"__import__('os').cpu_count()\"")


def test_in_a_pod_without_a_service_account_pools_are_local(shell):
    assert shell.run("import os\nos.environ['KUBERNETES_SERVICE_HOST'] = '10.0.0.1'") == shown()
    try:
        assert shell.run("%fiber_pool 1").stdout == (
            "started pool 'pool' (local, 1 worker); bound to `pool`\n")
    finally:
        assert shell.run("del os.environ['KUBERNETES_SERVICE_HOST']") == shown()


def test_without_a_size_a_new_pool_has_one_worker_per_core(shell):
    cores = os.cpu_count()
    workers = "1 worker" if cores == 1 else f"{cores} workers"
    started = shell.run("%fiber_pool --name natural -o natural")
    assert started.stdout == f"started pool 'natural' (local, {workers}); bound to `natural`\n"
    assert row(started.result)[4] == str(cores)


def test_running_the_cell_again_resizes_the_same_pool(shell):
    assert shell.run("%fiber_pool 1 --max-retries 4\nfirst = pool") == shown(
        "started pool 'pool' (local, 1 worker); bound to `pool`\n")
    again = shell.run("%fiber_pool 2 --max-retries 4")
    assert again.stdout == "scaled pool 'pool' (local) from 1 to 2 workers\n"
    assert row(again.result)[:5] == ["pool", "local", "running", "manual", "2"]
    assert shell.run("pool is first, pool.status().target") == shown(result="(True, 2)")
    assert shell.run("%fiber_pool 2").stdout == (
        "pool 'pool' (local) already has a target of 2 workers\n")
    assert shell.run("%fiber_pool").stdout == "pool 'pool' (local) is running\n"


def test_with_adapt_a_new_pool_starts_at_its_minimum_and_says_its_mode(shell):
    started = shell.run("%fiber_pool --adapt 2:4")
    assert started.stdout == (
        "started pool 'pool' (local, 2 workers, adaptive 2\u20134); bound to `pool`\n")
    assert row(started.result)[:5] == ["pool", "local", "running", "adaptive 2\u20134", "2"]
    assert shell.run("pool.status().adapt") == shown(result="(2, 4)")


def test_a_size_given_with_adapt_is_where_the_new_pool_starts(shell):
    started = shell.run("%fiber_pool 3 --adapt 2:4")
    assert started.stdout == (
        "started pool 'pool' (local, 3 workers, adaptive 2\u20134); bound to `pool`\n")
    assert shell.run("pool.status().target, pool.status().adapt") == shown(
        result="(3, (2, 4))")


def test_a_pool_switches_between_manual_and_adaptive_and_the_status_says_which(shell):
    assert shell.run("%fiber_pool 2").error is None
    adaptive = shell.run("%fiber_scale --adapt 2:4")
    assert adaptive.stdout == (
        "pool 'pool' (local) is adaptive 2\u20134 now, was manual at 2 workers\n")
    assert row(adaptive.result)[3] == "adaptive 2\u20134"
    assert row(shell.run("%fiber_status").result)[3] == "adaptive 2\u20134"
    assert shell.run("%fiber_scale --adapt 2:4").stdout == (
        "pool 'pool' (local) is already adaptive 2\u20134\n")

    manual = shell.run("%fiber_scale 2")
    assert manual.stdout == ("pool 'pool' (local) keeps its target of 2 workers; "
                             "manual now, was adaptive 2\u20134\n")
    assert row(manual.result)[3] == "manual"
    assert shell.run("pool.status().adapt is None") == shown(result="True")


def test_an_adaptive_pool_with_a_short_idle_time_gives_workers_back_soon_after_a_map(shell):
    started = shell.run("%fiber_pool --adapt 1:3 --idle-after 0.2 --target-duration 0.05")
    assert started.stdout == (
        "started pool 'pool' (local, 1 worker, adaptive 1\u20133 (idle after 0.2 s, "
        "target duration 0.05 s)); bound to `pool`\n")
    shell.run("import time\nsizes = set()\n"
              "pool.events.subscribe(lambda e: sizes.add(getattr(e, 'target', 0)))\n"
              "pool.map(time.sleep, [0.05] * 40, chunksize=1)")
    assert shell.run("max(sizes)") == shown(result="3")
    # The default idle time is a minute: only the setting can shrink it within the wait.
    wait_for(lambda: shell.run("pool.status().target").result == "1",
             what="the pool back at its minimum")


def test_running_the_cell_with_adapt_again_switches_the_running_pool(shell):
    assert shell.run("%fiber_pool 2\nfirst = pool").error is None
    assert shell.run("%fiber_pool --adapt 2:4").stdout == (
        "pool 'pool' (local) is adaptive 2\u20134 now, was manual at 2 workers\n")
    assert shell.run("%fiber_pool 3").stdout == (
        "scaled pool 'pool' (local) from 2 to 3 workers; manual now, was adaptive 2\u20134\n")
    assert shell.run("pool is first, pool.status().adapt") == shown(result="(True, None)")


def test_a_running_pool_refuses_what_is_fixed_when_it_starts(shell):
    assert shell.run("%fiber_pool 1 --max-retries 4").error is None
    assert shell.run("%fiber_pool 2 --max-retries 1") == usage_error(
        "pool 'pool' was started with --max-retries 4, which is fixed: "
        "%fiber_shutdown pool first to change it")
    assert shell.run("%fiber_pool 2 --backend kubernetes") == usage_error(
        "pool 'pool' was started with --backend local, which is fixed: "
        "%fiber_shutdown pool first to change it")
    assert shell.run("%fiber_pool 2 --gpu 1") == usage_error(
        "--gpu applies to remote backends only, not to backend 'local'")
    assert shell.run("%fiber_scale 2 --name es") == usage_error(
        "no pool named 'es' (this kernel's pools: pool)")
    assert shell.run("pool.status().target") == shown(result="1")


def test_binding_says_what_the_variable_held_before(shell):
    assert shell.run("x = 5\n%fiber_pool 1 --name a -o x").stdout == (
        "started pool 'a' (local, 1 worker); bound to `x`, which held a value of type int\n")
    assert shell.run("%fiber_pool 1 --name b -o x").stdout == (
        "started pool 'b' (local, 1 worker); bound to `x`, which held pool 'a' (running)\n")
    assert [row(shell.run("%fiber_status").result, i)[0] for i in (0, 1)] == ["a", "b"]


def test_a_fiber_cell_sets_up_every_worker_for_the_maps_that_follow(shell):
    assert shell.run("%fiber_pool 2\n_wait_live(pool, 2)").result == "True"
    setup = shell.run("%%fiber\nimport math\nBASE = 10\nprint('ready')")
    assert setup == shown("ran on 2 workers: all ok\n[w0-w1] (2 workers):\n  ready\n")
    mapped = shell.run("def f(x):\n    return BASE * math.sqrt(x)\n\npool.map(f, [4, 9])")
    assert mapped == shown(result="[20.0, 30.0]")


def test_a_fiber_cell_that_raises_shows_the_tracebacks_then_fails_in_one_line(shell):
    assert shell.run("%fiber_pool 2\n_wait_live(pool, 2)").result == "True"
    failed = shell.run("%%fiber\nx = 1\nraise OSError('no GPU on this host')")
    assert failed.stdout.startswith("ran on 2 workers: 0 ok, 2 failed\n"
                                    "[w0-w1] (2 workers) raised:\n  Traceback")
    assert "    raise OSError('no GPU on this host')\n  OSError: no GPU on this host\n" in (
        failed.stdout)
    message = ("the cell raised on 2 of 2 workers of pool 'pool'; "
               "it is not kept for new workers")
    assert failed.error == ("WorkerSetupError", message)
    assert failed.tracebacks == [[f"WorkerSetupError: {message}"]]


def test_the_widget_follows_a_size_set_elsewhere_and_shows_the_counts(shell):
    assert shell.run("w = get_ipython().run_line_magic('fiber_pool', '1')\n"
                     "_wait_live(pool, 1)").result == "True"
    shell.run("%fiber_scale 3")
    assert shell.run("_wait_live(pool, 3)\n"
                     "w.slider.value, w.size_box.value").result == "(3, 3)"
    assert shell.run("w._refresh()\n"
                     "'target 3 \u00b7 live 3' in w.counts.value").result == "True"


def test_the_widget_shows_the_mode_a_magic_set(shell):
    assert shell.run("w = get_ipython().run_line_magic('fiber_pool', '2')").error is None
    shell.run("%fiber_scale --adapt 2:5")
    wait_for(lambda: shell.run("w.mode.value, w.adapt_box.value, w.adapt_min.value, "
                               "w.adapt_max.value").result == "('adaptive 2\u20135', True, 2, 5)",
             what="the widget showing the adaptive mode")
    shell.run("%fiber_scale 3")
    wait_for(lambda: shell.run("w.mode.value, w.adapt_box.value, w.slider.value").result == (
        "('manual', False, 3)"), what="the widget showing the manual mode")


def test_status_as_widgets_shows_each_pools_widget_with_its_table_as_text(shell):
    shell.run("%fiber_pool 1 --name a -o a\n%fiber_pool 1 --name b -o b")
    shown_widgets = shell.run("%fiber_status -w")
    assert shown_widgets.result == ""
    assert [line.split()[0] for line in shown_widgets.displayed.split("\n")
            if line.startswith(("a ", "b "))] == ["a", "b"]


def test_status_of_one_pool_by_name(shell):
    shell.run("%fiber_pool 1 --name a -o a\n%fiber_pool 1 --name b -o b")
    table = shell.run("%fiber_status b").result
    assert table.split("\n")[1].split()[0] == "name"
    assert [line.split()[0] for line in table.split("\n")[2:]] == ["b"]


def test_shutdown_says_what_it_stopped_and_what_still_refers_to_it(shell):
    assert shell.run("%fiber_pool 1 --name a -o a\nalso = a\n_wait_live(a, 1)").result == "True"
    assert shell.run("%fiber_pool 2 --name b -o b\n_wait_live(b, 2)").result == "True"
    assert shell.run("a").result.startswith("<fiber_jupyter.Pool name='a'")  # now `_` is `a`
    assert shell.run("%fiber_shutdown a") == shown(
        "shut down pool 'a' (local, 1 worker stopped); `a`, `also` still refer to it\n")
    assert shell.run("a.status().state, b.status().state") == shown(
        result="('stopped', 'running')")
    assert shell.run("del b\n%fiber_shutdown --all") == shown(
        "shut down pool 'b' (local, 2 workers stopped)\n")
    assert shell.run("%fiber_shutdown --all") == shown("no pools to shut down\n")


def test_a_terminated_pool_cannot_be_scaled_and_is_replaced_by_fiber_pool(shell):
    assert shell.run("%fiber_pool 1\npool.terminate()").error is None
    assert shell.run("%fiber_scale 2") == usage_error(
        "Pool not running: pool 'pool' was terminated; make a new one")
    assert shell.run("%fiber_pool 1").stdout == (
        "started pool 'pool' (local, 1 worker), replacing the stopped one; "
        "bound to `pool`, which held pool 'pool' (stopped)\n")
    assert shell.run("pool.status().state") == shown(result="'running'")


def test_a_closing_pool_is_neither_resized_nor_replaced(shell):
    code = "import time\n%fiber_pool 1\nwork = pool.map_async(time.sleep, [60])\npool.close()"
    assert shell.run(code).error is None
    wait_for(lambda: shell.run("pool.status().state").result == "'closing'", timeout=30,
             what="the pool to be closing")
    assert shell.run("%fiber_pool 2") == usage_error(
        "pool 'pool' is closing: wait for it, or stop it now with %fiber_shutdown pool")


@pytest.mark.parametrize("magic, fragments", [
    ("fiber_pool", [
        "%fiber_pool [--backend {local,kubernetes}] [--name NAME] [-o VAR]",
        "Start the notebook's pool, or resize the running pool of that name, and show it.",
        "  %fiber_pool 8                     eight local workers, as `pool`",
        "See also: %fiber_scale, %fiber_status, %fiber_shutdown.",
        "target number of workers (default for a new pool: the",
        "before it fails (default: 2)",
        "remote workers:\n  For remote backends only.",
        "--namespace NAMESPACE",
    ]),
    ("fiber_scale", ["%fiber_scale [--adapt MIN:MAX] [--idle-after SECONDS]",
                     "[--target-duration SECONDS] [--name NAME]",
                     "--idle-after SECONDS  with --adapt: seconds with more workers than",
                     "Set a pool's target number of workers, or let it adapt; show the pool.",
                     "%fiber_scale --adapt 4:64         4 to 64 workers, as the work needs",
                     "instead of N: let the target follow the backlog"]),
    ("fiber_status", ["%fiber_status [-w] [name]",
                      "Show every pool of this kernel as a table, or as live widgets.",
                      "show each pool's live widget instead of the table"]),
    ("%fiber", ["%%fiber [--name NAME] [--once]",
                "Run the cell on every worker of a pool: imports, loading data, helpers.",
                "run it on the workers of the moment only"]),
    ("fiber_shutdown", ["%fiber_shutdown [--all] [name]",
                        "Terminate a pool and wait until its workers have exited."]),
])
def test_help_is_a_man_page_built_from_the_docstring_and_options(shell, magic, fragments):
    help_page = shell.run(f"%{magic}?")
    assert help_page.error is None
    for fragment in fragments:
        assert fragment in help_page.page


def test_unloading_shuts_down_the_pools_and_removes_the_magics(shell):
    assert shell.run("%fiber_pool 1\n_wait_live(pool, 1)").result == "True"
    try:
        assert shell.run("%unload_ext fiber_jupyter") == shown(
            "shut down pool 'pool' (local, 1 worker stopped); `pool` still refers to it\n")
        assert worker_processes(shell.tag) == []
        assert shell.run("%fiber_status") == usage_error(
            "Line magic function `%fiber_status` not found.")
    finally:
        assert shell.run("%load_ext fiber_jupyter") == shown()
    assert shell.run("%fiber_status") == shown(result=NO_POOLS)
