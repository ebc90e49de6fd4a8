"""Run every (framework, workload) pair side by side and write the markdown report.

Usage: python bench/run.py [--reps 3] [--frameworks a,b] [--workloads W1,W2]
                           [--quick] [--out docs/benchmarks.md]

Each measurement runs in a fresh ``python bench/child.py FRAMEWORK WORKLOAD``
process with a timeout, repetition-major (all frameworks once, then again), so
slow drifts in machine load hit every framework alike. A framework that fails
to import, crashes or hangs becomes a line under Failures, never a crashed run.
Progress is logged to stderr; the report goes to --out and to stdout.
"""

import argparse
import ctypes
import datetime
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
# Import the harness as the ``bench`` package, as child.py does.
sys.path[0] = str(ROOT)

from bench import frameworks, report, sections, workloads  # noqa: E402

log = logging.getLogger("bench.run")
CHILD = ROOT / "bench" / "child.py"
TIMEOUT_S = {"W1": 120, "W2": 120, "W3": 300, "W4": 240, "W5": 240, "W6": 180}
QUICK_TIMEOUT_S = 60
ORPHAN_GRACE_S = 3.0
STDERR_TAIL_LINES = 3
PR_SET_CHILD_SUBREAPER = 36
VERSIONED = ("numpy", "cloudpickle", "pyzmq", "psutil", "loky", "ipyparallel", "ipykernel",
             "dask", "distributed", "tornado", "ray")


def _names(text, known, what):
    """Parse a comma-separated selection, keeping the registry's order."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)}; "
                                         f"choose from {', '.join(known)}")
    return [name for name in known if name in chosen]


def _parse_args(argv):
    """Command line; selections are validated against the registries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="repetitions (default 3, or 1 with --quick)")
    parser.add_argument("--frameworks", default=",".join(frameworks.BY_NAME),
                        type=lambda t: _names(t, list(frameworks.BY_NAME), "frameworks"),
                        help="comma-separated (default: all): " + ",".join(frameworks.BY_NAME))
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS),
                        type=lambda t: _names(t, workloads.WORKLOADS, "workloads"),
                        help="comma-separated (default: all): " + ",".join(workloads.WORKLOADS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: smaller sizes, short timeouts, 1 repetition by default")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="markdown report path (default: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    return args


def _become_subreaper():
    """Adopt processes orphaned by a child, so leftovers can be found and killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed (errno %d): leftovers of a child "
                    "will go unnoticed", ctypes.get_errno())


def _kill_all(processes):
    """SIGKILL and reap, tolerating processes that are already gone."""
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=ORPHAN_GRACE_S)


def _kill_tree(pid):
    """Kill a hung child and everything it started."""
    try:
        process = psutil.Process(pid)
        _kill_all([process] + process.children(recursive=True))
    except psutil.NoSuchProcess:
        pass


def _sweep_orphans(grace_s):
    """Kill what a finished child left running; return the leftovers' names.

    Resource trackers, ipyparallel's engine nannies and the like exit on their
    own shortly after their parent is gone, so only processes still alive
    after the grace period count as leftovers.
    """
    _, alive = psutil.wait_procs(psutil.Process().children(recursive=True), timeout=grace_s)
    names = sorted(_process_name(p) for p in alive)
    _kill_all(alive)
    return names


def _process_name(process):
    """Name for the report; a process may exit while we look at it."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return "exited"


def _stderr_tail(stream):
    """The child's last few stderr lines, enough to see why it failed."""
    stream.seek(0)
    lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines()]
    return " / ".join([line for line in lines if line][-STDERR_TAIL_LINES:])[-600:]


def _result_line(stdout):
    """The child's JSON line, if it printed one."""
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "workload" in record:
            return record
    return None


def _run_child(framework, workload, rep, quick):
    """One measurement in a fresh process; every outcome becomes a Result."""
    command = [sys.executable, str(CHILD), framework.name, workload]
    command += ["--quick"] if quick else []
    timeout = QUICK_TIMEOUT_S if quick else TIMEOUT_S[workload]
    result = report.Result(framework.name, workload, rep, status="ok", load1=os.getloadavg()[0])
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                 start_new_session=True)
        try:
            stdout, _ = child.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_tree(child.pid)
            stdout, _ = child.communicate()
            timed_out = True
        result.wall_s = time.perf_counter() - t0
        _interpret(result, _result_line(stdout), child.returncode, timed_out, timeout,
                   _stderr_tail(stderr))
    # Quick mode kills stragglers at once to stay short, so it cannot tell leftovers apart.
    leftovers = _sweep_orphans(0 if quick else ORPHAN_GRACE_S)
    if leftovers and not quick:
        result.note = _join_notes(result.note, f"{len(leftovers)} processes still running "
                                  f"{ORPHAN_GRACE_S:g} s after the child exited, killed: "
                                  f"{', '.join(leftovers)}")
    return result


