"""How many items go into one batch: a pure policy, measured as the call runs.

Tiny tasks must be batched (a message per 1 µs task would cost 100x the work),
long tasks must not be (Fiber's fixed chunks of 32 make forty 100 ms tasks take
1.6x the ideal time on two workers). The policy sizes each batch from the
per-item time measured on the workers so far:

- unknown cost (nothing measured yet): one item, a probe;
- never more than ``MAX_BATCH_SECONDS`` of work, so progress, cancellation,
  newly started workers and crash recovery all act within a fraction of a second
  (smaller costs throughput: 20 ms made 10 ms sleeps 1.036x ideal, 50 ms 1.025x);
- otherwise a quarter of the remaining items per worker (guided
  self-scheduling: batches shrink as the call nears its end, so workers finish
  together), but never less than ``MIN_BATCH_SECONDS`` of work, about five
  times the per-batch cost (~0.1 ms here): larger floors leave one worker with
  the whole tail of a tiny-task map while the other idles.
"""

from __future__ import annotations

import math
from typing import Optional

MAX_BATCH_SECONDS = 0.05
MIN_BATCH_SECONDS = 0.0005
BALANCE_FACTOR = 4


def batch_size(remaining: int, workers: int, seconds_per_item: Optional[float]) -> int:
    """Items for the next batch of a call with ``remaining`` undispatched items."""
    if remaining <= 0:
        return 0
    if seconds_per_item is None:
        return 1
    per_item = max(seconds_per_item, 1e-9)
    largest = max(1, int(MAX_BATCH_SECONDS / per_item))
    smallest = max(1, int(MIN_BATCH_SECONDS / per_item))
    balanced = math.ceil(remaining / (BALANCE_FACTOR * max(workers, 1)))
    return min(remaining, largest, max(balanced, smallest))
