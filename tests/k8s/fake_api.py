"""A Kubernetes API stand-in (core/v1 Pods and Secrets) over HTTP on 127.0.0.1.

No real cluster can run on this machine or in its CI (see
/work/shared/research/k8s_testing.md), so the project's Kubernetes backend is
tested against this server with the official ``kubernetes`` client, unchanged,
through a kubeconfig. It is deliberately strict, because a lenient fake hides
exactly the bugs a backend has: real reason strings and messages, objects that
validate as the client's pydantic models, monotonic resourceVersions, watch
resume and 410 Expired, server-side watch timeouts, graceful pod deletion,
status separate from spec, and immutable pod specs.

Pods do not run here: :mod:`tests.k8s.kubelet` is a separate API client that
binds and runs them. Faults are injected with thread-safe methods of
:class:`FakeKubeApi`; by default they, like the request counters, ignore the
kubelet's own traffic (recognised by its User-Agent), so a test sees exactly
the failures it asked for and counts only the calls of the code under test.
"""

from __future__ import annotations

import base64
import copy
import hmac
import itertools
import json
import logging
import random
import select
import socket
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import (Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple,
                    TypeVar)
from urllib.parse import parse_qs, urlsplit

from .apimachinery import (KUBELET_USER_AGENT, ApiError, Cause, PatchError, Requirement,
                           already_exists, bad_request, conflict, default_pod, default_secret,
                           expired, fields_match, invalid, json_patch, labels_match, merge_patch,
                           metadata_causes, not_found, now_rfc3339, parse_field_selector,
                           parse_label_selector, pod_causes, pod_spec_update_causes,
                           secret_causes, set_condition, status_object, strategic_merge_patch,
                           success_status)

log = logging.getLogger(__name__)

T = TypeVar("T")
JSON = "application/json"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver's generateName draws from
FieldTerms = List[Tuple[str, str, str]]


@dataclass(frozen=True)
class ResourceKind:
    kind: str
    model: str
    fields: Tuple[str, ...]  # what fieldSelector may name
    subresources: Tuple[str, ...] = ()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


KINDS: Dict[str, ResourceKind] = {
    "pods": ResourceKind(
        "Pod", "V1Pod",
        ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
         "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP",
         "status.nominatedNodeName"),
        ("status", "binding", "log")),
    "secrets": ResourceKind("Secret", "V1Secret", ("metadata.name", "metadata.namespace", "type")),
}


@dataclass
class Event:
    """One write: the object after it (``old``: before it, for MODIFIED)."""

    rv: int
    resource: str
    namespace: str
    type: str
    obj: Dict[str, Any]
    old: Optional[Dict[str, Any]] = None


class _ModelValidator:
    """Checks stored objects against the official client's strict models.

    The real server rejects a malformed body with 400 before storing it; doing
    the same with the client's own models also guarantees that everything this
    server emits deserialises on the client side.
    """

    def __init__(self) -> None:
        try:
            from kubernetes import client
        except ImportError:  # the server still works, unvalidated
            client = None
        self._client = client

    def check(self, resource: str, obj: Dict[str, Any]) -> None:
        if self._client is None:
            return
        kind = KINDS[resource]
        try:
            getattr(self._client, kind.model).from_dict(obj)
        except (ValueError, TypeError) as exc:
            raise bad_request(f'{kind.kind} in version "v1" cannot be handled as a {kind.kind}: '
                              f"{_describe_validation(exc)}") from None


