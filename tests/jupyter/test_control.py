"""Specification of the control comm's commands (control.py), on a real pool."""

import pytest

from fiber_jupyter.jupyter.control import answer
from fiber_jupyter.jupyter.registry import PoolOptions, PoolRegistry

from ..conftest import wait_for


@pytest.fixture
def registry():
    pools = PoolRegistry()
    yield pools
    pools.shutdown_all()


def test_status_lists_every_pool_with_its_counts(registry):
    registry.create("es", 1, PoolOptions("local", 2))
    [pool] = answer(registry, {"cmd": "status"})["pools"]
    assert (pool["name"], pool["backend"], pool["state"], pool["target"]) == (
        "es", "local", "running", 1)


def test_scale_sets_the_target_and_says_so(registry):
    pool = registry.create("es", 1, PoolOptions("local", 2))
    assert answer(registry, {"cmd": "scale", "pool": "es", "n": 3}) == {
        "event": "scaled", "pool": "es", "target": 3}
    wait_for(lambda: pool.status().target == 3, what="the new target")


@pytest.mark.parametrize("command, message", [
    ({"cmd": "reboot"}, "unknown command {'cmd': 'reboot'}: expected cmd 'status' or 'scale'"),
    ("scale", "unknown command 'scale': expected cmd 'status' or 'scale'"),
    ({"cmd": "scale", "pool": "es", "n": 0}, "scale needs n, a positive integer; got 0"),
    ({"cmd": "scale", "pool": "es", "n": "8"}, "scale needs n, a positive integer; got '8'"),
    ({"cmd": "scale", "pool": "es", "n": True}, "scale needs n, a positive integer; got True"),
    ({"cmd": "scale", "pool": "nosuch", "n": 2},
     "no pool named 'nosuch' (this kernel's pools: es)"),
])
def test_bad_commands_get_an_error_that_names_what_was_wrong(registry, command, message):
    registry.create("es", 1, PoolOptions("local", 2))
    assert answer(registry, command) == {"event": "error", "message": message}
