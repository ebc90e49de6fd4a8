"""Looking for a pool's secret in everything a pool shows: the helpers of the secrecy tests.

A :class:`Witness` watches pools and keeps, per channel, the text of everything
a user, a log file or a front end could see of them:

- every log record of every logger, from DEBUG up, formatted with its
  traceback (the stand-in cluster's own records, ``tests.*``, are the cluster's,
  not the notebook's);
- every event of the pools, as repr and as its fields;
- every message the widgets of the pools send to a front end (the pool widget
  and the per-call progress widgets), through a recording comm;
- what the control surface (the side panel's comm) answers, and ``pool_view``;
- the errors the test hands it, with their tracebacks and causes;
- snapshots of each pool's repr, status and workers;
- anything else the test records (worker output, pod specs).

:func:`secret_forms` is what a secret looks like written down, in every
encoding the code uses or might; :meth:`Witness.leaks` finds each of them.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import traceback
from typing import Any, Callable, DefaultDict, Dict, List, NamedTuple

import comm
import pytest
import zmq.utils.z85

import fiber_jupyter
from fiber_jupyter import PoolEvent, security
from fiber_jupyter.events import CallStarted
from fiber_jupyter.jupyter.control import ControlTarget, pool_view
from fiber_jupyter.jupyter.pool_feed import PoolFeed
from fiber_jupyter.jupyter.pool_widget import PoolWidget
from fiber_jupyter.jupyter.progress_widget import WidgetDisplay
from fiber_jupyter.progress import CallDisplay

# A secret cut short is still a leak: runs of this many characters of each
# encoding are looked for too (a quarter of a hex secret: 64 of its 256 bits).
FRAGMENT = 16
_Z85_KEY = 40


class Leak(NamedTuple):
    """A form of a secret (its name), where it was seen, and the text around it."""

    form: str
    channel: str
    context: str


def secret_forms(credentials: security.Credentials) -> Dict[str, str]:
    """The secret material of a pool, as text, by name: {"token": "3f9a...", ...}.

    PLAIN (local pools): the token is the secret, 32 random bytes in hex.
    CURVE (pods): the token is "curve:" + the master's public key + the
    workers' public key + the workers' secret key, Z85; the master's secret
    key is kept apart. Public keys are no secret, so they are looked for only
    inside the whole token.
    """
    token = credentials.token
    if token.startswith(security.CURVE_PREFIX):
        keys = {"the workers' secret key": zmq.utils.z85.decode(token[-_Z85_KEY:]),
                "the master's secret key": zmq.utils.z85.decode(credentials.server_secret_key)}
    else:
        keys = {"the secret": bytes.fromhex(token)}
    forms = {"the token": token, "the token in base64": _b64(token.encode()),
             "the token in urlsafe base64": _b64(token.encode(), urlsafe=True)}
    for name, key in keys.items():
        encodings = {"hex": key.hex(), "HEX": key.hex().upper(), "base64": _b64(key),
                     "urlsafe base64": _b64(key, urlsafe=True),
                     "z85": zmq.utils.z85.encode(key).decode()}
        for encoding, text in encodings.items():
            forms[f"{name} in {encoding}"] = text
            for start in range(len(text) - FRAGMENT + 1):
                forms[f"{name} in {encoding}, characters {start}-{start + FRAGMENT}"] = (
                    text[start:start + FRAGMENT])
        forms[f"{name} as a bytes repr"] = repr(key)[2:-1]
    return forms


def _b64(data: bytes, urlsafe: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode().rstrip("=")


def pool_credentials(pool: fiber_jupyter.Pool) -> security.Credentials:
    return pool._scheduler._credentials  # the one place a test may read it


class _RecordingComm(comm.DummyComm):
    """A widget's comm that keeps every message it would send to a front end."""

    def __init__(self, record: Callable[[str], None], **kwargs: Any) -> None:
        self._record = record  # before the base class opens the comm (its first message)
        super().__init__(**kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                    buffers: Any = None, **keys: Any) -> None:
        self._record(repr((msg_type, data, metadata, buffers, keys)))