def _describe_validation(exc: Exception) -> str:
    """Field paths and messages only: never the input values (they may be secret)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return type(exc).__name__
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                     for e in errors(include_input=False, include_url=False))


class Registry:
    """The object store with the API's semantics; every method is thread-safe.

    Stored dicts are never mutated after a commit (every write builds a new
    dict), so readers may serialise them without holding the lock.
    """

    def __init__(self, history: int = 10_000, gc_dangling_owners: bool = True) -> None:
        self.cond = threading.Condition()
        self.gc_dangling_owners = gc_dangling_owners
        self.closed = False
        self._objects: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
        self._uids: Dict[str, Tuple[str, str, str]] = {}
        self._events: Deque[Event] = deque(maxlen=history)
        # Like etcd's revision, never 0: "0" means "any version" to list and watch.
        self._rv = 1000
        self._validator = _ModelValidator()

    @property
    def resource_version(self) -> int:
        with self.cond:
            return self._rv

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches get 410."""
        with self.cond:
            self._events.clear()

    # --- reads --------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Dict[str, Any]:
        with self.cond:
            obj = self._objects.get((resource, namespace, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def select(self, resource: str, namespace: Optional[str], labels: Sequence[Requirement] = (),
               fields: FieldTerms = ()) -> Tuple[List[Dict[str, Any]], int]:
        """Matching objects in key order (namespace, name), and the store's resourceVersion."""
        with self.cond:
            found = [obj for (res, ns, _), obj in sorted(self._objects.items())
                     if res == resource and namespace in (None, ns)]
            version = self._rv
        return [o for o in found if labels_match(labels, o) and fields_match(fields, o)], version

    def list(self, resource: str, namespace: Optional[str], labels: Sequence[Requirement],
             fields: FieldTerms, limit: int = 0, token: str = "") -> Dict[str, Any]:
        items, version = self.select(resource, namespace, labels, fields)
        start = _decode_continue(token) if token else None
        if start is not None:
            items = [o for o in items if _key_of(o) > start]
        meta: Dict[str, Any] = {"resourceVersion": str(version)}
        if limit and len(items) > limit:
            meta["continue"] = _encode_continue(_key_of(items[limit - 1]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": KINDS[resource].list_kind, "apiVersion": "v1", "metadata": meta,
                "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                          for o in items]}

    # --- writes -------------------------------------------------------------------------------

    def create(self, resource: str, namespace: str, body: Any) -> Dict[str, Any]:
        obj = self._decode(resource, namespace, body)
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise ApiError(500, "Internal error occurred: resourceVersion should not be set "
                                "on objects to be created", "InternalError")
        with self.cond:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = self._generate_name(resource, namespace, meta["generateName"])
            name = meta.get("name") or ""
            self._prepare_new(resource, namespace, obj)
            self._validate(resource, obj)
            if (resource, namespace, name) in self._objects:
                raise already_exists(resource, name)
            created = self._commit(resource, "ADDED", obj)
            self._collect_if_orphaned(resource, created)
            return created

    def patch(self, resource: str, namespace: str, name: str, subresource: Optional[str],
              content_type: Optional[str], body: Any) -> Dict[str, Any]:
        with self.cond:
            old = self._get(resource, namespace, name)
            return self._update(resource, old, _apply_patch(old, content_type, body), subresource)

    def replace(self, resource: str, namespace: str, name: str, subresource: Optional[str],
                body: Any) -> Dict[str, Any]:
        obj = self._decode(resource, namespace, body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the "
                              f"name on the URL ({name})")
        with self.cond:
            old = self._get(resource, namespace, name)
            if resource == "pods" and not meta.get("resourceVersion"):
                raise invalid(KINDS[resource].kind, name, [Cause(
                    "metadata.resourceVersion", "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update")])
            meta.setdefault("resourceVersion", old["metadata"]["resourceVersion"])
            return self._update(resource, old, obj, subresource)

    def delete(self, resource: str, namespace: str, name: str,
               options: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
        """Delete (pods: gracefully when bound and running); returns (answer, gone now)."""
        with self.cond:
            obj = self._get(resource, namespace, name)
            _check_preconditions(resource, obj, options.get("preconditions") or {})
            result = self._delete(resource, obj, options.get("gracePeriodSeconds"),
                                  options.get("propagationPolicy"))
            gone = self._objects.get((resource, namespace, name)) is not result
        if resource != "pods":
            return success_status(200, {"name": name, "kind": resource,
                                        "uid": obj["metadata"]["uid"]}), True
        return result, gone

    def delete_collection(self, resource: str, namespace: str, labels: Sequence[Requirement],
                          fields: FieldTerms, options: Dict[str, Any]) -> Dict[str, Any]:
        with self.cond:
            victims, _ = self.select(resource, namespace, labels, fields)
            results = [self._delete(resource, obj, options.get("gracePeriodSeconds"),
                                    options.get("propagationPolicy")) for obj in victims]
            version = self._rv
        return {"kind": KINDS[resource].list_kind, "apiVersion": "v1",
                "metadata": {"resourceVersion": str(version)}, "items": results}

    def bind(self, namespace: str, name: str, body: Any) -> Dict[str, Any]:
        """``pods/{name}/binding``: what a scheduler calls to put a pod on a node."""
        node = ((body or {}).get("target") or {}).get("name") if isinstance(body, dict) else None
        if not node:
            raise invalid("Binding", name, [Cause("target.name", "FieldValueRequired",
                                                  "Required value")])
        with self.cond:
            pod = self._get("pods", namespace, name)
            if pod["metadata"].get("deletionTimestamp"):
                raise conflict("pods/binding", name,
                               f"pod {name} is being deleted, cannot be assigned to a host")
            if pod["spec"].get("nodeName"):
                raise conflict("pods/binding", name, f"pod {name} is already assigned to node "
                                                     f"\"{pod['spec']['nodeName']}\"")
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = node
            set_condition(bound.setdefault("status", {}), "PodScheduled", "True")
            self._commit("pods", "MODIFIED", bound, pod)
        return success_status(201)

    # --- watch --------------------------------------------------------------------------------

    def watch_start(self, resource: str, namespace: Optional[str], version: Optional[str],
                    labels: Sequence[Requirement],
                    fields: FieldTerms) -> Tuple[List[Dict[str, Any]], int]:
        """Objects to send as ADDED first, and the resourceVersion to stream from."""
        with self.cond:
            if version in (None, "", "0"):
                return self.select(resource, namespace, labels, fields)
            try:
                start = int(version)
            except ValueError:
                raise bad_request(f'invalid resource version "{version}"') from None
            oldest = self._oldest_retained()
            if start < self._rv and start + 1 < oldest:
                raise expired(start, oldest - 1)
            return [], start

    def wait_events(self, cursor: int, timeout: float,
                    interrupted: Callable[[], bool]) -> Optional[List[Event]]:
        """Events after ``cursor`` (waiting up to ``timeout``); None if they were forgotten."""
        with self.cond:
            if self._rv <= cursor and not interrupted() and not self.closed:
                self.cond.wait(timeout)
            if self._rv <= cursor:
                return []
            oldest = self._oldest_retained()
            if cursor + 1 < oldest:
                return None
            return list(itertools.islice(self._events, cursor + 1 - oldest, None))

    def oldest_version(self) -> int:
        with self.cond:
            return self._oldest_retained() - 1

    def _oldest_retained(self) -> int:
        return self._events[0].rv if self._events else self._rv + 1

    # --- internals (lock held) ----------------------------------------------------------------

    def _get(self, resource: str, namespace: str, name: str) -> Dict[str, Any]:
        obj = self._objects.get((resource, namespace, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _commit(self, resource: str, kind: str, obj: Dict[str, Any],
                old: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        key = (resource, meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._objects.pop(key, None)
            self._uids.pop(meta["uid"], None)
        else:
            self._objects[key] = obj
            self._uids[meta["uid"]] = key
        self._events.append(Event(self._rv, resource, meta["namespace"], kind, obj, old))
        self.cond.notify_all()
        return obj

    def _decode(self, resource: str, namespace: str, body: Any) -> Dict[str, Any]:
        kind = KINDS[resource].kind
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, "v1"):
            raise bad_request(f'{body.get("kind")} in version "{body.get("apiVersion")}" '
                              f"cannot be handled as a {kind}")
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        return copy.deepcopy(body)

    def _generate_name(self, resource: str, namespace: str, base: str) -> str:
        for _ in range(8):  # the apiserver retries a taken generated name a few times
            name = base[:58] + "".join(random.choice(NAME_ALPHABET) for _ in range(5))
            if (resource, namespace, name) not in self._objects:
                return name
        raise already_exists(resource, base)

    def _prepare_new(self, resource: str, namespace: str, obj: Dict[str, Any]) -> None:
        meta = obj["metadata"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                    "managedFields"):
            meta.pop(key, None)
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        obj.update(kind=KINDS[resource].kind, apiVersion="v1")
        if resource == "pods":
            default_pod(obj)
        else:
            default_secret(obj)

    def _validate(self, resource: str, obj: Dict[str, Any],
                  extra: Sequence[Cause] = ()) -> None:
        causes = list(extra) + metadata_causes(obj["metadata"])
        if resource == "pods":
            causes += pod_causes(obj, _parse_quantity)
        else:
            causes += secret_causes(obj)
        if causes:
            raise invalid(KINDS[resource].kind, obj["metadata"].get("name") or "", causes)
        self._validator.check(resource, obj)

    def _update(self, resource: str, old: Dict[str, Any], new: Dict[str, Any],
                subresource: Optional[str]) -> Dict[str, Any]:
        name = old["metadata"]["name"]
        asked = (new.get("metadata") or {}).get("resourceVersion")
        if asked not in (None, old["metadata"]["resourceVersion"]):
            raise conflict(resource, name, "the object has been modified; please apply your "
                                           "changes to the latest version and try again")
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = copy.deepcopy(new.get("status") or {})
            extra: List[Cause] = []
        else:
            result = copy.deepcopy(new)
            _restore_system_fields(old, result)
            extra = self._normalise_update(resource, old, result)
        self._validate(resource, result, extra)
        if result == old:
            return old  # no change: no new resourceVersion, no event (as the real server)
        return self._commit(resource, "MODIFIED", result, old)

    @staticmethod
    def _normalise_update(resource: str, old: Dict[str, Any],
                          result: Dict[str, Any]) -> List[Cause]:
        """Secrets fold stringData; pods keep their status and may change little of the spec."""
        if resource != "pods":
            default_secret(result)
            return []
        result["status"] = copy.deepcopy(old.get("status") or {})
        return pod_spec_update_causes(old, result)

    def _delete(self, resource: str, obj: Dict[str, Any], grace: Optional[int],
                policy: Optional[str]) -> Dict[str, Any]:
        if resource == "pods":
            seconds = _grace_seconds(obj, grace)
            if seconds > 0 and obj["spec"].get("nodeName") and \
                    (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return self._mark_terminating(obj, seconds)
        return self._remove(resource, obj, policy)

    def _mark_terminating(self, pod: Dict[str, Any], grace: int) -> Dict[str, Any]:
        current = pod["metadata"].get("deletionGracePeriodSeconds")
        if pod["metadata"].get("deletionTimestamp") and current is not None and grace >= current:
            return pod
        terminating = copy.deepcopy(pod)
        moment = datetime.now(timezone.utc) + timedelta(seconds=grace)
        terminating["metadata"].update(deletionTimestamp=now_rfc3339(moment),
                                       deletionGracePeriodSeconds=grace)
        return self._commit("pods", "MODIFIED", terminating, pod)

    def _remove(self, resource: str, obj: Dict[str, Any], policy: Optional[str]) -> Dict[str, Any]:
        final = copy.deepcopy(obj)
        if resource == "pods":
            final["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            final["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        self._commit(resource, "DELETED", final, obj)
        self._collect_dependents(final, policy)
        return final

    def _collect_dependents(self, owner: Dict[str, Any], policy: Optional[str]) -> None:
        """Background garbage collection: dependents go once all their owners are gone."""
        uid, namespace = owner["metadata"]["uid"], owner["metadata"]["namespace"]
        for (resource, ns, _), dependent in list(self._objects.items()):
            refs = dependent["metadata"].get("ownerReferences") or []
            if ns != namespace or not any(r.get("uid") == uid for r in refs):
                continue
            current = self._objects.get(_key_of_resource(resource, dependent))
            if current is not dependent:
                continue  # already removed by an earlier cascade
            if policy == "Orphan":
                self._orphan(resource, dependent, uid)
            elif all(self._owner_gone(r, namespace) for r in refs):
                self._delete(resource, dependent, None, None)

    def _orphan(self, resource: str, dependent: Dict[str, Any], owner_uid: str) -> None:
        orphaned = copy.deepcopy(dependent)
        refs = [r for r in orphaned["metadata"]["ownerReferences"] if r.get("uid") != owner_uid]
        if refs:
            orphaned["metadata"]["ownerReferences"] = refs
        else:
            del orphaned["metadata"]["ownerReferences"]
        self._commit(resource, "MODIFIED", orphaned, dependent)

    def _owner_gone(self, ref: Dict[str, Any], namespace: str) -> bool:
        """Only kinds this server stores can be known to be gone; others are assumed alive."""
        if ref.get("apiVersion") != "v1" or ref.get("kind") not in ("Pod", "Secret"):
            return False
        key = self._uids.get(ref.get("uid", ""))
        return key is None or key[1] != namespace

    def _collect_if_orphaned(self, resource: str, obj: Dict[str, Any]) -> None:
        """A new object whose every owner is already gone is collected, as the real GC does."""
        refs = obj["metadata"].get("ownerReferences") or []
        namespace = obj["metadata"]["namespace"]
        if self.gc_dangling_owners and refs and all(self._owner_gone(r, namespace) for r in refs):
            log.debug("collecting %s %s/%s: its owners do not exist", resource, namespace,
                      obj["metadata"]["name"])
            self._delete(resource, obj, None, None)


def _key_of(obj: Dict[str, Any]) -> Tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _key_of_resource(resource: str, obj: Dict[str, Any]) -> Tuple[str, str, str]:
    return (resource,) + _key_of(obj)


def _encode_continue(key: Tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> Tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(namespace), str(name)
    except (ValueError, TypeError):
        raise bad_request("continue key is not valid") from None


def _parse_quantity(text: Any) -> Any:
    from kubernetes.utils import parse_quantity

    return parse_quantity(text)


def _grace_seconds(pod: Dict[str, Any], given: Optional[int]) -> int:
    seconds = given if given is not None else pod["spec"].get("terminationGracePeriodSeconds", 30)
    return 1 if seconds is None or seconds < 0 else int(seconds)


def _check_preconditions(resource: str, obj: Dict[str, Any], pre: Dict[str, Any]) -> None:
    meta, name = obj["metadata"], obj["metadata"]["name"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        if pre.get(key) and pre[key] != meta[key]:
            raise conflict(resource, name, f"Precondition failed: {label} in precondition: "
                                           f"{pre[key]}, {label} in object meta: {meta[key]}")


def _restore_system_fields(old: Dict[str, Any], new: Dict[str, Any]) -> None:
    new["kind"], new["apiVersion"] = old["kind"], old["apiVersion"]
    meta = new.setdefault("metadata", {})
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds", "generateName", "resourceVersion"):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)


def _apply_patch(old: Dict[str, Any], content_type: Optional[str], body: Any) -> Dict[str, Any]:
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("application/merge-patch+json", "application/strategic-merge-patch+json") \
            and not isinstance(body, dict):
        raise bad_request("the body of the request was in an unknown format: a merge patch "
                          "must be a JSON object")
    try:
        if media == "application/json-patch+json":
            return json_patch(old, body)
        if media == "application/merge-patch+json":
            return merge_patch(old, body)
        if media == "application/strategic-merge-patch+json":
            return strategic_merge_patch(old, body)
    except PatchError as exc:
        raise ApiError(422, "the server rejected our request due to an error in our request: "
                            f"{exc}", "Invalid") from None
    raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                        "types include: application/json-patch+json, "
                        "application/merge-patch+json, application/apply-patch+yaml",
                   "UnsupportedMediaType")


def translate(event: Event, resource: str, namespace: Optional[str],
              labels: Sequence[Requirement], fields: FieldTerms) -> Optional[Tuple[str, Dict]]:
    """What a filtered watch sees of an event: an object leaving the selection is DELETED."""
    if event.resource != resource or namespace not in (None, event.namespace):
        return None

    def selected(obj: Optional[Dict[str, Any]]) -> bool:
        return obj is not None and labels_match(labels, obj) and fields_match(fields, obj)

    now = selected(event.obj)
    if event.type != "MODIFIED":
        return (event.type, event.obj) if now else None
    before = selected(event.old)
    if now:
        return ("MODIFIED" if before else "ADDED"), event.obj
    return ("DELETED", event.obj) if before else None


# --- fault injection and bookkeeping ----------------------------------------------------------

@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (counted before faults and authentication)."""

    verb: str
    resource: str
    namespace: Optional[str]
    name: Optional[str]
    watch: bool
    kubelet: bool


@dataclass
class _Rule:
    verb: str
    resource: str
    remaining: int
    include_kubelet: bool
    code: int = 500
    reason: Optional[str] = None
    message: Optional[str] = None
    retry_after: Optional[float] = None
    seconds: float = 0.0
    hold: Optional["Hold"] = None

    def matches(self, route: "Route", kubelet: bool) -> bool:
        return self.remaining > 0 and (self.include_kubelet or not kubelet) and \
            self.verb in ("*", route.verb) and self.resource in ("*", route.resource)


class Hold:
    """One request held before it changes anything, until the test releases it."""

    HOLD_TIMEOUT = 60.0  # a test that forgets to release must not hang the server

    def __init__(self) -> None:
        self._arrived = threading.Event()
        self._released = threading.Event()

    def wait_arrived(self, timeout: float = 30.0) -> None:
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"no held request arrived within {timeout} s")

    def release(self) -> None:
        self._released.set()

    def block(self) -> None:
        self._arrived.set()
        self._released.wait(self.HOLD_TIMEOUT)


@dataclass(eq=False)
class _WatchState:
    resource: str
    kubelet: bool
    drop: Optional[str] = None  # "clean" or "abrupt"

    def interrupted(self) -> bool:
        return self.drop is not None


@dataclass
class Route:
    verb: str
    resource: str = ""
    namespace: Optional[str] = None
    name: Optional[str] = None
    subresource: Optional[str] = None
    payload: Any = None  # non-resource answers (discovery, version, health)

    @property
    def base(self) -> str:
        return self.resource.split("/")[0]


_DEFAULT_MESSAGES = {
    403: '{resource} "{name}" is forbidden: exceeded quota: compute-resources, requested: '
         "pods=1, used: pods=10, limited: pods=10",
    409: 'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
         "please apply your changes to the latest version and try again",
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected failure",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be "
         "processing the request",
}


class FakeKubeApi:
    """The stand-in server: start(), a ``url``, fault hooks and request counters.

    ``token``: if set, every resource request must carry ``Authorization: Bearer <token>``.
    ``history``: events kept for watch resume; older resourceVersions get 410 Expired.
    ``bookmark_interval``: seconds between BOOKMARK events on watches that allow them
    (one is also sent just before a watch's timeout ends, as kube-apiserver does).
    ``default_watch_timeout``: server-side end of watches sent without ``timeoutSeconds``.
    ``log_source(namespace, name)``: path of a pod's log file, for ``pods/{name}/log``.
    """

    def __init__(self, *, token: Optional[str] = None, history: int = 10_000,
                 bookmark_interval: float = 60.0, default_watch_timeout: float = 1800.0,
                 gc_dangling_owners: bool = True,
                 log_source: Optional[Callable[[str, str], Optional[Path]]] = None) -> None:
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.log_source = log_source
        self.registry = Registry(history, gc_dangling_owners)
        self._lock = threading.Lock()
        self._faults: List[_Rule] = []
        self._delays: List[_Rule] = []
        self._expiries: List[_Rule] = []
        self._holds: List[_Rule] = []
        self._requests: List[RequestRecord] = []
        self._served: Counter = Counter()  # injected errors answered, per (verb, resource, code)
        self._watches: Set[_WatchState] = set()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "FakeKubeApi":
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-kube-apiserver", daemon=True)
        self._thread.start()
        log.debug("fake kube-apiserver on %s", self.url)
        return self

    def stop(self) -> None:
        """End watches cleanly, close every connection, join every server thread."""
        if self._server is None:
            return
        self.registry.close()
        self._server.shutdown()
        assert self._thread is not None
        self._thread.join()
        threads = self._server.close_connections()
        self._server.server_close()
        for thread in threads:
            thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "FakeKubeApi":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- fault hooks --------------------------------------------------------------------------

    def fail_next(self, verb: str, resource: str, count: int = 1, *, code: int = 500,
                  reason: Optional[str] = None, message: Optional[str] = None,
                  retry_after: Optional[float] = None, include_kubelet: bool = False) -> None:
        """Answer the next ``count`` matching requests with an error and change nothing.

        ``verb``: get, list, watch, create, update, patch, delete, deletecollection or
        "*"; ``resource``: "pods", "pods/status", "pods/binding", "pods/log",
        "secrets" or "*". Defaults per code: 403 is a quota refusal ("exceeded
        quota"), 429 sends ``Retry-After`` (``retry_after`` seconds, default 1).
        """
        with self._lock:
            self._faults.append(_Rule(verb, resource, count, include_kubelet, code, reason,
                                      message, retry_after))

    def set_delay(self, seconds: float, verb: str = "*", resource: str = "*", *,
                  include_kubelet: bool = False) -> None:
        """Delay matching answers by ``seconds`` (0 removes the rule); watches: their start."""
        with self._lock:
            self._delays = [d for d in self._delays if (d.verb, d.resource, d.include_kubelet)
                            != (verb, resource, include_kubelet)]
            if seconds > 0:
                self._delays.append(_Rule(verb, resource, 1, include_kubelet, seconds=seconds))

    def hold_next(self, verb: str, resource: str) -> Hold:
        """Hold the next matching request (not the kubelet's) before it is served."""
        hold = Hold()
        with self._lock:
            self._holds.append(_Rule(verb, resource, 1, False, hold=hold))
        return hold

    def expire_next_watch(self, count: int = 1, resource: str = "pods", *,
                          include_kubelet: bool = False) -> None:
        """The next ``count`` watches answer one ERROR event, 410 Expired, and end."""
        with self._lock:
            self._expiries.append(_Rule("watch", resource, count, include_kubelet))

    def drop_watches(self, *, abrupt: bool = True, resource: Optional[str] = None,
                     include_kubelet: bool = False) -> int:
        """End open watches now; ``abrupt``: reset the connection mid-stream, else end the
        chunked stream cleanly (what a server restart or a load balancer looks like).
        Returns how many were dropped."""
        with self.registry.cond:
            with self._lock:
                chosen = [w for w in self._watches
                          if (include_kubelet or not w.kubelet) and w.drop is None
                          and resource in (None, w.resource)]
                for watch in chosen:
                    watch.drop = "abrupt" if abrupt else "clean"
            self.registry.cond.notify_all()
        return len(chosen)

    def compact(self) -> None:
        """Forget event history: a watch from any older resourceVersion gets 410 Expired."""
        self.registry.compact()

    # --- observation --------------------------------------------------------------------------

    def requests(self, *, include_kubelet: bool = False) -> List[RequestRecord]:
        with self._lock:
            return [r for r in self._requests if include_kubelet or not r.kubelet]

    def counts(self, *, include_kubelet: bool = False) -> Counter:
        """Requests per (verb, resource, watch); verb "watch" for watches, as in audit logs."""
        return Counter((r.verb, r.resource, r.watch)
                       for r in self.requests(include_kubelet=include_kubelet))

    def count(self, verb: Optional[str] = None, resource: Optional[str] = None, *,
              watch: Optional[bool] = None, namespace: Optional[str] = None,
              include_kubelet: bool = False) -> int:
        """How many requests matched; None matches anything."""
        return sum(1 for r in self.requests(include_kubelet=include_kubelet)
                   if verb in (None, r.verb) and resource in (None, r.resource)
                   and watch in (None, r.watch) and namespace in (None, r.namespace))

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()

    def open_watches(self, resource: Optional[str] = None, *,
                     include_kubelet: bool = False) -> int:
        with self._lock:
            return sum(1 for w in self._watches if (include_kubelet or not w.kubelet)
                       and w.drop is None and resource in (None, w.resource))

    def get_object(self, resource: str, namespace: str, name: str) -> Optional[Dict[str, Any]]:
        """The stored object (a copy), straight from the store: no request, not counted."""
        with self.registry.cond:
            obj = self.registry._objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource: str, namespace: Optional[str] = None) -> List[Dict[str, Any]]:
        return copy.deepcopy(self.registry.select(resource, namespace)[0])

    def delete_object(self, resource: str, namespace: str, name: str) -> bool:
        """Delete at once (grace 0) as another client would, straight in the store: no
        request is counted or faulted, so a test's own deletions never take the faults it
        injected for the code under test. Watchers see DELETED. False if it was not there."""
        try:
            self.registry.delete(resource, namespace, name, {"gracePeriodSeconds": 0})
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return True

    def faults_served(self, verb: Optional[str] = None, resource: Optional[str] = None,
                      code: Optional[int] = None) -> int:
        """How many injected errors (``fail_next``) were answered; None matches anything."""
        with self._lock:
            return sum(n for (v, r, c), n in self._served.items()
                       if verb in (None, v) and resource in (None, r) and code in (None, c))

    @property
    def resource_version(self) -> int:
        return self.registry.resource_version

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
        """Re-check ``predicate`` whenever the store changes (at least twice a second)."""
        deadline = time.monotonic() + timeout
        cond = self.registry.cond
        while True:
            seen = self.registry.resource_version
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout} s waiting for "
                                   f"{what or predicate}")
            with cond:
                if self.registry.resource_version == seen:
                    cond.wait(min(remaining, 0.5))

    # --- used by the request handler ----------------------------------------------------------

    def _note(self, route: Route, kubelet: bool) -> None:
        with self._lock:
            self._requests.append(RequestRecord(route.verb, route.resource, route.namespace,
                                                route.name, route.verb == "watch", kubelet))

    def _authorize(self, header: Optional[str]) -> None:
        if self.token and not hmac.compare_digest(header or "", f"Bearer {self.token}"):
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _delay(self, route: Route, kubelet: bool) -> float:
        with self._lock:
            return max((d.seconds for d in self._delays if d.matches(route, kubelet)), default=0)

    def _take(self, rules: List[_Rule], route: Route, kubelet: bool) -> Optional[_Rule]:
        with self._lock:
            rule = next((r for r in rules if r.matches(route, kubelet)), None)
            if rule is not None:
                rule.remaining -= 1
                rules[:] = [r for r in rules if r.remaining > 0]
            return rule

    def _fault(self, route: Route, kubelet: bool, body: Any) -> Optional[ApiError]:
        rule = self._take(self._faults, route, kubelet)
        if rule is None:
            return None
        with self._lock:
            self._served[(route.verb, route.resource, rule.code)] += 1
        name = route.name or _body_name(body)
        message = rule.message or _DEFAULT_MESSAGES.get(rule.code, "injected failure")
        message = message.format(resource=route.base, name=name)
        headers, details = {}, {"name": name, "kind": route.base}
        if rule.code == 429 or rule.retry_after is not None:
            seconds = rule.retry_after if rule.retry_after is not None else 1
            headers["Retry-After"] = str(int(seconds) if float(seconds).is_integer() else seconds)
            details["retryAfterSeconds"] = int(seconds)
        return ApiError(rule.code, message, rule.reason, details, headers)

    def _open_watch(self, route: Route, kubelet: bool) -> Tuple[_WatchState, bool]:
        expire = self._take(self._expiries, route, kubelet) is not None
        state = _WatchState(route.base, kubelet)
        with self._lock:
            self._watches.add(state)
        self._wake_waiters()
        return state, expire

    def _close_watch(self, state: _WatchState) -> None:
        with self._lock:
            self._watches.discard(state)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Let wait_for() re-check at once (open_watches() changed, not the store)."""
        with self.registry.cond:
            self.registry.cond.notify_all()

    def _route(self, method: str, path: str, query: Dict[str, str]) -> Route:
        payload = self._non_resource(path) if method == "GET" else None
        if payload is not None:
            return Route("get", payload=payload)
        return _resource_route(method, path, query)

    def _non_resource(self, path: str) -> Any:
        if path in ("/healthz", "/livez", "/readyz"):
            return b"ok"
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                    "gitCommit": "0" * 40, "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return _resource_list()
        return None

    def _serve(self, route: Route, query: Dict[str, str], body: Any,
               content_type: Optional[str]) -> Tuple[int, Any]:
        reg, res, ns, name = self.registry, route.base, route.namespace, route.name
        if route.verb == "list":
            return 200, reg.list(res, ns, *_selectors(res, query), _int(query, "limit"),
                                 query.get("continue", ""))
        if route.verb == "get" and route.subresource == "log":
            return 200, self._pod_log(ns or "", name or "", query)
        if route.verb == "get":
            return 200, reg.get(res, ns or "", name or "")
        if route.verb == "create" and route.subresource == "binding":
            return 201, reg.bind(ns or "", name or "", body)
        if route.verb == "create":
            return 201, reg.create(res, ns or "", body)
        if route.verb == "patch":
            return 200, reg.patch(res, ns or "", name or "", route.subresource, content_type, body)
        if route.verb == "update":
            return 200, reg.replace(res, ns or "", name or "", route.subresource, body)
        if route.verb == "delete":
            answer, gone = reg.delete(res, ns or "", name or "", _delete_options(query, body))
            return (200 if gone else 202), answer
        return 200, reg.delete_collection(res, ns or "", *_selectors(res, query),
                                          _delete_options(query, body))

    def _pod_log(self, namespace: str, name: str, query: Dict[str, str]) -> bytes:
        pod = self.registry.get("pods", namespace, name)
        path = self.log_source(namespace, name) if self.log_source else None
        if path is None or not Path(path).exists():
            container = pod["spec"]["containers"][0]["name"]
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              "ContainerCreating")
        data = Path(path).read_bytes()
        tail = _int(query, "tailLines")
        if tail:
            data = b"".join(data.splitlines(keepends=True)[-tail:])
        limit = _int(query, "limitBytes")
        return data[:limit] if limit else data


def _body_name(body: Any) -> str:
    meta = body.get("metadata") or {} if isinstance(body, dict) else {}
    return meta.get("name") or meta.get("generateName") or ""


def _int(query: Dict[str, str], key: str) -> int:
    try:
        return int(query.get(key) or 0)
    except ValueError:
        raise bad_request(f"invalid value for {key}: {query[key]!r}") from None


def _selectors(resource: str, query: Dict[str, str]) -> Tuple[List[Requirement], FieldTerms]:
    return (parse_label_selector(query.get("labelSelector")),
            parse_field_selector(query.get("fieldSelector"), KINDS[resource].fields))


def _delete_options(query: Dict[str, str], body: Any) -> Dict[str, Any]:
    options = dict(body) if isinstance(body, dict) else {}
    if options.get("gracePeriodSeconds") is None and "gracePeriodSeconds" in query:
        options["gracePeriodSeconds"] = _int(query, "gracePeriodSeconds")
    if not options.get("propagationPolicy") and query.get("propagationPolicy"):
        options["propagationPolicy"] = query["propagationPolicy"]
    return options


def _resource_route(method: str, path: str, query: Dict[str, str]) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
    rest, namespace = parts[2:], None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    kind = KINDS.get(rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if kind is None or len(rest) > 3 or (sub and sub not in kind.subresources) or \
            (name and namespace is None):
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
    verb = _verb(method, name, sub, namespace, query)
    return Route(verb, f"{rest[0]}/{sub}" if sub else rest[0], namespace, name, sub)


_ITEM_VERBS = {
    None: {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"},
    "status": {"GET": "get", "PUT": "update", "PATCH": "patch"},
    "binding": {"POST": "create"},
    "log": {"GET": "get"},
}


def _verb(method: str, name: Optional[str], sub: Optional[str], namespace: Optional[str],
          query: Dict[str, str]) -> str:
    if name is None:
        if method == "GET":
            return "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
        verbs = {"POST": "create", "DELETE": "deletecollection"} if namespace else {}
    else:
        verbs = _ITEM_VERBS[sub]
    if method not in verbs:
        raise ApiError(405, "the server does not allow this method on the requested resource",
                       "MethodNotAllowed")
    return verbs[method]


def _resource_list() -> Dict[str, Any]:
    every = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    def entry(name: str, kind: str, verbs: List[str], **extra: Any) -> Dict[str, Any]:
        return {"name": name, "singularName": extra.pop("singular", ""), "namespaced": True,
                "kind": kind, "verbs": verbs, **extra}

    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        entry("pods", "Pod", every, singular="pod", shortNames=["po"], categories=["all"]),
        entry("pods/binding", "Binding", ["create"]),
        entry("pods/log", "Pod", ["get"]),
        entry("pods/status", "Pod", ["get", "patch", "update"]),
        entry("secrets", "Secret", every, singular="secret"),
    ]}


# --- HTTP -------------------------------------------------------------------------------------

class _BookmarkClock:
    """When a watch that allows bookmarks gets one: after ``interval`` seconds without an
    event, and once just before its timeout, as kube-apiserver's watch cache does."""

    def __init__(self, interval: float, deadline: float) -> None:
        self.interval, self.deadline = interval, deadline
        self.last = time.monotonic()
        self.final_sent = False

    def due(self, sent_events: bool) -> bool:
        now = time.monotonic()
        if sent_events:
            self.last = now
            return False
        if not self.final_sent and self.deadline - now < 0.6:
            self.final_sent = True
        elif now - self.last < self.interval:
            return False
        self.last = now
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: FakeKubeApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self._open: Dict[socket.socket, threading.Thread] = {}
        self._open_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open[connection] = threading.current_thread()

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.pop(connection, None)

    def close_connections(self) -> List[threading.Thread]:
        """Shut down every open connection so each handler thread returns; the threads."""
        with self._open_lock:
            opened = list(self._open.items())
        for connection, _ in opened:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return [thread for _, thread in opened]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("fake kube-apiserver: connection from %s failed", client_address,
                  exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver/1.32"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        log.debug("fake kube-apiserver: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._read_body()
        kubelet = self.headers.get("User-Agent", "").startswith(KUBELET_USER_AGENT)
        try:
            route = api._route(method, url.path, query)
            if route.payload is not None:
                self._send(200, route.payload)
                return
            api._note(route, kubelet)
            api._authorize(self.headers.get("Authorization"))
            body = _decode_body(raw)
            self._pause(api._delay(route, kubelet))
            held = api._take(api._holds, route, kubelet)
            if held is not None:
                held.hold.block()
            fault = api._fault(route, kubelet, body)
            if fault is not None:
                raise fault
            if route.verb == "watch":
                self._watch(route, query, kubelet)
                return
            self._send(*api._serve(route, query, body, self.headers.get("Content-Type")))
        except ApiError as err:
            self._send(err.code, err.status(), err.headers)

    @staticmethod
    def _pause(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)  # the injected latency itself, not a synchronisation

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> None:
        if isinstance(payload, bytes):
            data, content_type = payload, "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), JSON
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    # --- watch --------------------------------------------------------------------------------

    def _watch(self, route: Route, query: Dict[str, str], kubelet: bool) -> None:
        api = self.server.api
        labels, fields = _selectors(route.base, query)
        timeout = float(query.get("timeoutSeconds") or api.default_watch_timeout)
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        state, expire = api._open_watch(route, kubelet)
        try:
            self.send_response(200)
            self.send_header("Content-Type", JSON)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if expire:
                self._event("ERROR", expired(query.get("resourceVersion") or "0",
                                             api.registry.resource_version).status())
            else:
                self._stream(route, query.get("resourceVersion"), labels, fields,
                             (time.monotonic() + timeout, bookmarks), state)
            if state.drop == "abrupt":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            else:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client went away
        finally:
            api._close_watch(state)

    def _stream(self, route: Route, version: Optional[str], labels: List[Requirement],
                fields: FieldTerms, limits: Tuple[float, bool], state: _WatchState) -> None:
        registry, (deadline, bookmarks) = self.server.api.registry, limits
        try:
            initial, cursor = registry.watch_start(route.base, route.namespace, version,
                                                   labels, fields)
        except ApiError as err:
            self._event("ERROR", err.status())
            return
        for obj in initial:
            self._event("ADDED", obj)
        clock = _BookmarkClock(self.server.api.bookmark_interval, deadline)
        for events in self._batches(registry, cursor, deadline, state):
            if events is None:
                self._event("ERROR", expired(cursor, registry.oldest_version()).status())
                return
            for event in events:
                cursor = event.rv
                seen = translate(event, route.base, route.namespace, labels, fields)
                if seen is not None:
                    self._event(*seen)
            if bookmarks and clock.due(bool(events)):
                self._event("BOOKMARK", {"kind": KINDS[route.base].kind, "apiVersion": "v1",
                                         "metadata": {"resourceVersion": str(cursor)}})

    def _batches(self, registry: Registry, cursor: int, deadline: float,
                 state: _WatchState) -> Iterator[Optional[List[Event]]]:
        """Event batches until the deadline, a drop, the server's stop or the client leaving."""
        while not state.interrupted() and not registry.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            events = registry.wait_events(cursor, min(remaining, 0.5), state.interrupted)
            if state.interrupted() or registry.closed:
                return
            if events is None:
                yield None
                return
            if events:
                cursor = events[-1].rv
            elif self._peer_closed():
                return
            yield events

    def _event(self, kind: str, obj: Dict[str, Any]) -> None:
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


__all__ = ["ApiError", "Event", "FakeKubeApi", "KINDS", "KUBELET_USER_AGENT", "Registry",
           "RequestRecord", "Route", "set_condition", "status_object"]
