"""Specification of per-call progress displays (fiber_jupyter.progress)."""

import io
import threading
from typing import Dict, List

import pytest

from fiber_jupyter import progress
from fiber_jupyter.events import (CallStarted, Progress, TaskRetried, TaskSpeculated, WorkerLost,
                                  WorkerStarting)
from fiber_jupyter.progress import CallDisplay, ProgressTracker, TextDisplay
from tests import tasks
from tests.conftest import wait_for


class RecordingDisplay(CallDisplay):
    def __init__(self, call: CallStarted) -> None:
        self.call = call
        self.updates: List[Progress] = []
        self.notes: List[str] = []
        self.closed = threading.Event()
        self.final = None

    def update(self, progress: Progress) -> None:
        self.updates.append(progress)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self, progress: Progress) -> None:
        self.final = progress
        self.closed.set()


class RecordingFactory:
    """A display factory that remembers what it prepared (calling thread) and opened."""

    def __init__(self) -> None:
        self.prepared: List[CallStarted] = []
        self.prepared_in: List[str] = []
        self.opened: Dict[int, RecordingDisplay] = {}

    def __call__(self, call: CallStarted):
        self.prepared.append(call)
        self.prepared_in.append(threading.current_thread().name)

        def open_display() -> RecordingDisplay:
            display = self.opened[call.job_id] = RecordingDisplay(call)
            return display

        return open_display


def _progress(done: int, elapsed: float, finished: bool = False, job_id: int = 7) -> Progress:
    return Progress("p", job_id, "map(f)", done, 100, 0, 0, elapsed, finished)


def test_a_long_call_gets_a_display_that_ends_with_its_final_counts(make_pool):
    factory = RecordingFactory()
    pool = make_pool(2, progress=factory)
    assert pool.map(tasks.sleep_then_return, [0.1] * 14) == [None] * 14
    [call] = factory.prepared
    assert (call.label, call.total) == ("map(sleep_then_return)", 14)
    assert factory.prepared_in == [threading.current_thread().name]
    display = factory.opened[call.job_id]
    assert display.closed.wait(10)
    assert display.updates, "a call of about 0.7 s is shown while it runs"
    assert all(0 <= p.done <= 14 for p in display.updates)
    assert (display.final.done, display.final.total, display.final.finished) == (14, 14, True)


def test_a_call_that_ends_within_the_delay_shows_nothing(make_pool, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 60.0)  # "quick" whatever the machine's load
    factory = RecordingFactory()
    pool = make_pool(2, progress=factory)
    pool.map(tasks.square, range(10))
    pool.apply(tasks.square, (3,))
    assert len(factory.prepared) == 2
    assert factory.opened == {}


def test_a_crash_during_a_call_is_written_into_its_display(make_pool, tmp_path):
    factory = RecordingFactory()
    pool = make_pool(2, progress=factory)
    squares = pool.starmap(tasks.kill_self_once, [(x, str(tmp_path)) for x in range(4)])
    assert squares == [0, 1, 4, 9]
    [display] = factory.opened.values()
    assert display.closed.wait(10)
    wait_for(lambda: any("replacement worker" in n for n in display.notes),
             what="the replacement worker's note")
    assert any("lost: exit -9 (SIGKILL)" in n and "re-queued" in n for n in display.notes)
    assert any(n.startswith("task ") and "re-run on" in n for n in display.notes)
    assert display.final.retries >= 1


def test_updates_are_rate_limited_however_often_progress_comes():
    factory = RecordingFactory()
    tracker = ProgressTracker(factory, delay=0.0, interval=3600)
    tracker.call_started(CallStarted("p", 7, "map(f)", 100))
    for done in range(100):
        tracker.on_event(_progress(done, elapsed=1.0))
    tracker.on_event(_progress(100, elapsed=2.0, finished=True))
    display = factory.opened[7]
    assert [p.done for p in display.updates] == [0]
    assert display.final.done == 100


