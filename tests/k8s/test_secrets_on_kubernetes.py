"""Specification: a pool of pods keeps its credentials in its Secret and shows them nowhere else.

The pool's token (CURVE keys: the master's public key, the workers' key pair)
goes into one Kubernetes Secret; pods only reference it. Everything else the
pool writes or shows (pods, every other object on the cluster, the Secret's
metadata, pod logs, log records of every logger at DEBUG, events, widget
messages, control answers, errors, repr and status) must hold no form of it
(tests/secret_witness.py). Local pools: tests/test_secrets_stay_secret.py.
"""

from __future__ import annotations

import base64
from typing import Any, Dict

import pytest

from fiber_jupyter import (BrokenPoolError, PoolTerminatedError, Progress, TaskRetried,
                           WorkerLost, WorkerStopped)
from fiber_jupyter.backends.kubernetes import manifests

from ..conftest import EventRecorder
from ..secret_witness import Witness, pool_credentials
from .clusters import SLOW_SQUARE, SQUARE, kill_worker, wait_live

UNPULLABLE = "registry.example/does-not-exist:1"


@pytest.fixture
def witness(caplog, monkeypatch):
    seeing = Witness(caplog, monkeypatch)
    yield seeing
    seeing.shut_down()


def _record_the_cluster(witness: Witness, fake: Any) -> Dict[str, Any]:
    """Every version of every object the pools wrote, and the pod logs; the Secrets by name."""
    registry = fake.fake.api.registry
    secrets: Dict[str, Any] = {}
    for change in registry.wait_events(registry.oldest_version(), 0, lambda: True):
        if change.resource == "secrets":
            secrets[change.obj["metadata"]["name"]] = change.obj
            shown = {key: value for key, value in change.obj.items()
                     if key not in ("data", "stringData")}
            witness.record("the Secret without its data", repr(shown))
        else:
            witness.record(f"{change.resource} on the cluster", repr(change.obj))
    for log in sorted(fake.fake.kubelet.log_dir.glob("*.log")):
        witness.record("pod logs", log.read_text(errors="replace"))
    return secrets


def test_a_pool_of_pods_shows_its_credentials_nowhere_but_in_its_secret(fake, witness):
    fake.fake.api.fail_next("create", "secrets", 1, code=500)
    fake.fake.api.fail_next("create", "pods", 1, code=429, retry_after=0.1)
    pool = witness.pool(2, backend=fake.backend(), name="hush")
    recorder = EventRecorder(pool)
    wait_live(pool, 2)
    assert pool.map(SQUARE, range(20)) == [x * x for x in range(20)]
    witness.look(pool)
    with pytest.raises(ZeroDivisionError) as raised:
        pool.apply(divmod, (1, 0))
    witness.caught(raised.value)
    pool.apply(print, ("a task's output, in its pod's log",))

    # A worker killed mid-map: its pod fails, its tasks run again on the replacement.
    result = pool.map_async(SLOW_SQUARE, range(60), chunksize=1)
    recorder.next(Progress, where=lambda p: p.label == "map(slow_square)" and p.done >= 4)
    kill_worker(fake, fake.pods()[0].metadata.name)
    recorder.next(WorkerLost)
    witness.look(pool)
    assert result.get(timeout=120) == [x * x for x in range(60)]
    recorder.next(TaskRetried)

    witness.command({"cmd": "scale", "pool": "hush", "n": 3})
    wait_live(pool, 3)
    pool.scale(1)
    recorder.collect(WorkerStopped, 2)
    witness.look(pool)
    pending = pool.map_async(SLOW_SQUARE, range(100), chunksize=1)
    witness.command({"cmd": "shutdown", "pool": "hush"})
    with pytest.raises(PoolTerminatedError) as terminated:
        pending.get(timeout=60)
    witness.caught(terminated.value)
    witness.look(pool)

    # A pool whose pods cannot start: waiting, failed starts, then broken.
    unpullable = witness.pool(1, backend=fake.backend(image=UNPULLABLE), name="no-image",
                              start_timeout=0.5, heartbeat_timeout=1.2)
    with pytest.raises(BrokenPoolError) as broken:
        unpullable.map(SQUARE, range(3))
    witness.caught(broken.value)
    witness.look(unpullable)

    secrets = _record_the_cluster(witness, fake)
    assert witness.leaks() == []
    assert {"log records", "events", "widget messages", "control answers", "errors",
            "repr, status and workers", "pods on the cluster", "the Secret without its data",
            "pod logs"} <= witness.channels().keys()
    assert any("WorkerWaiting(pool='no-image'" in text for text in witness.texts("events"))
    assert any("a task's output, in its pod's log" in text for text in witness.texts("pod logs"))
    # Where the credentials are: in each pool's own Secret.
    held = {secret["metadata"]["annotations"][manifests.POOL_NAME_ANNOTATION]:
            base64.b64decode(secret["data"][manifests.CREDENTIALS_KEY]).decode()
            for secret in secrets.values()}
    assert held == {each.name: pool_credentials(each).token for each in (pool, unpullable)}
