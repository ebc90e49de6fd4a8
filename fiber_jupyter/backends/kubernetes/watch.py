"""One watch per pool: every change to its pods, however many there are.

Fiber polled each pod's status (two API calls per second per worker while
idle). Here one watch with the pool's label selector streams every change;
the server ends it every WATCH_SECONDS and it resumes from the last
resourceVersion seen, so an idle pool costs a few requests a minute, none
per worker. A dropped connection resumes the same way; a resourceVersion the
server no longer has (410 Gone) means a fresh list, which the backend
compares with what it knows (pods deleted meanwhile are reported then).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List

log = logging.getLogger(__name__)

WATCH_SECONDS = 20
RECONNECT_DELAY = 1.0


class PodWatch(threading.Thread):
    """Streams a pool's pod events to ``on_event(kind, pod)``; ``on_list(pods)`` after a list.

    ``on_list`` gets every pod that exists, when the watch starts and after a
    410; ``before_list()`` runs just before each list request.
    """

    def __init__(self, api: Any, namespace: str, selector: str,
                 on_event: Callable[[str, Any], None], on_list: Callable[[List[Any]], None],
                 before_list: Callable[[], None], stopping: threading.Event) -> None:
        super().__init__(name=f"fiber-k8s-watch-{selector.rsplit('=', 1)[-1]}", daemon=True)
        self._api = api
        self._namespace = namespace
        self._selector = selector
        self._on_event = on_event
        self._on_list = on_list
        self._before_list = before_list
        self._stopping = stopping
        self._stream: Any = None  # the watch in progress, for stop()
        self.listed = threading.Event()

    def stop(self) -> None:
        """End the watch now, also in the middle of a long poll."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.stop()  # shuts the socket down, which unblocks the read

    def run(self) -> None:
        version = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except Exception as exc:  # any failure of the connection or the server
                version = self._recover(exc, version)

    def _list(self) -> str:
        self._before_list()
        pods = self._api.list_namespaced_pod(self._namespace, label_selector=self._selector)
        self._on_list(pods.items)
        self.listed.set()
        return pods.metadata.resource_version

    def _watch(self, version: str) -> str:
        from kubernetes import watch

        stream = self._stream = watch.Watch()
        if self._stopping.is_set():
            return version
        for event in stream.stream(self._api.list_namespaced_pod, self._namespace,
                                   label_selector=self._selector, resource_version=version,
                                   timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True):
            if event["type"] == "BOOKMARK":  # its object stays a dict: only a version
                version = stream.resource_version or version
            else:
                pod = event["object"]
                version = pod.metadata.resource_version or version
                self._on_event(event["type"], pod)
            if self._stopping.is_set():
                stream.stop()
        return version

    def _recover(self, exc: Exception, version: Any) -> Any:
        """After a failure: relist on 410 Gone, else wait a moment and resume."""
        if self._stopping.is_set():
            return version
        if getattr(exc, "status", None) == 410:
            log.debug("watch of %s: resourceVersion expired, listing again", self._selector)
            return None
        log.warning("watch of pods %s interrupted (%s); resuming", self._selector, exc)
        self._stopping.wait(RECONNECT_DELAY)
        return version
