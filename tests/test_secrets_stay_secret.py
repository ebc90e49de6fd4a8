"""Specification: a pool's secret is seen nowhere but where it has to go.

The secret belongs in the ZeroMQ handshake and on each worker's stdin (for
pods, in the pool's Kubernetes Secret: tests/k8s/test_secrets_on_kubernetes.py).
These tests run local pools through a working life and through failures,
and look for every encoding of the secret in all a user, a log file or a
front end sees of them: log records of every logger at DEBUG, events, widget
messages, the control surface's answers, errors and their tracebacks, repr,
status, and what the workers print (secret_witness.py). Worker command lines
and environments: test_security.py.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from fiber_jupyter import (BrokenPoolError, InitializerError, PoolStateError, PoolTerminatedError,
                           Progress, TaskRetried, WorkerLost, WorkerLostError, WorkerStopped,
                           security)
from fiber_jupyter.backends import WorkerLaunch, local

from . import tasks
from .conftest import EventRecorder, wait_for
from .secret_witness import Witness, secret_forms

# Channels every pool's life shows something in: a witness that saw nothing proves nothing.
SEEN_AT_WORK = {"log records", "events", "widget messages", "control answers", "errors",
                "repr, status and workers"}


@pytest.fixture
def witness(caplog, monkeypatch):
    seeing = Witness(caplog, monkeypatch)
    yield seeing
    seeing.shut_down()


def test_a_pool_at_work_shows_its_secret_nowhere(witness, capfd):
    pool = witness.pool(2, name="hush")
    recorder = EventRecorder(pool)
    assert pool.map(tasks.square, range(20)) == [x * x for x in range(20)]
    witness.look(pool)
    with pytest.raises(ZeroDivisionError) as raised:
        pool.apply(divmod, (1, 0))
    witness.caught(raised.value)

    # A worker killed mid-map: WorkerLost, TaskRetried, and the incident in the widgets.
    result = pool.map_async(tasks.slow_square, range(60), chunksize=1)
    recorder.next(Progress, where=lambda p: p.label == "map(slow_square)" and p.done >= 4)
    os.kill(pool.workers()[0].pid, signal.SIGKILL)
    recorder.next(WorkerLost)
    witness.look(pool)
    assert result.get(timeout=60) == [x * x for x in range(60)]
    recorder.next(TaskRetried)
    with pytest.raises(WorkerLostError) as lost:
        pool.apply(tasks.die_on, (1, 1))
    witness.caught(lost.value)

    # Scaled from the side panel and from code, set up with execute, told nonsense.
    witness.command({"cmd": "scale", "pool": "hush", "n": 3})
    wait_for(lambda: pool.status().live == 3, what="three live workers")
    witness.look(pool)
    pool.scale(1)
    recorder.collect(WorkerStopped, 2)
    witness.record("execute outputs", repr(pool.execute("print('ready')")))
    witness.command({"cmd": "scale", "pool": "hush", "n": 0})

    # Shut down from the side panel with a call running.
    pending = pool.map_async(tasks.sleep_then_return, [30, 30])
    witness.command({"cmd": "shutdown", "pool": "hush"})
    with pytest.raises(PoolTerminatedError) as terminated:
        pending.get(timeout=30)
    witness.caught(terminated.value)
    with pytest.raises(PoolStateError) as refused:
        pool.map(tasks.square, range(2))
    witness.caught(refused.value)
    witness.look(pool)
    witness.record("worker output", "".join(capfd.readouterr()))

    assert witness.leaks() == []
    assert SEEN_AT_WORK <= witness.channels().keys()


def _raise_in_initializer(message):
    raise RuntimeError(message)


def _without_credentials(launch: WorkerLaunch) -> list:
    """A worker that cannot read its credentials: it fails with a traceback on stderr."""
    return [sys.executable, "-m", "fiber_jupyter.worker", "--address", launch.address,
            "--worker-id", launch.worker_id, "--secret-from", "env:FIBER_NO_SUCH_VARIABLE"]


def test_pools_that_cannot_start_show_their_secret_nowhere(witness, capfd, monkeypatch):
    failing = witness.pool(1, name="failing-init", initializer=_raise_in_initializer,
                           initargs=("no GPU here",))
    with pytest.raises(InitializerError) as raised:
        failing.map(tasks.square, range(2))
    witness.caught(raised.value)
    witness.look(failing)

    monkeypatch.setattr(local, "worker_command", _without_credentials)
    unstartable = witness.pool(2, name="unstartable")
    with pytest.raises(BrokenPoolError) as broken:
        unstartable.map(tasks.square, range(2))
    witness.caught(broken.value)
    with pytest.raises(BrokenPoolError) as refused:
        unstartable.apply(tasks.square, (2,))
    witness.caught(refused.value)
    witness.look(unstartable)
    witness.record("worker output", "".join(capfd.readouterr()))

    assert witness.leaks() == []
    assert "KeyError: 'FIBER_NO_SUCH_VARIABLE'" in "".join(witness.texts("worker output"))
    assert SEEN_AT_WORK <= witness.channels().keys()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "curve"])
def test_the_witness_finds_every_form_of_a_secret_it_looks_for(witness, encrypted):
    """The other tests can fail: a secret written down in any of its forms is found."""
    forms = {}
    for whose in ("a pool", "another pool"):  # each is looked for, whatever the other's forms
        credentials = security.new_credentials(encrypted)
        witness.look_for(credentials, whose)
        forms.update((f"{whose}: {name}", text)
                     for name, text in secret_forms(credentials).items())
    for name, text in forms.items():
        witness.record(name, f"<{text}>")
    assert {leak.form for leak in witness.leaks() if leak.form == leak.channel} == set(forms)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "curve"])
def test_what_carries_the_secret_does_not_show_it_in_its_repr(witness, encrypted):
    """Credentials and the launch a backend gets hold it; a log line or an error that
    shows either of them must not show the secret."""
    credentials = security.new_credentials(encrypted)
    witness.look_for(credentials, "a pool")
    launch = WorkerLaunch("w0", "tcp://127.0.0.1:5555", credentials.token, 5.0)
    witness.record("reprs", f"{credentials!r} {launch!r}")
    assert witness.leaks() == []
    assert repr(launch) == ("WorkerLaunch(worker_id='w0', address='tcp://127.0.0.1:5555', "
                            "heartbeat_interval=5.0)")
