"""The magics' options: argparse converters, and the rules for choosing a backend.

The converters are ``type=`` functions for ``magic_arguments``. Each parses a
string (nothing typed is ever evaluated) and raises ``ArgumentTypeError``
saying what it expected; IPython shows that as a one-line UsageError such as
"argument --cpu: must be ... got 'lots'". The backend rules need more than one
option at a time, so they run in the magic and raise UsageError themselves.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from argparse import ArgumentTypeError
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml
from IPython.core.error import UsageError

from ..backends import BACKENDS
from ..backends.kubernetes import config as kubernetes_config
from ..pool import Pool

# Backends a user may name. "kubernetes" is accepted before it is registered,
# so that asking for it says it is unavailable here rather than unknown.
BACKEND_CHOICES = ("local", "kubernetes")
# Set by Kubernetes in every container: a kernel running in a pod defaults to pods.
IN_CLUSTER_VARIABLE = "KUBERNETES_SERVICE_HOST"
# Backends whose workers share the kernel's machine, where resource hints mean nothing.
LOCAL_BACKENDS = frozenset({"local"})
# Per-worker options of remote backends, by their Kubernetes(...) names.
RESOURCE_HINTS = ("cpu", "memory", "gpu", "image", "namespace", "pod_template", "context")
# Read from the signature so the help text and the Pool can never disagree.
DEFAULT_MAX_RETRIES: int = inspect.signature(Pool).parameters["max_retries"].default

_INTEGER = re.compile(r"-?[0-9]+")
# Kubernetes quantities: cores or millicores (2, 0.5, 500m); bytes with an optional unit.
_CPU = re.compile(r"(?P<number>[0-9]*\.?[0-9]+)m?")
_MEMORY = re.compile(r"(?P<number>[0-9]*\.?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # an RFC 1123 label
_POOL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def positive_int(text: str) -> int:
    """A count of at least one (pool size, GPUs)."""
    if not _INTEGER.fullmatch(text) or int(text) < 1:
        raise ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    """A count that may be zero (retries)."""
    if not _INTEGER.fullmatch(text) or int(text) < 0:
        raise ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    """A duration in seconds, more than zero: ``"30"``, ``"0.5"``."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def adapt_bounds(text: str) -> Tuple[int, int]:
    """The bounds of an adaptive pool, written MIN:MAX: ``"1:8"`` is ``(1, 8)``."""
    minimum, colon, maximum = text.partition(":")
    if not colon:
        raise ArgumentTypeError(f"must be MIN:MAX, two positive integers like 1:8, got {text!r}")
    for name, bound in (("MIN", minimum), ("MAX", maximum)):
        if not _INTEGER.fullmatch(bound) or int(bound) < 1:
            raise ArgumentTypeError(f"{name} must be a positive integer, got {bound!r} "
                                    f"in {text!r}")
    if int(minimum) > int(maximum):
        raise ArgumentTypeError(f"MIN {int(minimum)} is larger than MAX {int(maximum)} "
                                f"in {text!r}")
    return int(minimum), int(maximum)


def cpu_quantity(text: str) -> str:
    """CPU cores per worker, as Kubernetes writes them; kept as text for the backend."""
    if not _positive_quantity(_CPU, text):
        raise ArgumentTypeError(f"must be a positive number of cores like 2, 0.5 or 500m, "
                                f"got {text!r}")
    return text


def memory_quantity(text: str) -> str:
    """Memory per worker, as Kubernetes writes it; kept as text for the backend."""
    if not _positive_quantity(_MEMORY, text):
        raise ArgumentTypeError(f"must be a positive amount like 512Mi, 4Gi or 2G, got {text!r}")
    return text


def _positive_quantity(pattern: re.Pattern, text: str) -> bool:
    match = pattern.fullmatch(text)
    return bool(match) and float(match["number"]) > 0


def image_reference(text: str) -> str:
    if not _IMAGE.fullmatch(text):
        raise ArgumentTypeError(f"must be a container image like python:3.11-slim, got {text!r}")
    return text


def namespace_name(text: str) -> str:
    if not _NAMESPACE.fullmatch(text):
        raise ArgumentTypeError("must be a Kubernetes namespace (at most 63 lowercase letters, "
                                f"digits and '-'), got {text!r}")
    return text


def pod_template_file(path: str) -> Dict[str, Any]:
    """A partial pod manifest, YAML or JSON, merged over each worker's pod."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ArgumentTypeError(f"cannot read pod template {path!r}: {exc.strerror}") from None
    try:
        template = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ArgumentTypeError(f"pod template {path!r} is not YAML or JSON: "
                                f"{' '.join(str(exc).split())}") from None
    if not isinstance(template, dict):
        raise ArgumentTypeError(f"pod template {path!r} must be a mapping such as "
                                f"'spec: {{priorityClassName: batch}}', "
                                f"got {type(template).__name__}")
    return template


def context_name(text: str) -> str:
    if not text.strip():
        raise ArgumentTypeError("must be the name of a context in the kubeconfig, got ''")
    return text


def variable_name(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise ArgumentTypeError(f"must be a Python variable name, got {text!r}")
    return text


def pool_name(text: str) -> str:
    """Pool names appear in events, thread names and logs: keep them plain."""
    if not _POOL_NAME.fullmatch(text):
        raise ArgumentTypeError(f"must be letters, digits, '_', '.' or '-', got {text!r}")
    return text


def resolve_backend(requested: Optional[str], environ: Mapping[str, str]) -> str:
    """The backend for a new pool: as asked, else kubernetes inside a cluster, else local.

    Inside a cluster means in a pod with a service account to call the API
    with. A pod without one (Binder runs notebooks in such pods) gets local
    workers: a notebook must work where it is opened. Asking for a missing
    backend is an error.
    """
    if requested is None:
        in_cluster = "kubernetes" in BACKENDS and kubernetes_config.in_cluster(environ)
        return "kubernetes" if in_cluster else "local"
    if requested not in BACKENDS:
        available = ", ".join(sorted(BACKENDS))
        raise UsageError(f"backend {requested!r} is not available; "
                         f"available backends: {available}")
    return requested


def check_resource_hints(backend: str, options: Mapping[str, object]) -> None:
    """Refuse resource hints for a backend whose workers run on the kernel's machine."""
    given = [f"--{hint.replace('_', '-')}" for hint in RESOURCE_HINTS
             if options.get(hint) is not None]
    if given and backend in LOCAL_BACKENDS:
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{', '.join(given)} {verb} to remote backends only, "
                         f"not to backend {backend!r}")
