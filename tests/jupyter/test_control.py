"""Specification of the control surface (control.py) the side panel talks to.

``answer`` is checked on real pools in this process; the comm itself (pushes,
shutdown, who may send commands) in a real kernel.
"""

from __future__ import annotations

import json
import os
import uuid
import xml.etree.ElementTree as ElementTree

import pytest

import fiber_jupyter
from fiber_jupyter.jupyter.control import ControlTarget, pool_view, usage_view
from fiber_jupyter.jupyter.pool_feed import PoolFeed
from fiber_jupyter.jupyter.registry import PoolOptions, PoolRegistry

from ..conftest import EventRecorder, by_value, wait_for
from .kernel import WAIT_LIVE, IOPubLog, open_comm, send_comm_msg, shown, start_kernel


@pytest.fixture
def registry():
    pools = PoolRegistry()
    yield pools
    pools.shutdown_all()


@pytest.fixture
def control():
    return ControlTarget(live=None)


SVG = "{http://www.w3.org/2000/svg}"


def names(message):
    return [pool["name"] for pool in message["pools"]]


class TestCommands:
    def test_status_lists_the_pools_of_the_magics_and_of_code_but_not_stopped_ones(
            self, registry, control):
        registry.create("es", 1, PoolOptions("local", 2))
        with fiber_jupyter.Pool(1, name="from-code", progress=False):
            listed = control.answer({"cmd": "status"})
        assert {"es", "from-code"} <= set(names(listed))
        [es] = [pool for pool in listed["pools"] if pool["name"] == "es"]
        assert (es["backend"], es["state"], es["target"]) == ("local", "running", 1)
        assert "from-code" not in names(control.answer({"cmd": "status"}))

    def test_scale_sets_the_target_and_says_so(self, registry, control):
        pool = registry.create("es", 1, PoolOptions("local", 2))
        assert control.answer({"cmd": "scale", "pool": "es", "n": 3}) == {
            "event": "scaled", "pool": "es", "target": 3}
        wait_for(lambda: pool.status().target == 3, what="the new target")

    def test_adapt_lets_the_pool_size_itself_and_scale_makes_it_manual_again(self, registry,
                                                                              control):
        pool = registry.create("es", 1, PoolOptions("local", 2))
        assert control.answer({"cmd": "adapt", "pool": "es", "min": 2, "max": 3}) == {
            "event": "adapted", "pool": "es", "adapt": [2, 3]}
        wait_for(lambda: pool.status().adapt == (2, 3), what="the pool adapting")
        assert control.answer({"cmd": "scale", "pool": "es", "n": 1})["event"] == "scaled"
        wait_for(lambda: pool.status().adapt is None, what="the pool manual again")

    def test_shutdown_stops_the_pool_before_it_answers(self, registry, control):
        pool = registry.create("es", 1, PoolOptions("local", 2))
        assert control.answer({"cmd": "shutdown", "pool": "es"}) == {
            "event": "shutdown", "pool": "es"}
        assert pool.status().state == "stopped"
        assert "es" not in names(control.answer({"cmd": "status"}))

    def test_timeline_answers_the_picture_of_the_pools_recent_batches(self, registry, control):
        pool = registry.create("es", 2, PoolOptions("local", 2))
        pool.map(abs, range(-12, 0), chunksize=3)
        reply = control.answer({"cmd": "timeline", "pool": "es"})
        assert (reply["event"], reply["pool"]) == ("timeline", "es")
        bars = ElementTree.fromstring(reply["svg"]).findall(f"{SVG}rect")
        assert [bar.get("data-outcome") for bar in bars] == ["done"] * 4
        narrow = control.answer({"cmd": "timeline", "pool": "es", "width": 320})["svg"]
        assert ElementTree.fromstring(narrow).get("width") == "320"

    @pytest.mark.parametrize("command, message", [
        ({"cmd": "reboot"}, "unknown command {'cmd': 'reboot'}: "
                            "expected cmd 'status', 'scale', 'adapt', 'timeline' or 'shutdown'"),
        ("scale", "unknown command 'scale': expected cmd 'status', 'scale', 'adapt', "
                  "'timeline' or 'shutdown'"),
        ({"cmd": "scale", "pool": "es", "n": 0}, "scale needs n, a positive integer; got 0"),
        ({"cmd": "scale", "pool": "es", "n": "8"}, "scale needs n, a positive integer; got '8'"),
        ({"cmd": "scale", "pool": "es", "n": True}, "scale needs n, a positive integer; got True"),
        ({"cmd": "scale", "pool": "nosuch", "n": 2}, "no pool named 'nosuch' (this kernel's "
                                                     "pools: "),
        ({"cmd": "shutdown", "pool": "nosuch"}, "no pool named 'nosuch' (this kernel's pools: "),
        ({"cmd": "adapt", "pool": "es", "min": 0, "max": 4},
         "adapt needs min, a positive integer; got 0"),
        ({"cmd": "adapt", "pool": "es", "min": "1", "max": 4},
         "adapt needs min, a positive integer; got '1'"),
        ({"cmd": "adapt", "pool": "es", "min": 1}, "adapt needs max, a positive integer; got None"),
        ({"cmd": "adapt", "pool": "es", "min": 1, "max": 2.5},
         "adapt needs max, a positive integer; got 2.5"),
        ({"cmd": "adapt", "pool": "es", "min": 8, "max": 4},
         "adapt minimum 8 is larger than maximum 4"),
        ({"cmd": "adapt", "pool": "nosuch", "min": 1, "max": 4},
         "no pool named 'nosuch' (this kernel's pools: "),
        ({"cmd": "timeline", "pool": "nosuch"}, "no pool named 'nosuch' (this kernel's pools: "),
        ({"cmd": "timeline", "pool": "es", "width": 50},
         "timeline width must be a whole number of pixels from 200 to 4000; got 50"),
        ({"cmd": "timeline", "pool": "es", "width": "wide"},
         "timeline width must be a whole number of pixels from 200 to 4000; got 'wide'"),
    ])
    def test_bad_commands_get_an_error_that_names_what_was_wrong(self, registry, control,
                                                                  command, message):
        registry.create("es", 1, PoolOptions("local", 2))
        reply = control.answer(command)
        assert reply["event"] == "error" and reply["message"].startswith(message)
        assert registry.get("es").status().state == "running"
        assert registry.get("es").status().adapt is None


