"""Bad input: from a user's mistake to the error that names it, and the pool afterwards.

Usage: python -m bench.bad_input [--out docs/benchmarks.md]

Local backend, ``fiber_jupyter.Pool(2)`` with its defaults (``max_retries=2``),
all workers live before the first case. Each case makes one mistake from the
hardening issue's list and times, with ``time.perf_counter()``, the call that
makes it, from its start until it raises. Blocking calls go through
``get(timeout=60)``, so a case that would hang shows up as a ``TimeoutError``
after 60 s instead of stopping the benchmark. Set-up that is not the mistake
(writing a kubeconfig, closing a second pool) is done before the clock starts.

A case meets the target when, within 5 s, it raised the expected type, the
error names the culprit (the value, function, module, path, context or
server; in its message or in the worker's traceback that is its cause), and
the pool still answers ``map(square, range(100))`` correctly afterwards. The
pool checked is the one the mistake was made on; the mistakes that have no
pool of their own (a constructor that refuses, a closed pool) check the
benchmark's pool. The Kubernetes cases need no cluster: each fails before a
pod would be created.

Writes the "bad input" section of the report (see ``bench.sections``);
progress is logged to stderr.
"""

import argparse
import logging
import multiprocessing.pool
import socket
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import fiber_jupyter
from fiber_jupyter.backends.kubernetes import Kubernetes, KubernetesConfigError

from bench import bad_input_tasks as tasks
from bench import observe, sections

log = logging.getLogger("bench.bad_input")

WORKERS = 2
TARGET_S = 5.0
CALL_TIMEOUT_S = 60
START_TIMEOUT_S = 120
CLOSE_TIMEOUT_S = 60
CHECK = range(100)  # the map that shows the pool still works
MASTER_ONLY_MODULE = "bench_master_only"
MESSAGE_CHARACTERS = 150  # longer first lines are cut in the table


@dataclass(frozen=True)
class Case:
    """One mistake: ``arm(pool, folder)`` prepares it and returns the call that makes it."""

    name: str
    expected: type
    names: str  # what the error must name (in its message or its remote traceback)
    arm: Callable[[fiber_jupyter.Pool, Path], Callable[[], Any]]


@dataclass(frozen=True)
class Outcome:
    case: Case
    error: Optional[BaseException]
    seconds: float
    usable: bool


# The mistakes ----------------------------------------------------------------------------

def _get(result):
    return result.get(timeout=CALL_TIMEOUT_S)


def _unpicklable_function(pool, folder):
    lock = threading.Lock()
    return lambda: _get(pool.map_async(lambda x: (lock, x)[1], [1, 2]))


def _master_only_function(pool, folder):
    module = types.ModuleType(MASTER_ONLY_MODULE)
    exec("def add_one(x):\n    return x + 1\n", module.__dict__)
    sys.modules[MASTER_ONLY_MODULE] = module
    return lambda: _get(pool.apply_async(module.add_one, (1,)))


def _closed_pool(pool, folder):
    closed = fiber_jupyter.Pool(1, name="closed")
    closed.close()
    closed.join()
    return lambda: closed.map(tasks.square, [1])


def _kubernetes_pool(kubeconfig, context=None):
    backend = Kubernetes(image="python:3.11-slim", kubeconfig=str(kubeconfig), context=context)
    return lambda: fiber_jupyter.Pool(1, name="misconfigured", backend=backend)


def _kubeconfig_for(path, server):
    """A kubeconfig with one context, "nowhere", for ``server``."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n"
        "users:\n- name: u\n  user:\n    token: not-a-secret\n"
        "contexts:\n- name: nowhere\n  context:\n    cluster: c\n    user: u\n"
        "current-context: nowhere\n")
    return path


def _unreachable_server(pool, folder):
    """A kubeconfig whose server is a loopback port that refuses connections: bound, so
    nothing else takes it while the case runs, and never listening."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    start = _kubernetes_pool(_kubeconfig_for(folder / "unreachable",
                                             f"http://127.0.0.1:{bound.getsockname()[1]}"))

    def call():
        try:
            return start()
        finally:
            bound.close()
    return call


