"""Code run on every worker (``pool.execute``): the runs waiting for answers, the steps kept.

The scheduler sends the code to every worker it has welcomed; a worker runs it
after the batches it already holds and answers with what it printed. Workers
welcomed later (scale-up, replacements of crashed workers) get the kept steps
in their Welcome instead, so every worker of a pool has run the same set-up,
in the same order. A step that raised on some worker is not kept: new workers
would only fail with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Set, Tuple

from .inbox import Reply
from .status import WorkerOutput, worker_order


@dataclass
class ExecutionRun:
    """One ``pool.execute`` call: who has yet to answer, and the answers so far."""

    run_id: int
    code: str
    keep: bool
    reply: Reply
    waiting: Set[str]
    outputs: List[WorkerOutput] = field(default_factory=list)

    def record(self, output: WorkerOutput) -> None:
        if output.worker_id in self.waiting:
            self.waiting.discard(output.worker_id)
            self.outputs.append(output)

    def give_up(self, error: str) -> None:
        """Answer for every worker still waited for (the pool is stopping)."""
        for worker_id in sorted(self.waiting):
            self.record(WorkerOutput(worker_id, "", error))

    def answers(self) -> List[WorkerOutput]:
        """The outputs in worker start order."""
        return sorted(self.outputs, key=lambda output: worker_order(output.worker_id))

    @property
    def failed(self) -> bool:
        return any(output.error is not None for output in self.outputs)


class SetupSteps:
    """The code every new worker runs before its first task, in the order it was kept."""

    def __init__(self) -> None:
        self._steps: List[Tuple[int, str]] = []

    def keep(self, run: ExecutionRun) -> None:
        self._steps.append((run.run_id, run.code))

    def drop(self, run: ExecutionRun) -> None:
        self._steps = [(run_id, code) for run_id, code in self._steps if run_id != run.run_id]

    def codes(self) -> Tuple[str, ...]:
        return tuple(code for _, code in self._steps)

