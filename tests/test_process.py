"""Specification: fiber_jupyter.Process runs its target once, in a job; ends as multiprocessing's.

- ``exitcode`` is None while the job runs; then 0 when the target returned,
  1 when it raised (the exception kept with the job's traceback, and logged),
  the code of ``sys.exit`` as multiprocessing computes it, the code of
  ``os._exit``, minus the signal that killed the job, and -9 after
  ``terminate()`` or ``kill()``; ``exit_reason`` says which, in words.
- ``pid`` and ``host`` are the job's own once it has connected.
- The target runs once: a job that dies is neither retried nor replaced.
- Bad input fails at once with the problem named: a target that is not
  callable or an unknown backend (``TypeError``, ``ValueError``); a target or
  arguments that cannot be pickled (``TypeError`` at ``start``, no job
  launched); ``start`` twice, ``join`` or ``terminate`` before ``start``
  (``ProcessStateError``, an ``AssertionError`` as multiprocessing raises).
- A job that cannot start ends the process with exit code 1 and the reason.
- Security: each job gets a secret of its own, never on its command line or
  in its environment.
- Nothing is left behind: no job, thread or descriptor once a process ended,
  joined or not; no job after the interpreter exits.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref

import psutil
import pytest

import fiber_jupyter
from fiber_jupyter import Process, ProcessStateError, RemoteTraceback, SimpleQueue
from fiber_jupyter.backends import local
from fiber_jupyter.process import _NOTEBOOK_SIDE

from . import process_targets as targets
from .conftest import by_value, is_pid_alive, wait_for, worker_pids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Long enough for a job to start on a loaded machine; never reached when all is well.
JOIN = 60


def connected(process: Process) -> int:
    return wait_for(lambda: process.pid, what=f"{process.name}'s job to connect")


class TestExitCodes:
    def test_a_target_that_returns_exits_0_in_a_job_of_its_own(self, start):
        results = SimpleQueue()
        process = start(targets.report_pid, results)
        job_pid = results.get(timeout=JOIN)
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (0, "returned")
        assert process.pid == job_pid != os.getpid()
        assert process.host == socket.gethostname()
        assert not process.is_alive()

    def test_exitcode_is_none_while_the_target_runs(self, start, tmp_path):
        gate = tmp_path / "gate"
        process = start(targets.wait_for_file, str(gate))
        pid = connected(process)
        assert process.is_alive() and process.exitcode is None and is_pid_alive(pid)
        process.join(timeout=0.01)
        assert process.is_alive() and process.exitcode is None
        gate.touch()
        process.join(JOIN)
        assert process.exitcode == 0 and not process.is_alive()

    def test_a_target_that_raises_exits_1_keeping_its_exception_and_the_jobs_traceback(
            self, start, caplog):
        process = start(targets.raise_value_error, "boom")
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (1, "raised ValueError: boom")
        assert isinstance(process.exception, ValueError) and str(process.exception) == "boom"
        job_traceback = process.exception.__cause__
        assert isinstance(job_traceback, RemoteTraceback)
        assert 'raise ValueError(message)' in str(job_traceback)
        assert f"process {process.name}: its target raised" in caplog.text
        assert "raise_value_error" in caplog.text

    @pytest.mark.parametrize("code, exitcode", [(5, 5), (None, 0), (0, 0), ("bye", 1)])
    def test_sys_exit_gives_the_exit_code_multiprocessing_gives(self, start, code, exitcode):
        process = start(targets.sys_exit, code)
        process.join(JOIN)
        assert process.exitcode == exitcode
        assert process.exception is None

    def test_os_exit_ends_the_job_with_its_code(self, start):
        process = start(targets.os_exit, 3)
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (3, "exit 3")

    def test_a_job_killed_by_a_signal_has_minus_the_signal_as_exit_code(self, start, tmp_path):
        process = start(targets.wait_for_file, str(tmp_path / "never"))
        os.kill(connected(process), signal.SIGTERM)
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (-15, "exit -15 (SIGTERM)")

    @pytest.mark.parametrize("stop", ["terminate", "kill"])
    def test_terminate_and_kill_end_the_job_at_once_with_sigkill(self, start, tmp_path, stop):
        process = start(targets.wait_for_file, str(tmp_path / "never"))
        pid = connected(process)
        getattr(process, stop)()
        assert not process.is_alive() and not is_pid_alive(pid)
        assert (process.exitcode, process.exit_reason) == (-9, "terminated (exit -9 (SIGKILL))")

    def test_terminate_while_the_job_starts_ends_it_too(self, start, tmp_path):
        process = start(targets.wait_for_file, str(tmp_path / "never"))
        process.terminate()
        assert not process.is_alive() and process.exitcode == -9
        assert process.exit_reason.startswith("terminated")
        assert worker_pids() == []

    def test_a_return_value_that_cannot_be_pickled_is_dropped_as_multiprocessing_drops_it(
            self, start):
        process = start(targets.return_unpicklable)
        process.join(JOIN)
        assert process.exitcode == 0


class TestIntrospection:
    def test_a_running_process_is_listed_as_a_one_job_pool_named_after_it(self, start,
                                                                         tmp_path):
        process = start(targets.wait_for_file, str(tmp_path / "never"), name="actor-3")
        connected(process)
        assert repr(process) == f"<fiber_jupyter.Process name='actor-3' started pid={process.pid}>"
        [pool] = [p for p in fiber_jupyter.live_pools.pools() if p.name == "actor-3"]
        assert pool.status().live == 1


class TestOneRun:
    def test_the_target_runs_once_even_when_its_job_dies(self, start, tmp_path):
        runs = tmp_path / "runs"
        process = start(targets.append_run_then_exit, str(runs), 7)
        process.join(JOIN)
        assert process.exitcode == 7
        assert len(runs.read_text().splitlines()) == 1
        assert worker_pids() == []  # and no job replaced it

    def test_a_job_that_cannot_start_ends_the_process_with_the_reason(self, start,
                                                                     monkeypatch):
        def broken_command(launch):
            return [sys.executable, "-c", "raise SystemExit(2)"]

        monkeypatch.setattr(local, "worker_command", broken_command)
        process = start(targets.report_pid, None)
        process.join(JOIN)
        assert process.exitcode == 1
        assert process.exit_reason.startswith(
            "could not start: 5 workers in a row ended before connecting (last: w4, exit 2)")

    def test_a_function_defined_in_the_notebook_runs_as_target(self, start):
        results = SimpleQueue()
        greet = by_value("def greet(results, name):\n    results.put(f'hello {name}')\n",
                         "greet")
        process = start(greet, results, "ada")
        assert results.get(timeout=JOIN) == "hello ada"
        process.join(JOIN)
        assert process.exitcode == 0


class TestSubclasses:
    """multiprocessing's other idiom: a subclass overrides run()."""

    def test_the_job_runs_run_on_a_copy_that_has_the_objects_attributes(self, start):
        results = SimpleQueue()
        process = start(targets.Reporter(results, "hello"))
        greeting, name, pid_seen, job_pid, alive = results.get(timeout=JOIN)
        process.join(JOIN)
        assert (greeting, name, alive) == ("hello", "reporter", True)
        assert pid_seen == job_pid == process.pid != os.getpid()
        assert (process.exitcode, process.exit_reason) == (0, "returned")

    def test_a_run_that_raises_exits_1_keeping_its_exception(self, start):
        process = start(targets.FailingRun())
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (1, "raised ValueError: run failed")
        assert isinstance(process.exception, ValueError)

    def test_a_subclass_defined_in_the_notebook_travels_by_value(self, start):
        results = SimpleQueue()
        source = ("class Squarer(Process):\n"
                  "    def __init__(self, results, x):\n"
                  "        super().__init__()\n"
                  "        self.results, self.x = results, x\n"
                  "    def run(self):\n"
                  "        self.results.put(self.x * self.x)\n")
        squarer = by_value(source, "Squarer", Process=Process)
        process = start(squarer(results, 12))
        assert re.fullmatch(r"Squarer-\d+", process.name)  # named as multiprocessing names it
        assert results.get(timeout=JOIN) == 144
        process.join(JOIN)
        assert process.exitcode == 0

    def test_without_a_target_or_a_run_of_its_own_it_runs_nothing_and_exits_0(self, start):
        process = start(Process())
        process.join(JOIN)
        assert (process.exitcode, process.exit_reason) == (0, "returned")

    def test_the_copy_for_the_job_leaves_out_exactly_the_notebook_side_machinery(self):
        # A new attribute of Process must say which side it belongs to.
        assert set(vars(Process())) - _NOTEBOOK_SIDE == {"name", "_target", "_args", "_kwargs"}

    def test_attributes_that_cannot_be_pickled_fail_start_naming_them(self):
        process = targets.Reporter(threading.Lock(), "hello")
        with pytest.raises(TypeError, match=(
                r"cannot start reporter: its class or attributes cannot be pickled "
                r"\(TypeError: cannot pickle '_thread.lock' object\)")):
            process.start()
        assert not process.is_alive() and worker_pids() == []


