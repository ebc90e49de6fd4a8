"""What a pod's status means for its worker: starting, stuck (and why), running, or ended.

Kubernetes spreads the answer over the phase, the pod's reason (Evicted),
the PodScheduled condition (Unschedulable) and the worker container's state
(waiting on ErrImagePull, terminated with OOMKilled and exit code 137). This
module reads them in one place and says it the way the pool reports worker
losses: "OOMKilled (exit 137, SIGKILL)", "evicted: The node was low on
resource: memory", "pod deleted".
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, Optional

from .manifests import CONTAINER

# Container waiting reasons that mean the worker will not start without help.
STUCK_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                           "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError",
                           "RunContainerError", "CrashLoopBackOff"})


@dataclass(frozen=True)
class PodOutcome:
    """How a worker's pod stands: ``ended`` with an exit code, or ``waiting`` for a reason."""

    ended: bool
    exit_code: Optional[int] = None  # negative for a signal, as WorkerExit has it
    detail: str = ""
    waiting: Optional[str] = None  # why it is not running yet, if it is stuck


RUNNING = PodOutcome(False)


def outcome(pod: Any) -> PodOutcome:
    """Read a pod (a client model) into a PodOutcome."""
    status = pod.status
    phase = getattr(status, "phase", None)
    if phase in ("Succeeded", "Failed"):
        return _ended(status)
    if phase == "Pending" or phase is None:
        return PodOutcome(False, waiting=_stuck_reason(status))
    return RUNNING


def deleted(pod: Any) -> PodOutcome:
    """The pod is gone: its last status if it had ended, else "pod deleted"."""
    last = outcome(pod)
    return last if last.ended else PodOutcome(True, None, "pod deleted")


def _worker_state(status: Any) -> Any:
    for container in getattr(status, "container_statuses", None) or ():
        if container.name == CONTAINER:
            return container.state
    return None


def _ended(status: Any) -> PodOutcome:
    if getattr(status, "reason", None) == "Evicted":
        return PodOutcome(True, None, f"evicted: {status.message or 'no message'}")
    state = _worker_state(status)
    terminated = getattr(state, "terminated", None)
    if terminated is None:
        return PodOutcome(True, None, f"pod {status.phase} ({status.reason or 'no reason'})")
    code = terminated.exit_code
    exit_code = -(code - 128) if code is not None and code > 128 else code
    return PodOutcome(True, exit_code, _describe_exit(terminated.reason, code))


def _describe_exit(reason: Optional[str], code: Optional[int]) -> str:
    """"OOMKilled (exit 137, SIGKILL)", "exit 137 (SIGKILL)" or "exit 1".

    The container runtime's plain reasons (Error, Completed) say nothing more.
    """
    number = "exit status unknown" if code is None else f"exit {code}"
    signal_name = _signal_name(code - 128) if code is not None and code > 128 else None
    if reason and reason not in ("Error", "Completed"):
        return f"{reason} ({number}, {signal_name})" if signal_name else f"{reason} ({number})"
    return f"{number} ({signal_name})" if signal_name else number


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stuck_reason(status: Any) -> Optional[str]:
    for condition in getattr(status, "conditions", None) or ():
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason or 'not scheduled'}: {condition.message or ''}".rstrip(": ")
    waiting = getattr(_worker_state(status), "waiting", None)
    if waiting is not None and waiting.reason in STUCK_REASONS:
        return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    return None