def _not_yaml(pool, folder):
    path = folder / "not-yaml"
    path.write_text("clusters:\n\t- name: c\n")
    return _kubernetes_pool(path)


def _missing_context(pool, folder):
    return _kubernetes_pool(_kubeconfig_for(folder / "kubeconfig", "http://127.0.0.1:1"),
                            context="staging")


CASES = [
    Case("invalid size: `Pool(processes=0)`", ValueError,
         "processes must be a positive integer, got 0",
         lambda pool, folder: lambda: fiber_jupyter.Pool(processes=0)),
    Case("invalid size: `scale(-1)`", ValueError, "pool size must be a positive integer, got -1",
         lambda pool, folder: lambda: pool.scale(-1)),
    Case("invalid size: `map(chunksize=0)`", ValueError,
         "chunksize must be a positive integer, got 0",
         lambda pool, folder: lambda: pool.map(tasks.square, [1, 2], chunksize=0)),
    Case("unpicklable function (a lambda holding a lock)", TypeError,
         "cannot pickle '_thread.lock' object", _unpicklable_function),
    Case("unpicklable argument (a lock)", TypeError, "cannot pickle '_thread.lock' object",
         lambda pool, folder: lambda: _get(
             pool.map_async(tasks.square, [1, threading.Lock(), 3]))),
    Case("unpicklable result (a lock)", multiprocessing.pool.MaybeEncodingError,
         "_thread.lock object",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.return_a_lock))),
    Case("exception whose arguments cannot be pickled", fiber_jupyter.RemoteError,
         "HoldsALock: bad item 5",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.raise_holding_a_lock, (5,)))),
    Case("exception that cannot be unpickled", fiber_jupyter.RemoteError,
         "NeedsCode: bad item 5",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.raise_needs_code, (5,)))),
    Case("`sys.exit(3)` in a task", SystemExit, "in call_sys_exit",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.call_sys_exit, (3,)))),
    Case("`os._exit(0)` in a task", fiber_jupyter.WorkerLostError,
         "task 0 of apply(call_os_exit) failed",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.call_os_exit, (0,)))),
    Case("`os._exit(7)` in a task", fiber_jupyter.WorkerLostError, "exit 7",
         lambda pool, folder: lambda: _get(pool.apply_async(tasks.call_os_exit, (7,)))),
    Case("function from a module workers cannot import", ModuleNotFoundError,
         f"No module named '{MASTER_ONLY_MODULE}'", _master_only_function),
    Case("result too large for memory, to build", MemoryError,
         "in build_a_result_larger_than_memory",
         lambda pool, folder: lambda: _get(
             pool.apply_async(tasks.build_a_result_larger_than_memory))),
    Case("result too large for memory, to send back", multiprocessing.pool.MaybeEncodingError,
         "<LargerThanMemoryWhenPickled>",
         lambda pool, folder: lambda: _get(
             pool.apply_async(tasks.return_a_result_larger_than_memory_when_pickled))),
    Case("use after `close()`", ValueError, "Pool not running: closed is CLOSE", _closed_pool),
    Case("kubeconfig that does not exist", KubernetesConfigError, "no kubeconfig at ",
         lambda pool, folder: _kubernetes_pool(folder / "missing")),
    Case("kubeconfig that is not YAML", KubernetesConfigError, "is not valid YAML",
         _not_yaml),
    Case("context the kubeconfig lacks", KubernetesConfigError,
         "Expected object with name staging", _missing_context),
    Case("API server unreachable (closed loopback port)", KubernetesConfigError,
         "cannot reach the Kubernetes API server at http://127.0.0.1:", _unreachable_server),
]


# Measuring -------------------------------------------------------------------------------

def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=sections.DEFAULT_PATH,
                        help="markdown report whose bad-input section is rewritten")
    return parser.parse_args(argv)


def _still_works(pool):
    try:
        return _get(pool.map_async(tasks.square, CHECK)) == [tasks.square(x) for x in CHECK]
    except Exception:
        log.exception("the pool no longer answers a map")
        return False


