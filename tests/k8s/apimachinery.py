"""Pure helpers of the fake API server: errors, selectors, patches and validation.

They mirror k8s.io/apimachinery closely enough that code which works against
them has a fair chance of working against a real kube-apiserver: the same
reason strings and messages, the same selector grammar, the same patch
content types. Nothing here touches the network or keeps state.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

KUBELET_USER_AGENT = "process-kubelet"  # how the fake server tells the kubelet's traffic apart

# --- errors -----------------------------------------------------------------------------------

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
    422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the server answers with a ``Status`` object, as kube-apiserver does."""

    def __init__(self, code: int, message: str, reason: Optional[str] = None,
                 details: Optional[Dict[str, Any]] = None,
                 headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code) or HTTPStatus(code).phrase.replace(" ", "")
        self.details = details
        self.headers = headers or {}

    def status(self) -> Dict[str, Any]:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str,
                  details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A ``v1.Status`` failure, field for field as the real server writes it."""
    status: Dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason,
                              "code": code}
    if details is not None:
        status["details"] = details
    return status


def success_status(code: int = 200, details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    status: Dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": code}
    if details is not None:
        status["details"] = details
    return status


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, f'{resource} "{name}" not found', "NotFound",
                    {"name": name, "kind": resource})


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(409, f'{resource} "{name}" already exists', "AlreadyExists",
                    {"name": name, "kind": resource})


def conflict(resource: str, name: str, why: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {resource} "{name}": {why}',
                    "Conflict", {"name": name, "kind": resource})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def expired(requested: Any, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", "Expired")


@dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid answer."""

    field: str
    type: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"


def invalid(kind: str, name: str, causes: Sequence[Cause]) -> ApiError:
    """422 Invalid, message formatted like apimachinery's ``NewInvalid``."""
    listed = [c.message for c in causes]
    text = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    return ApiError(422, f'{kind} "{name}" is invalid: {text}', "Invalid", {
        "name": name, "kind": kind,
        "causes": [{"reason": c.type, "message": c.detail, "field": c.field} for c in causes]})


def now_rfc3339(moment: Optional[datetime] = None) -> str:
    """Timestamps as the API writes them: UTC, whole seconds, ``Z``."""
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- names and labels -------------------------------------------------------------------------

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
SUBDOMAIN_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{DNS1123_SUBDOMAIN}')")
LABEL_ERROR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{DNS1123_LABEL}')")
LABEL_VALUE_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '({QUALIFIED_NAME})?')")


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and re.fullmatch(DNS1123_SUBDOMAIN, name) is not None


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and re.fullmatch(DNS1123_LABEL, name) is not None


def is_qualified_key(key: str) -> bool:
    """A label or annotation key: an optional DNS-subdomain prefix, a 63-character name."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not is_subdomain(prefix):
        return False
    return len(name) <= 63 and re.fullmatch(QUALIFIED_NAME, name) is not None


def is_label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and \
        re.fullmatch(f"({QUALIFIED_NAME})?", value) is not None


# --- selectors --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: Tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


def _split_top_level(text: str) -> List[str]:
    """Commas separate requirements, except inside ``in (a,b)`` sets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_label_selector(text: Optional[str]) -> List[Requirement]:
    """``labelSelector`` grammar: =, ==, !=, in, notin, exists and !key, comma-joined."""
    if not text or not text.strip():
        return []
    return [_requirement(part) for part in _split_top_level(text)]


def _requirement(part: str) -> Requirement:
    match = re.fullmatch(r"!\s*([^\s=!(),]+)", part)
    if match:
        return Requirement(_checked_key(match.group(1), part), "!")
    match = re.fullmatch(r"([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)", part)
    if match:
        values = tuple(v.strip() for v in match.group(3).split(","))
        if values == ("",):
            raise bad_request(f"unable to parse requirement: for 'in', 'notin' operators, "
                              f"values set can't be empty: {part}")
        return Requirement(_checked_key(match.group(1), part),
                           "in" if match.group(2) == "in" else "notin",
                           tuple(_checked_value(v, part) for v in values))
    match = re.fullmatch(r"([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)", part)
    if match:
        op = "!=" if match.group(2) == "!=" else "="
        return Requirement(_checked_key(match.group(1), part), op,
                           (_checked_value(match.group(3), part),))
    if re.fullmatch(r"[^\s=!(),]+", part):
        return Requirement(_checked_key(part, part), "exists")
    raise bad_request(f"unable to parse requirement: found '{part}', expected: "
                      "identifier, '!', 'in', 'notin', '=', '==' or '!='")


