"""Measure one (framework, workload) pair in this fresh process; print one JSON line.

Usage: python bench/child.py FRAMEWORK WORKLOAD [--quick]

run.py starts one of these per measurement so that no framework's leftovers
(daemons, threads, imported modules, warm caches) skew another's numbers.
Everything the frameworks print goes to stderr; stdout carries only the JSON
line, which is printed before close() so that a hanging shutdown still leaves
the measurement behind.

Exit status: 0 ok, 1 import, start or workload failed, 3 close() failed after the
result was printed.
"""

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Import the harness as the ``bench`` package (not as loose modules from this
# script's folder) so that task functions pickle as bench.workloads.*.
sys.path[0] = str(ROOT)
# Workers that are new interpreters (ipyparallel engines, Ray workers, spawned
# processes) must import bench.workloads and fiber_jupyter too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from bench import frameworks, workloads  # noqa: E402

log = logging.getLogger("bench.child")


def _parse_args():
    """Framework and workload names come from the registries, so typos fail fast."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=sorted(frameworks.BY_NAME))
    parser.add_argument("workload", choices=workloads.WORKLOADS)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke mode)")
    return parser.parse_args()


def _private_stdout():
    """Keep a private copy of stdout for the JSON line; send fd 1 to stderr.

    Frameworks and their workers (which inherit fd 1) then cannot corrupt the
    result line, and the copy is close-on-exec, so exec'd daemons do not hold
    the parent's pipe open after this process exits.
    """
    result_stream = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return result_stream


def _describe(exc):
    """One-line description of an exception for the report."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _close(handle):
    """Close the framework; report whether that worked."""
    try:
        handle.close()
    except Exception:
        log.exception("close() failed")
        return False
    return True


def _run(args, emit):
    """Import the adapter (timed), start it (W1), run the workload, emit, then close."""
    t0 = time.perf_counter()
    try:
        adapter = importlib.import_module(frameworks.BY_NAME[args.framework].module)
    except Exception as exc:
        log.exception("import failed")
        emit(ok=False, stage="import", error=_describe(exc))
        return 1
    import_s = time.perf_counter() - t0
    try:
        handle, startup_s = workloads.start(adapter)
    except Exception as exc:
        log.exception("start failed")
        emit(ok=False, stage="start", error=_describe(exc), import_s=import_s)
        return 1
    sizes = workloads.QUICK if args.quick else workloads.FULL
    try:
        metrics = ({"startup_s": startup_s} if args.workload == "W1"
                   else workloads.DRIVERS[args.workload](handle, sizes))
    except Exception as exc:
        log.exception("workload failed")
        emit(ok=False, stage="run", error=_describe(exc), import_s=import_s)
        _close(handle)
        return 1
    emit(ok=True, import_s=import_s, metrics=metrics)
    return 0 if _close(handle) else 3


def main():
    """Measure once and exit with a status run.py can explain."""
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s child %(levelname)s %(message)s")
    result_stream = _private_stdout()
    record = {"framework": args.framework, "workload": args.workload, "quick": args.quick}

    def emit(**fields):
        """Write the one JSON line run.py reads."""
        result_stream.write(json.dumps({**record, **fields}) + "\n")
        result_stream.flush()

    return _run(args, emit)


if __name__ == "__main__":
    sys.exit(main())