def _join_notes(*notes):
    """A run can have several notes; keep them all on one line."""
    return "; ".join(n for n in notes if n) or None


def _interpret(result, record, returncode, timed_out, timeout, stderr_tail):
    """Fill status, metrics, error and notes from what the child left behind."""
    if record is None:
        result.status = "timeout" if timed_out else "failed"
        result.error = (f"no result after {timeout} s" if timed_out
                        else f"exit status {returncode} without a result")
        result.error += f" (stderr: {stderr_tail})" if stderr_tail else ""
        return
    result.import_s = record.get("import_s")
    if not record["ok"]:
        result.status = "failed"
        result.error = f"{record['stage']}: {record['error']}"
        return
    result.metrics = record["metrics"]
    if timed_out:
        result.note = (f"measured, but the child had not exited {timeout} s after starting "
                       "(close() or interpreter exit hung); killed")
    elif returncode != 0:
        result.note = f"measured, but close() failed (stderr: {stderr_tail})"


def _skip_reason(result):
    """Why later runs should be skipped after this result, if they should."""
    if result.status == "timeout":
        return (result.workload, f"timed out in rep {result.rep}")
    if result.status == "failed" and result.error.startswith("import:"):
        return (None, f"import failed in rep {result.rep}")
    return None


def _run_all(args):
    """Repetition-major loop over the selected frameworks and workloads."""
    selected = [frameworks.BY_NAME[name] for name in args.frameworks]
    plan = [(rep, f, w) for rep in range(1, args.reps + 1) for f in selected
            for w in args.workloads if w in f.workloads]
    skips = {}
    results = []
    for index, (rep, framework, workload) in enumerate(plan, 1):
        reason = skips.get((framework.name, workload)) or skips.get((framework.name, None))
        if reason:
            results.append(report.Result(framework.name, workload, rep, "skipped", error=reason))
            continue
        result = _run_child(framework, workload, rep, args.quick)
        results.append(result)
        log.info("[%d/%d] rep %d %s %s: %s in %.1f s (load %.2f) %s", index, len(plan), rep,
                 framework.name, workload, result.status, result.wall_s, result.load1,
                 result.error or result.note or "")
        skip = _skip_reason(result)
        if skip:
            skips[(framework.name, skip[0])] = skip[1]
    return results


def _cpu_model():
    """CPU model, so reports from different machines are not confused."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _machine():
    """What the numbers were measured on."""
    return {
        "cores": os.cpu_count(),
        "CPU": _cpu_model(),
        "RAM": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "multiprocessing start method": multiprocessing.get_start_method(),
    }


def _git(*args):
    """Output of a git command in the repository, or None if git fails."""
    completed = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return completed.stdout.strip() if completed.returncode == 0 else None


def _subject_version():
    """fiber_jupyter is measured from the work tree, so name the commit and its state."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", "fiber_jupyter")
    state = " + uncommitted changes" if dirty else ""
    return f"git {commit}{state}" if commit else "work tree (no commit yet)"


def _versions():
    """Versions of everything measured; peers change behaviour between releases."""
    versions = {frameworks.SUBJECT: _subject_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now():
    """Local time with offset, so run times are unambiguous."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def main():
    """Measure, then write and print the report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse_args(sys.argv[1:])
    _become_subreaper()
    start = _now()
    results = _run_all(args)
    run = {
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "start": start,
        "end": _now(),
        "quick": args.quick,
        "reps": args.reps,
        "sizes": workloads.QUICK if args.quick else workloads.FULL,
        "machine": _machine(),
        "versions": _versions(),
    }
    text = report.render(results, run)
    sections.write(args.out, sections.PEERS, text)
    log.info("report written to %s", args.out)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
