"""What ``%%fiber`` shows: every worker's output, grouped so that 512 workers read like one.

Workers that printed the same thing and ended the same way form one group,
named by ranges of worker ids ("w0-w255, w300 (257 workers)"); a group that
printed nothing and raised nothing is only counted in the summary line.
"""

from __future__ import annotations

import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

from ..status import WorkerOutput, worker_order


def worker_ranges(worker_ids: Sequence[str]) -> str:
    """``"w0-w3, w7, w9-w10"``: consecutive worker numbers collapse into a range."""
    runs: List[List] = []  # [first id, last id, last number]
    for worker_id in sorted(worker_ids, key=worker_order):
        number = worker_order(worker_id)[0]
        if runs and number == runs[-1][2] + 1:
            runs[-1][1:] = [worker_id, number]
        else:
            runs.append([worker_id, worker_id, number])
    return ", ".join(first if first == last else f"{first}-{last}" for first, last, _ in runs)


def _count(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def summary(outputs: Sequence[WorkerOutput]) -> str:
    failed = sum(output.error is not None for output in outputs)
    if not outputs:
        return "ran on no worker: the pool has none connected yet (new workers run kept code)"
    if not failed:
        return f"ran on {_count(len(outputs))}: all ok"
    return f"ran on {_count(len(outputs))}: {len(outputs) - failed} ok, {failed} failed"


def render(outputs: Sequence[WorkerOutput]) -> str:
    """The summary line, then each group with something to show, its text indented."""
    groups: Dict[Tuple[str, Optional[str]], List[str]] = {}
    for output in outputs:
        groups.setdefault((output.output, output.error), []).append(output.worker_id)
    lines = [summary(outputs)]
    for (printed, error), worker_ids in groups.items():
        if not printed and error is None:
            continue
        verb = " raised:" if error is not None else ":"
        lines.append(f"[{worker_ranges(worker_ids)}] ({_count(len(worker_ids))}){verb}")
        lines.append(textwrap.indent((printed + (error or "")).rstrip("\n"), "  "))
    return "\n".join(lines)