def test_no_display_before_the_delay_and_none_after_the_call_ended():
    factory = RecordingFactory()
    tracker = ProgressTracker(factory, delay=0.5, interval=0.0)
    tracker.call_started(CallStarted("p", 7, "map(f)", 100))
    tracker.on_event(_progress(10, elapsed=0.4))
    assert factory.opened == {}
    tracker.on_event(_progress(20, elapsed=0.6))
    tracker.on_event(_progress(100, elapsed=0.9, finished=True))
    tracker.on_event(_progress(100, elapsed=1.0))
    assert [p.done for p in factory.opened[7].updates] == [20]


def test_a_worker_loss_is_noted_in_every_running_call_and_so_is_its_replacement():
    factory = RecordingFactory()
    tracker = ProgressTracker(factory)
    for job_id in (1, 2):
        tracker.call_started(CallStarted("p", job_id, f"map(f{job_id})", 10))
    tracker.on_event(WorkerStarting("p", "w-5"))
    tracker.on_event(WorkerLost("p", "w-3", "exit -9 (SIGKILL)", -9, 4))
    tracker.on_event(WorkerStarting("p", "w-6"))
    tracker.on_event(TaskRetried("p", 2, "map(f2)", 4, 8, 2, "w-6", 0.0, "w-3"))
    assert factory.opened[1].notes == [
        "worker w-3 lost: exit -9 (SIGKILL); 4 tasks re-queued",
        "replacement worker w-6 starting"]
    assert factory.opened[2].notes[2] == "tasks 4-7 re-run on w-6 (attempt 2)"


def test_a_speculative_copy_is_noted_in_its_call():
    factory = RecordingFactory()
    tracker = ProgressTracker(factory)
    tracker.call_started(CallStarted("p", 1, "map(f)", 10))
    tracker.on_event(TaskSpeculated("p", 1, "map(f)", 0, 1, "w-5", "w-1", 4.23, 0.31))
    assert factory.opened[1].notes == ["task 0 also sent to idle w-5 (4.2 s on w-1, "
                                       "typically 0.3 s)"]


def test_text_display_redraws_one_line_and_ends_with_a_summary():
    stream = io.StringIO()
    display = TextDisplay("map(f)", stream)
    display.update(_progress(50, elapsed=5.0))
    display.note("worker w-3 lost: exit -9 (SIGKILL); 4 tasks re-queued")
    display.close(_progress(100, elapsed=10.0, finished=True))
    lines = stream.getvalue().split("\r")
    bar = "\u2588" * 10 + " " * 10
    assert lines[1].startswith(f"map(f):  50%|{bar}| 50/100 [00:05<00:05,")
    note = "map(f): worker w-3 lost: exit -9 (SIGKILL); 4 tasks re-queued\n"
    assert f"\r{' ' * len(lines[1])}\r{note}" in stream.getvalue(), "the bar is cleared first"
    assert lines[-1].startswith("map(f): 100 tasks done in 10.0 s (10.0 tasks/s)")
    assert stream.getvalue().endswith("\n")


def test_summary_says_when_a_call_stopped_early_and_what_went_wrong():
    stopped = Progress("p", 1, "map(f)", 40, 100, 3, 2, 4.0, True)
    assert progress.summary_text(stopped) == (
        "map(f) stopped: 40 of 100 tasks done in 4.0 s (10.0 tasks/s), 2 retried, 3 failed")


def test_durations_read_like_tqdm():
    assert progress.format_duration(65) == "01:05"
    assert progress.format_duration(3723) == "1:02:03"


def test_the_environment_switch_turns_progress_off(monkeypatch):
    monkeypatch.setattr(progress, "_default_factory", RecordingFactory())
    monkeypatch.setenv(progress.ENVIRONMENT_SWITCH, "off")
    assert progress.default_factory() is None
    monkeypatch.setenv(progress.ENVIRONMENT_SWITCH, "on")
    assert progress.default_factory() is progress._default_factory


def test_without_a_registered_display_only_a_terminal_gets_text(monkeypatch):
    monkeypatch.delenv(progress.ENVIRONMENT_SWITCH, raising=False)
    monkeypatch.setattr(progress, "_default_factory", None)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.default_factory() is None
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress.default_factory() is not None


def test_a_bad_progress_option_is_named(make_pool):
    with pytest.raises(TypeError, match="progress must be None, True, False or a display"):
        make_pool(1, progress="yes")