class TestBadInput:
    @pytest.mark.parametrize("target", [42, "print"])
    def test_a_target_that_is_not_callable_is_a_type_error_naming_it(self, target):
        with pytest.raises(TypeError, match=f"target must be callable or None, got {target!r}"):
            Process(target=target)

    def test_arguments_that_cannot_be_pickled_fail_start_without_launching_a_job(self):
        process = Process(target=targets.report_pid, args=(threading.Lock(),))
        with pytest.raises(TypeError, match=(
                rf"cannot start {process.name}: its target or arguments cannot be pickled "
                r"\(TypeError: cannot pickle '_thread.lock' object\)")):
            process.start()
        assert not process.is_alive() and process.exitcode is None
        assert worker_pids() == []

    def test_start_twice_is_refused_as_multiprocessing_refuses_it(self, start):
        process = start(targets.os_exit, 0)
        with pytest.raises(ProcessStateError, match="cannot start a process twice") as refused:
            process.start()
        assert isinstance(refused.value, AssertionError)
        process.join(JOIN)
        with pytest.raises(ProcessStateError, match="cannot start a process twice"):
            process.start()

    @pytest.mark.parametrize("action, refusal", [("join", "can only join a started process"),
                                                  ("terminate", "can only terminate a started"),
                                                  ("kill", "can only terminate a started")])
    def test_a_process_that_was_not_started_cannot_be_joined_or_terminated(self, action,
                                                                          refusal):
        process = Process(target=targets.os_exit, args=(0,))
        with pytest.raises(ProcessStateError, match=refusal):
            getattr(process, action)()

    def test_an_unknown_backend_is_a_value_error_naming_the_choices(self):
        with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of"):
            Process(target=targets.os_exit, backend="nope")

    def test_group_must_be_none_as_in_multiprocessing(self):
        with pytest.raises(ValueError, match="group must be None"):
            Process("group", targets.os_exit)

    def test_a_process_cannot_be_pickled_but_its_queues_can(self):
        with pytest.raises(TypeError, match="cannot be pickled .*give other processes its "
                                            "queues or pipes instead"):
            pickle.dumps(Process(target=targets.os_exit))