class Witness:
    """Sees everything the pools it watches show (see the module docstring)."""

    def __init__(self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
        caplog.set_level(logging.DEBUG)  # every logger: the root's level, and the handler's
        self._caplog = caplog
        monkeypatch.setattr(comm, "create_comm", lambda **kwargs: _RecordingComm(
            lambda text: self.record("widget messages", text), **kwargs))
        self._texts: DefaultDict[str, List[str]] = collections.defaultdict(list)
        self._forms: Dict[str, str] = {}
        self._control = ControlTarget(live=None)
        self._feeds: Dict[str, PoolFeed] = {}
        self._widgets: List[Any] = []
        self._pools: List[fiber_jupyter.Pool] = []
        self._formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")

    # Watching ----------------------------------------------------------------

    def pool(self, *args: Any, **kwargs: Any) -> fiber_jupyter.Pool:
        """A pool with widget progress displays, watched from its first event on."""
        pool = fiber_jupyter.Pool(*args, progress=self._progress, **kwargs)
        self._pools.append(pool)
        self.watch(pool)
        return pool

    def watch(self, pool: fiber_jupyter.Pool) -> None:
        self.look_for(pool_credentials(pool), f"pool {pool.name!r}")
        pool.events.subscribe(self._on_event)
        self._feeds[pool.name] = PoolFeed(pool, lambda event: None)
        self._widgets.append(PoolWidget(pool))

    def look_for(self, credentials: security.Credentials, whose: str) -> None:
        """Look for these credentials too; their forms are named "<whose>: <form>"."""
        self._forms.update((f"{whose}: {name}", form)
                           for name, form in secret_forms(credentials).items())

    def _progress(self, call: CallStarted) -> Callable[[], CallDisplay]:
        """The display factory of a notebook (progress_widget.widget_factory), minus the cell."""

        def open_display() -> CallDisplay:
            display = WidgetDisplay(call)
            self._widgets.append(display.box)
            return display

        return open_display

    def _on_event(self, event: PoolEvent) -> None:
        self.record("events", f"{event!r} {dataclasses.asdict(event)!r}")

    def look(self, pool: fiber_jupyter.Pool) -> None:
        """What a user or the side panel sees of ``pool`` now."""
        self.record("repr, status and workers",
                    f"{pool!r} {pool.status()!r} {pool.workers()!r}")
        self.record("control answers", repr(pool_view(pool, self._feeds[pool.name])))
        self.command({"cmd": "status"})

    def command(self, data: Any) -> Dict[str, Any]:
        """The control surface's answer to ``data``, as the side panel would get it."""
        answer = self._control.answer(data)
        self.record("control answers", repr(answer))
        return answer

    def caught(self, error: BaseException) -> None:
        """An error raised to the caller: its message, fields and traceback, causes included."""
        self.record("errors", "".join(traceback.format_exception(error)))
        self.record("errors", f"{error!r} {error.args!r} {vars(error)!r}")

    def record(self, channel: str, text: str) -> None:
        self._texts[channel].append(text)

    # Judging -----------------------------------------------------------------

    def take_logs(self) -> None:
        """Take in the log records so far."""
        for record in self._caplog.records:
            if not record.name.startswith("tests."):
                self.record("log records", f"{self._formatter.format(record)} {record.args!r}")
        self._caplog.clear()

    def shut_down(self) -> None:
        """Terminate the pools it made and close the widgets."""
        for pool in self._pools:
            pool.terminate()
            pool.join()
        for widget in self._widgets:
            _close(widget)

    def texts(self, channel: str) -> List[str]:
        return list(self._texts[channel])

    def channels(self) -> Dict[str, int]:
        """How much text each channel holds: proof that the witness saw something."""
        return {channel: sum(map(len, texts)) for channel, texts in self._texts.items()}

    def leaks(self) -> List[Leak]:
        """Where a form of a watched pool's secret appears, with the text around it."""
        assert self._forms, "no pool was watched"
        self.take_logs()
        found = []
        for channel, texts in self._texts.items():
            for text in texts:
                for name, form in self._forms.items():
                    at = text.find(form)
                    if at >= 0:
                        found.append(Leak(name, channel, text[max(0, at - 60):at + len(form) + 20]))
        return found


def _close(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close(child)
    widget.close()