def _checked_key(key: str, part: str) -> str:
    if not is_qualified_key(key):
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\": "
                          f"name part must consist of alphanumeric characters ({part})")
    return key


def _checked_value(value: str, part: str) -> str:
    if not is_label_value(value):
        raise bad_request(f"unable to parse requirement: values[0][{part}]: Invalid value: "
                          f"\"{value}\": {LABEL_VALUE_ERROR}")
    return value


def labels_match(requirements: Sequence[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def parse_field_selector(text: Optional[str],
                         supported: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``fieldSelector``: ``field=value``, ``==`` and ``!=``, for the fields a kind supports."""
    if not text or not text.strip():
        return []
    terms = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"([A-Za-z0-9.\[\]'/_-]+)\s*(==|=|!=)\s*(.*)", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.groups()
        if field not in supported:
            raise bad_request(f'field label not supported: {field}')
        terms.append((field, "!=" if op == "!=" else "=", value))
    return terms


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def fields_match(terms: Sequence[Tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    return all((field_value(obj, f) == v) == (op == "=") for f, op, v in terms)


# --- patches ----------------------------------------------------------------------------------

MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort",
    "conditions": "type", "containerStatuses": "name", "initContainerStatuses": "name",
    "ephemeralContainerStatuses": "name", "ownerReferences": "uid", "imagePullSecrets": "name",
    "podIPs": "ip", "hostIPs": "ip",
}
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The subset of strategic merge patch that pods and secrets need.

    Lists with a patch merge key in the Kubernetes schema (containers by name,
    conditions by type, ...) merge item by item; ``$patch: delete|replace``,
    ``$deleteFromPrimitiveList/`` and (ignored) ``$setElementOrder/`` directives
    are understood, so kubectl's two-way patches apply.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _without_directives(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        else:
            result[key] = _merge_value(key, result.get(key), value)
    return result


def _merge_value(key: str, current: Any, value: Any) -> Any:
    if isinstance(value, list) and isinstance(current, list) and key in MERGE_KEYS:
        return _merge_keyed_list(current, value, MERGE_KEYS[key])
    if isinstance(value, list) and isinstance(current, list) and key in MERGE_PRIMITIVE_LISTS:
        return current + [v for v in value if v not in current]
    if isinstance(value, dict) and isinstance(current, dict):
        return strategic_merge_patch(current, value)
    return _without_directives(value)


def _merge_keyed_list(current: List[Any], items: List[Any], key: str) -> List[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in items):
        return [_without_directives(i) for i in items
                if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    result = copy.deepcopy(current)
    for item in items:
        if not isinstance(item, dict) or key not in item:
            result.append(_without_directives(item))
            continue
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_without_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return copy.deepcopy(value)


class PatchError(Exception):
    """A JSON patch that does not apply (the server answers 422)."""


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("each operation needs 'op' and 'path'")
        doc = _apply_operation(doc, op)
    return doc


def _apply_operation(doc: Any, op: Dict[str, Any]) -> Any:
    kind, path = op["op"], op["path"]
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op.get("value")))
    if kind == "remove":
        return _remove(doc, path)[0]
    if kind == "replace":
        doc, _ = _remove(doc, path)
        return _add(doc, path, copy.deepcopy(op.get("value")))
    if kind == "move":
        doc, value = _remove(doc, op["from"])
        return _add(doc, path, value)
    if kind == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise PatchError(f"testing value {path} failed")
        return doc
    raise PatchError(f"unexpected kind of operation: {kind}")


def _tokens(path: str) -> List[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc: Any, path: str) -> Tuple[Any, str]:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError("the root cannot be patched")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchError(f"doc is missing path: {path}")


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _tokens(path):
        node = _child(node, token, path)
    return node


def _add(doc: Any, path: str, value: Any) -> Any:
    if path == "":
        return value
    parent, token = _parent(doc, path)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list) and token == "-":
        parent.append(value)
    elif isinstance(parent, list) and token.isdigit() and int(token) <= len(parent):
        parent.insert(int(token), value)
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> Tuple[Any, Any]:
    parent, token = _parent(doc, path)
    if isinstance(parent, dict) and token in parent:
        return doc, parent.pop(token)
    if isinstance(parent, list) and token.isdigit() and int(token) < len(parent):
        return doc, parent.pop(int(token))
    raise PatchError(f"doc is missing path: {path}")


# --- validation -------------------------------------------------------------------------------

def metadata_causes(meta: Mapping[str, Any]) -> List[Cause]:
    """Name, labels and annotation keys, checked as ``ValidateObjectMeta`` does."""
    causes = []
    name = meta.get("name")
    if not name:
        causes.append(Cause("metadata.name", "FieldValueRequired",
                            "Required value: name or generateName is required"))
    elif not is_subdomain(name):
        causes.append(Cause("metadata.name", "FieldValueInvalid",
                            f'Invalid value: "{name}": {SUBDOMAIN_ERROR}'))
    for key, value in (meta.get("labels") or {}).items():
        if not is_qualified_key(key):
            causes.append(Cause("metadata.labels", "FieldValueInvalid",
                                f'Invalid value: "{key}": name part must consist of '
                                "alphanumeric characters, '-', '_' or '.'"))
        if not is_label_value(value):
            causes.append(Cause("metadata.labels", "FieldValueInvalid",
                                f'Invalid value: "{value}": {LABEL_VALUE_ERROR}'))
    for key in meta.get("annotations") or {}:
        if not is_qualified_key(key):
            causes.append(Cause("metadata.annotations", "FieldValueInvalid",
                                f'Invalid value: "{key}": name part must consist of '
                                "alphanumeric characters, '-', '_' or '.'"))
    return causes


def pod_causes(pod: Mapping[str, Any], parse_quantity: Any) -> List[Cause]:
    """The pod-spec checks a backend can trip over: containers, images, resources, policy."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        return [Cause("spec.containers", "FieldValueRequired", "Required value")]
    causes: List[Cause] = []
    seen = set()
    for i, container in enumerate(containers):
        path = f"spec.containers[{i}]"
        name = container.get("name") or ""
        if not name:
            causes.append(Cause(f"{path}.name", "FieldValueRequired", "Required value"))
        elif not is_dns_label(name):
            causes.append(Cause(f"{path}.name", "FieldValueInvalid",
                                f'Invalid value: "{name}": {LABEL_ERROR}'))
        elif name in seen:
            causes.append(Cause(f"{path}.name", "FieldValueDuplicate",
                                f'Duplicate value: "{name}"'))
        seen.add(name)
        if not container.get("image"):
            causes.append(Cause(f"{path}.image", "FieldValueRequired", "Required value"))
        causes.extend(_resource_causes(f"{path}.resources", container.get("resources") or {},
                                       parse_quantity))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(Cause("spec.restartPolicy", "FieldValueNotSupported",
                            f'Unsupported value: "{policy}": supported values: "Always", '
                            '"Never", "OnFailure"'))
    return causes


def _resource_causes(path: str, resources: Mapping[str, Any], parse_quantity: Any) -> List[Cause]:
    causes = []
    parsed: Dict[str, Dict[str, Any]] = {"limits": {}, "requests": {}}
    for part in ("limits", "requests"):
        for name, amount in (resources.get(part) or {}).items():
            try:
                parsed[part][name] = parse_quantity(amount)
            except (ValueError, TypeError, ArithmeticError):
                causes.append(Cause(f"{path}.{part}[{name}]", "FieldValueInvalid",
                                    f'Invalid value: "{amount}": must match the regex '
                                    "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"))
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            causes.append(Cause(f"{path}.requests", "FieldValueInvalid",
                                f'Invalid value: "{resources["requests"][name]}": must be less '
                                f"than or equal to {name} limit of {resources['limits'][name]}"))
    return causes


def secret_causes(secret: Mapping[str, Any]) -> List[Cause]:
    causes = []
    total = 0
    for key, value in (secret.get("data") or {}).items():
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
            causes.append(Cause(f"data[{key}]", "FieldValueInvalid",
                                f'Invalid value: "{key}": a valid config key must consist of '
                                "alphanumeric characters, '-', '_' or '.'"))
        try:
            total += len(base64.b64decode(value, validate=True))
        except (binascii.Error, TypeError, ValueError):
            causes.append(Cause(f"data[{key}]", "FieldValueInvalid",
                                'Invalid value: "<secret contents redacted>": '
                                "illegal base64 data"))
    if total > 1024 * 1024:
        causes.append(Cause("data", "FieldValueTooLong",
                            "Too long: must have at most 1048576 bytes"))
    return causes


def pod_spec_update_causes(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[Cause]:
    """Pod specs are immutable except images, activeDeadlineSeconds and added tolerations."""
    def mutable_blanked(spec: Mapping[str, Any]) -> Dict[str, Any]:
        spec = copy.deepcopy(dict(spec))
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                container.pop("image", None)
        spec.pop("activeDeadlineSeconds", None)
        spec.pop("tolerations", None)
        return spec

    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    kept = new_spec.get("tolerations") or []
    removed = [t for t in old_spec.get("tolerations") or [] if t not in kept]
    if mutable_blanked(old_spec) == mutable_blanked(new_spec) and not removed:
        return []
    return [Cause("spec", "FieldValueForbidden",
                  "Forbidden: pod updates may not change fields other than "
                  "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                  "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                  "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
                  "set to 1 if it was previously negative)")]


# --- defaults ---------------------------------------------------------------------------------

DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
]


def default_pod(pod: Dict[str, Any]) -> None:
    """Fill what the API server's defaulting and default admission add to a new pod."""
    spec = pod.setdefault("spec", {})
    for key, value in (("restartPolicy", "Always"), ("terminationGracePeriodSeconds", 30),
                       ("dnsPolicy", "ClusterFirst"), ("schedulerName", "default-scheduler"),
                       ("securityContext", {}), ("serviceAccountName", "default"),
                       ("enableServiceLinks", True), ("priority", 0),
                       ("preemptionPolicy", "PreemptLowerPriority")):
        spec.setdefault(key, value)
    spec["serviceAccount"] = spec["serviceAccountName"]
    tolerations = spec.setdefault("tolerations", [])
    for toleration in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == toleration["key"] for t in tolerations):
            tolerations.append(dict(toleration))
    for container in spec.get("containers") or []:
        _default_container(container)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def _default_container(container: Dict[str, Any]) -> None:
    image = container.get("image") or ""
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, amount in limits.items():
            requests.setdefault(name, amount)


def qos_class(spec: Mapping[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all(name in (r.get("limits") or {}) for name in ("cpu", "memory"))
        and (r.get("requests") or {}) == {k: v for k, v in (r.get("limits") or {}).items()
                                          if k in (r.get("requests") or {})}
        and set(r.get("requests") or {}) >= {"cpu", "memory"}
        for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def default_secret(secret: Dict[str, Any]) -> None:
    """``type: Opaque`` and ``stringData`` folded into base64 ``data``, as the server does."""
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def set_condition(status: Dict[str, Any], kind: str, value: str, reason: Optional[str] = None,
                  message: Optional[str] = None) -> None:
    """Insert or update one pod condition, keeping lastTransitionTime if it did not flip."""
    conditions = status.setdefault("conditions", [])
    old = next((c for c in conditions if c.get("type") == kind), None)
    new: Dict[str, Any] = {"type": kind, "status": value,
                           "lastTransitionTime": old["lastTransitionTime"]
                           if old and old.get("status") == value and old.get("lastTransitionTime")
                           else now_rfc3339()}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new