class TestPoolView:
    def test_it_has_the_mode_as_bounds_while_adapting_and_null_while_manual(self, registry):
        pool = registry.create("es", 1, PoolOptions("local", 2))
        assert json.loads(json.dumps(pool_view(pool, None)))["adapt"] is None
        pool.adapt(1, 4)
        wait_for(lambda: pool.status().adapt == (1, 4), what="the pool adapting")
        assert json.loads(json.dumps(pool_view(pool, None)))["adapt"] == [1, 4]

    def test_it_has_the_workers_states_the_running_call_and_the_crashes(self, registry):
        pool = registry.create("es", 2, PoolOptions("local", 2))
        feed = PoolFeed(pool, lambda event: None)
        recorder = EventRecorder(pool)
        recorder.collect(fiber_jupyter.WorkerReady, 2)
        assert pool_view(pool, feed)["workers"] == [["idle", 2]]
        die = by_value("def die(x):\n    import os, signal\n"
                       "    os.kill(os.getpid(), signal.SIGKILL)\n", "die")
        pool.apply_async(die, (1,))
        recorder.next(fiber_jupyter.WorkerLost)
        view = pool_view(pool, feed)
        assert any(line.startswith("worker w") and "lost: exit -9 (SIGKILL)" in line
                   for line in view["log"])
        # At least: the task is retried, and may kill the worker it is retried on too.
        wait_for(lambda: pool_view(pool, feed)["lost"] >= 1, what="the loss counted")

    def test_it_has_the_workers_cpu_and_memory_and_the_heaviest_of_them(self, registry):
        pool = registry.create("es", 2, PoolOptions("local", 2))
        wait_for(lambda: pool_view(pool, None)["usage"]["reporting"] == 2,
                 what="both workers' usage")
        workers = pool.workers()  # one snapshot: the next heartbeats may change the numbers
        usage = json.loads(json.dumps(usage_view(workers)))
        heaviest = usage["heaviest"]
        assert heaviest["worker_id"] in {worker.worker_id for worker in workers}
        assert heaviest["memory_bytes"] == max(worker.memory_bytes for worker in workers)
        assert usage["memory_bytes"] == sum(worker.memory_bytes for worker in workers) > 0
        assert usage["text"].endswith("(2 workers)") and heaviest["worker_id"] in heaviest["text"]
        assert usage["by_state"]["idle"].startswith(("cpu ", "memory "))
        assert "memory" in usage["by_state"]["idle"]


