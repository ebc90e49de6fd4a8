"""Specification of ``pool.execute``: set-up code run on every worker, now and later."""

import os
import signal

import pytest

from fiber_jupyter import BrokenPoolError, PoolStateError
from tests.conftest import by_value, wait_for


def live_pool(make_pool, size: int):
    pool = make_pool(size)
    wait_for(lambda: pool.status().live == size, what=f"{size} live workers")
    return pool


def test_code_runs_once_on_every_worker_and_reports_what_it_printed(make_pool):
    pool = live_pool(make_pool, 3)
    outputs = pool.execute("import os, sys\nprint('pid', os.getpid())\n"
                           "print('note', file=sys.stderr)")
    assert [o.worker_id for o in outputs] == sorted((w.worker_id for w in pool.workers()),
                                                    key=lambda w: int(w[1:]))
    pids = {w.worker_id: w.pid for w in pool.workers()}
    for output in outputs:
        assert output.output == f"pid {pids[output.worker_id]}\nnote\n"
        assert output.error is None


def test_functions_sent_later_see_its_names_and_the_callers_own_names_win(make_pool):
    pool = live_pool(make_pool, 2)
    pool.execute("import math\nSCALE = 10\nOFFSET = 1")
    scaled = by_value("def scaled(x):\n    return SCALE * math.sqrt(x) + OFFSET\n", "scaled",
                      OFFSET=1000)
    assert pool.map(scaled, [4, 9, 16]) == [1020.0, 1030.0, 1040.0]


def test_kept_code_runs_on_workers_that_start_later_and_on_replacements(make_pool):
    pool = live_pool(make_pool, 1)
    pool.execute("STATE = 'set up'")
    pool.scale(2)
    wait_for(lambda: pool.status().live == 2, what="the second worker")
    [victim] = [w.pid for w in pool.workers() if w.worker_id == "w0"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: {w.worker_id for w in pool.workers() if w.state == "ready"} == {"w1", "w2"},
             what="a replacement for the killed worker")
    outputs = pool.execute("print(STATE)")
    assert [(o.worker_id, o.output, o.error) for o in outputs] == [
        ("w1", "set up\n", None), ("w2", "set up\n", None)]


def test_code_not_kept_runs_only_on_the_workers_of_the_moment(make_pool):
    pool = live_pool(make_pool, 1)
    pool.execute("ONCE = 1", keep=False)
    pool.scale(2)
    wait_for(lambda: pool.status().live == 2, what="the second worker")
    outputs = pool.execute("print('ONCE' in globals())")
    assert [o.output for o in outputs] == ["True\n", "False\n"]


def test_code_that_raises_reports_its_traceback_and_is_not_kept(make_pool):
    pool = live_pool(make_pool, 1)
    [output] = pool.execute("x = 1\nraise ValueError('no data here')")
    assert output.error.splitlines()[-1] == "ValueError: no data here"
    assert "raise ValueError('no data here')" in output.error
    assert "namespace.py" not in output.error
    pool.scale(2)
    wait_for(lambda: pool.status().live == 2, what="a second worker, not set up with it")
    assert [o.error for o in pool.execute("pass")] == [None, None]


def test_a_worker_lost_while_running_it_is_reported_and_replaced(make_pool):
    pool = live_pool(make_pool, 2)
    outputs = pool.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", keep=False)
    assert [o.error for o in outputs] == ["worker lost: exit -9 (SIGKILL)"] * 2
    wait_for(lambda: pool.status().live == 2, what="two replacements")
    assert pool.apply(abs, (-3,)) == 3


def test_kept_code_that_fails_on_a_new_worker_breaks_the_pool_and_says_which_step(make_pool):
    pool = live_pool(make_pool, 1)
    [first] = pool.workers()
    pool.execute(f"import os\nif os.getpid() != {first.pid}:\n"
                 "    raise RuntimeError('data missing on this host')")
    pool.scale(2)
    wait_for(lambda: pool.status().state == "broken", what="the pool to break")
    with pytest.raises(BrokenPoolError, match=r"setup step 1 \(kept by pool.execute\) raised "
                                              r"in worker w1:(.|\n)*data missing on this host"):
        pool.apply(abs, (1,))


def test_it_waits_for_the_batches_a_busy_worker_holds(make_pool):
    pool = live_pool(make_pool, 1)
    result = pool.map_async(by_value("def slow(x):\n    import time\n    time.sleep(0.2)\n"
                                     "    return x\n", "slow"), range(2), chunksize=1)
    wait_for(lambda: pool.status().tasks_running, what="the map to run")
    [output] = pool.execute("print('after')")
    assert output.output == "after\n"
    assert result.ready() and result.get() == [0, 1]


def test_bad_code_is_refused_before_any_worker_runs_it(make_pool):
    pool = make_pool(1)
    with pytest.raises(SyntaxError):
        pool.execute("def broken(:")
    with pytest.raises(TypeError, match="code must be a string of Python source, got bytes"):
        pool.execute(b"print(1)")
    pool.terminate()
    with pytest.raises(PoolStateError):
        pool.execute("print(1)")
