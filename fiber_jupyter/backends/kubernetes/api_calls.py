"""Calling the Kubernetes API the way a well-behaved controller does.

Throttling (429, with its Retry-After) and server errors (5xx) are retried
with capped exponential backoff; anything else is the caller's to handle.
A quota refusal (403 "exceeded quota") is not an error of the request: the
pod may fit later, so creation retries it too, and says it is waiting.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE = frozenset({429, 500, 502, 503, 504})
FIRST_DELAY = 0.5
MAX_DELAY = 30.0


class Closing(Exception):
    """The backend is closing: a retry loop stopped waiting."""


def retry_after(exc: Any) -> Optional[float]:
    """Seconds the server asked us to wait (the Retry-After header), if it said."""
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def is_quota_refusal(exc: Any) -> bool:
    return getattr(exc, "status", None) == 403 and "exceeded quota" in str(getattr(exc, "body", ""))


def describe(exc: Any) -> str:
    """"403 Forbidden: pods is forbidden: ..." from an ApiException, else str(exc)."""
    status = getattr(exc, "status", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    return f"{status} {getattr(exc, 'reason', '')}: {_message(exc)}".strip()


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    try:
        return json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(body or "").strip()


def call(request: Callable[[], T], closing: threading.Event, attempts: int = 8,
         also_retry: Callable[[Any], bool] = lambda exc: False,
         on_retry: Callable[[Any], None] = lambda exc: None) -> T:
    """``request()``, retried on throttling, server errors and ``also_retry`` errors."""
    from kubernetes.client.exceptions import ApiException

    delay = FIRST_DELAY
    for attempt in range(attempts):
        try:
            return request()
        except ApiException as exc:
            retryable = exc.status in RETRYABLE or also_retry(exc)
            if not retryable or attempt == attempts - 1:
                raise
            on_retry(exc)
            wait = retry_after(exc) if retry_after(exc) is not None else delay
            log.debug("Kubernetes API said %s; retrying in %.1f s", exc.status, wait)
            delay = min(delay * 2, MAX_DELAY)
            if closing.wait(wait):
                raise Closing() from exc
    raise AssertionError("unreachable")