def _measure(case, pool, folder):
    """Make the mistake once: what it raised, after how long, and whether the pool works."""
    call = case.arm(pool, folder)
    started = time.perf_counter()
    error = None
    try:
        call()
    except BaseException as exc:  # SystemExit and KeyboardInterrupt included: they are results
        error = exc
    seconds = time.perf_counter() - started
    outcome = Outcome(case, error, seconds, _still_works(pool))
    log.info("%s: %s after %.3f s; pool usable after: %s", case.name,
             type(error).__name__ if error else "no error", seconds, outcome.usable)
    return outcome


def _run_all(pool, folder):
    try:
        return [_measure(case, pool, folder) for case in CASES]
    finally:
        sys.modules.pop(MASTER_ONLY_MODULE, None)


# The report ------------------------------------------------------------------------------

def _text(error):
    """The error's own text and its cause's (a worker's traceback), to look for the culprit."""
    return f"{error}\n{error.__cause__ or ''}"


def _first_line(error):
    lines = str(error).splitlines()
    if not lines:
        return "(no message; its cause, the worker's traceback, names the task)"
    line = lines[0]
    return line if len(line) <= MESSAGE_CHARACTERS else line[:MESSAGE_CHARACTERS] + "…"


def _problems(outcome):
    """Why a case misses the target; empty when it meets it."""
    error, case = outcome.error, outcome.case
    problems = []
    if error is None:
        problems.append("no error")
    elif not isinstance(error, case.expected):
        problems.append(f"{type(error).__name__}, not {case.expected.__name__}")
    elif case.names not in _text(error):
        problems.append(f"does not name {case.names!r}")
    if outcome.seconds > TARGET_S:
        problems.append(f"{outcome.seconds:.1f} s")
    if not outcome.usable:
        problems.append("pool unusable")
    return problems


def _cell(text):
    """Markdown-safe table cell, as code (messages hold <...> and |)."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _row(outcome):
    error = outcome.error
    kind = type(error).__name__ if error is not None else "(none)"
    message = _cell(_first_line(error)) if error is not None else ""
    problems = _problems(outcome)
    verdict = "met" if not problems else "**not met**: " + ", ".join(problems)
    return (f"| {outcome.case.name} | {kind} | {message} | {outcome.seconds:.3f} | "
            f"{'yes' if outcome.usable else '**no**'} | {verdict} |")


def render(outcomes):
    met = sum(not _problems(outcome) for outcome in outcomes)
    return "\n\n".join([
        "## Bad input: time to a clear error",
        sections.provenance("bench.bad_input"),
        f"Local backend, `Pool({WORKERS})` with its defaults, all workers live first. Each "
        "row makes one mistake and times the call that makes it, from its start until it "
        f"raises (blocking calls use `get(timeout={CALL_TIMEOUT_S})`, so a hang would show "
        "as a TimeoutError). The target: within "
        f"{TARGET_S:g} s, the expected error type, naming the culprit (value, function, "
        "module, path, context or server) in its message or in the worker's traceback that "
        f"is its cause, and the pool then answers `map(square, range({len(CHECK)}))` "
        "correctly. The pool checked is the one the mistake was made on; a refusing "
        "constructor and a closed pool, having none of their own, check the benchmark's. "
        "The Kubernetes rows need no cluster: each fails in `Pool()`, before any pod; the "
        "first of them includes importing the official client. "
        "`os._exit` ends a worker, so its rows include two replacement workers starting "
        "(the task fails at its third loss, `max_retries=2`).",
        "| case | error | first line of the message | seconds to error | pool usable after "
        f"| target ≤ {TARGET_S:g} s |\n|---|---|---|---|---|---|\n"
        + "\n".join(_row(outcome) for outcome in outcomes),
        f"{met} of {len(outcomes)} cases meet the target.",
    ])


def main():
    """Run every case on one pool, then write and print the bad-input section."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse_args(sys.argv[1:])
    pool, events, _ = observe.start_pool(WORKERS, START_TIMEOUT_S, name="bad-input")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bad-input-") as folder:
            outcomes = _run_all(pool, Path(folder))
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    observe.close_pool(pool, events, CLOSE_TIMEOUT_S)
    observe.check_no_leftovers()
    text = render(outcomes)
    sections.write(args.out, sections.BAD_INPUT, text)
    log.info("bad-input section written to %s", args.out)
    print(text)


if __name__ == "__main__":
    main()
