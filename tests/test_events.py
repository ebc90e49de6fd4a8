"""Specification of the event stream."""

import threading

from fiber_jupyter import EventStream, Progress, WorkerLost


def _lost(n: int) -> WorkerLost:
    return WorkerLost("p", f"w{n}", "exit -9 (SIGKILL)", -9, 1)


def test_subscribers_get_every_event_in_order_until_they_unsubscribe():
    stream, seen = EventStream(), []
    stream.subscribe(seen.append)
    stream.deliver(_lost(1))
    stream.deliver(_lost(2))
    stream.unsubscribe(seen.append)
    stream.deliver(_lost(3))
    assert [e.worker_id for e in seen] == ["w1", "w2"]


def test_a_failing_subscriber_does_not_stop_the_others(caplog):
    stream, seen = EventStream(), []

    def broken(event):
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)
    stream.subscribe(seen.append)
    stream.deliver(_lost(1))
    assert len(seen) == 1
    assert "subscriber bug" in caplog.text


def test_a_subscriber_may_unsubscribe_itself_while_being_called():
    stream, calls = EventStream(), []

    def once(event):
        calls.append(event)
        stream.unsubscribe(once)

    stream.subscribe(once)
    stream.deliver(_lost(1))
    stream.deliver(_lost(2))
    assert len(calls) == 1 and not stream.has_subscribers


def test_subscribe_is_safe_from_many_threads():
    stream = EventStream()
    seen = [[] for _ in range(16)]
    threads = [threading.Thread(target=stream.subscribe, args=(s.append,)) for s in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stream.deliver(_lost(1))
    assert all(len(s) == 1 for s in seen)


def test_progress_reports_its_rate():
    event = Progress("p", 1, "map(f)", done=50, total=100, failed=0, retries=0,
                     elapsed=2.0, finished=False)
    assert event.rate == 25.0
    assert Progress("p", 1, "map(f)", 0, 1, 0, 0, 0.0, False).rate == 0.0