# In a real kernel ----------------------------------------------------------------

KILL_A_WORKER = """
import os, signal
os.kill(es.workers()[0].pid, signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    running = start_kernel(tmp_path_factory.mktemp("kernel"))
    try:
        assert running.run(f"%load_ext fiber_jupyter\nimport fiber_jupyter\n{WAIT_LIVE}") == (
            shown())
        yield running
    finally:
        running.stop()


@pytest.fixture
def panel(kernel):
    """A control comm, opened as the side panel opens it; and the IOPub it reads."""
    comm_id = uuid.uuid4().hex
    log = IOPubLog(kernel.client)
    open_comm(kernel.client, "fiber_jupyter.control", comm_id)
    log.read_until(lambda: pushed(log), 30, "the pools sent on open")
    yield comm_id, log
    kernel.run("for _p in fiber_jupyter.live_pools.pools(): _p.terminate(); _p.join()")


def pushed(log):
    """The latest "pools" message the kernel sent, or None."""
    messages = [data for data in log.comm_data() if data.get("event") == "pools"]
    return messages[-1] if messages else None


def test_pools_made_by_code_are_pushed_with_their_crashes_without_being_asked(kernel, panel):
    _, log = panel
    assert kernel.run("es = fiber_jupyter.Pool(2, name='es')\n_wait_live(es, 2)").result == (
        "True")
    log.read_until(lambda: "es" in names(pushed(log)), 30, "the new pool pushed")
    kernel.run(KILL_A_WORKER)
    log.read_until(lambda: any("lost: exit -9 (SIGKILL)" in line for pool in pushed(log)["pools"]
                               for line in pool["log"]), 30, "the crash pushed")


def test_adapting_from_the_panel_is_answered_and_the_mode_is_pushed(kernel, panel):
    comm_id, log = panel
    kernel.run("%fiber_pool 1 --name flex -o flex")
    log.read_until(lambda: "flex" in names(pushed(log)), 30, "the pool pushed")
    send_comm_msg(kernel.client, comm_id, {"cmd": "adapt", "pool": "flex", "min": 1, "max": 2})
    log.read_until(lambda: {"event": "adapted", "pool": "flex", "adapt": [1, 2]}
                   in log.comm_data(), 30, "the adapt answer")
    log.read_until(lambda: [pool["adapt"] for pool in pushed(log)["pools"]
                            if pool["name"] == "flex"] == [[1, 2]], 30, "the mode pushed")
    assert kernel.run("flex.status().adapt").result == "(1, 2)"


def test_shutdown_from_the_panel_answers_once_stopped_and_the_pool_leaves_the_list(kernel,
                                                                                    panel):
    comm_id, log = panel
    kernel.run("%fiber_pool 1 --name gone -o gone")
    log.read_until(lambda: "gone" in names(pushed(log)), 30, "the pool pushed")
    send_comm_msg(kernel.client, comm_id, {"cmd": "shutdown", "pool": "gone"})
    log.read_until(lambda: {"event": "shutdown", "pool": "gone"} in log.comm_data(), 60,
                   "the shutdown answer")
    assert kernel.run("gone.status().state").result == "'stopped'"
    log.read_until(lambda: "gone" not in names(pushed(log)), 30, "the list without it")


def test_a_command_not_signed_with_the_kernels_key_is_ignored(kernel, panel):
    """Only a client holding the kernel's key (Jupyter's server, for the user's
    authenticated front end) can command the pools."""
    comm_id, log = panel
    kernel.run("%fiber_pool 1 --name guarded -o guarded")
    session = kernel.client.session
    real_key = session.key
    session.key = os.urandom(32)
    try:
        send_comm_msg(kernel.client, comm_id, {"cmd": "scale", "pool": "guarded", "n": 3})
    finally:
        session.key = real_key
    # Then a signed one on the same socket: once it is answered, the other was handled.
    send_comm_msg(kernel.client, comm_id, {"cmd": "scale", "pool": "guarded", "n": 2})
    answered = {"event": "scaled", "pool": "guarded", "target": 2}
    log.read_until(lambda: answered in log.comm_data(), 30, "the signed command's answer")
    assert [d for d in log.comm_data() if d.get("event") == "scaled"] == [answered]
    # The answer says the target was handed to the pool, whose status shows it a turn later.
    wait_for(lambda: kernel.run("guarded.status().target").result == "2",
             what="the signed command's target")