class TestSecurity:
    def test_each_job_has_a_secret_of_its_own_never_on_its_command_line_or_in_its_environment(
            self, start, tmp_path):
        jobs = [start(targets.wait_for_file, str(tmp_path / "never")) for _ in range(2)]
        # The one place a test may read a secret.
        secrets = [job._pool._scheduler._credentials.token for job in jobs]
        assert secrets[0] != secrets[1]
        for job, secret in zip(jobs, secrets):
            job_process = psutil.Process(connected(job))
            assert secret not in " ".join(job_process.cmdline())
            assert secret not in "".join(job_process.environ().values())


def _threads_and_descriptors() -> tuple:
    return threading.active_count(), psutil.Process().num_fds()


def _ended_process(joined: bool) -> Process:
    """A process whose target returned: joined, or only seen to end."""
    process = Process(target=targets.os_exit, args=(0,))
    process.start()
    if joined:
        process.join(JOIN)
    else:
        wait_for(lambda: not process.is_alive(), what="the process to end")
    assert process.exitcode == 0
    return process


class TestNothingLeftBehind:
    def test_ended_processes_hold_no_job_thread_or_descriptor_and_are_collected(self):
        _ended_process(joined=True)  # imports and lazy set-up, before counting
        gc.collect()
        wait_for(lambda: not [t for t in threading.enumerate() if "fiber-" in t.name],
                 what="the pools and queue brokers of earlier tests to stop")
        before = _threads_and_descriptors()
        ended = [_ended_process(joined=True), _ended_process(joined=False)]
        wait_for(lambda: _threads_and_descriptors() == before,
                 what=f"threads and descriptors back to {before}, "
                      f"not {_threads_and_descriptors()}")
        assert worker_pids() == []
        references = [weakref.ref(process) for process in ended]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a pool left running would warn when collected
            del ended
            gc.collect()
        assert [reference() for reference in references] == [None, None], "still referenced"

    def test_interpreter_exit_ends_running_jobs(self):
        script = textwrap.dedent("""
            import json, fiber_jupyter, time
            from tests import process_targets
            process = fiber_jupyter.Process(target=process_targets.wait_for_file,
                                            args=("/nonexistent/never",))
            process.start()
            while process.pid is None:  # the script's own wait: no test helpers here
                time.sleep(0.01)
            print(json.dumps(process.pid))
        """)
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
        assert done.returncode == 0, done.stderr
        pid = json.loads(done.stdout)
        wait_for(lambda: not is_pid_alive(pid), what="the job to end with its interpreter")
