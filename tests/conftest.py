"""Shared fixtures: real pools of real worker processes, and waiting on events."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Type, TypeVar

import psutil
import pytest

import fiber_jupyter
from fiber_jupyter import PoolEvent

E = TypeVar("E", bound=PoolEvent)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "",
             interval: float = 0.01) -> object:
    """Poll a predicate until true; fail the test (never hang) after ``timeout``.

    Predicates that ask an API server should poll at a larger ``interval``.
    """
    deadline = time.monotonic() + timeout
    condition = threading.Condition()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        with condition:
            condition.wait(interval)


def by_value(source: str, name: str, **caller_globals):
    """A function defined as a notebook defines it: in ``__main__``, so it travels by value."""
    namespace = {"__name__": "__main__", **caller_globals}
    exec(source, namespace)
    return namespace[name]


class EventRecorder:
    """Subscribes to a pool's events; tests block on the ones they expect."""

    def __init__(self, pool: fiber_jupyter.Pool) -> None:
        self._pool = pool
        self._queue: "queue.Queue[PoolEvent]" = queue.Queue()
        self.seen: List[PoolEvent] = []
        pool.events.subscribe(self._queue.put)

    def next(self, kind: Type[E], timeout: float = 30.0,
             where: Optional[Callable[[E], bool]] = None) -> E:
        """The next event of ``kind`` (matching ``where``); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self._queue.get(timeout=max(remaining, 0))
            except queue.Empty:
                pytest.fail(f"no {kind.__name__} event within {timeout} s; saw {self.seen[-10:]}")
            self.seen.append(event)
            if isinstance(event, kind) and (where is None or where(event)):
                return event

    def collect(self, kind: Type[E], count: int, timeout: float = 30.0) -> List[E]:
        """All events of ``kind`` so far, waiting until there are ``count`` of them."""
        while len(self.of(kind)) < count:
            self.next(kind, timeout)
        return self.of(kind)

    def of(self, kind: Type[E]) -> List[E]:
        """Events of ``kind`` seen so far (call after draining with next())."""
        return [e for e in self.seen if isinstance(e, kind)]


def worker_pids() -> List[int]:
    """Pids of this process's worker processes, of every pool it has."""
    me = psutil.Process()
    pids = []
    for child in me.children(recursive=True):
        try:
            if "fiber_jupyter.worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


@pytest.fixture
def make_pool():
    """Factory for pools that are always terminated at the end of the test."""
    pools: List[fiber_jupyter.Pool] = []

    def make(*args, **kwargs) -> fiber_jupyter.Pool:
        pool = fiber_jupyter.Pool(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()


@pytest.fixture
def process_options() -> dict:
    """What every Process a test starts is given; Kubernetes tests add their backend."""
    return {}


@pytest.fixture
def start(process_options):
    """Start a Process of ``target(*args)``, or a Process given as it is (a subclass's);
    every one is terminated at the end of the test."""
    started: List[fiber_jupyter.Process] = []

    def start_process(target, *args, **options) -> fiber_jupyter.Process:
        process = target if isinstance(target, fiber_jupyter.Process) else \
            fiber_jupyter.Process(target=target, args=args, **{**process_options, **options})
        process.start()
        started.append(process)
        return process

    yield start_process
    for process in started:
        if process.is_alive():
            process.terminate()


@pytest.fixture(scope="module")
def pool():
    """A shared pool of 4 workers, as CPython's own Pool tests use."""
    shared = fiber_jupyter.Pool(4, name="shared")
    yield shared
    shared.terminate()
    shared.join()


@pytest.fixture(autouse=True, scope="module")
def no_leftover_workers():
    """Every test module ends with no worker process of any pool left running."""
    yield
    wait_for(lambda: not [p for p in psutil.Process().children(recursive=True)
                          if _is_worker(p)], timeout=15, what="worker processes to exit")


def _is_worker(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE and \
            "fiber_jupyter.worker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def is_pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of this checkout's files (committed and new, as a fresh clone would have them),
    with the side panel's node_modules hard-linked so its build stays fast."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    copy = tmp_path / "checkout"
    for name in listed.splitlines():
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    node_modules = ROOT / "labextension" / "node_modules"
    if node_modules.exists():
        subprocess.run(["cp", "-al", str(node_modules), str(copy / "labextension")], check=True)
    return copy
