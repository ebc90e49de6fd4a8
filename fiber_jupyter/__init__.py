"""fiber_jupyter: elastic, crash-proof process pools for notebooks.

``fiber_jupyter.Pool`` is a drop-in for ``multiprocessing.Pool`` whose workers
run as local processes or on a cluster, can be added or removed while it
works, and are replaced when they crash, without losing or repeating a result.
"""

from .errors import (BrokenPoolError, FiberError, InitializerError, PoolSizeError,
                     PoolStateError, PoolTerminatedError, RemoteError, RemoteTraceback,
                     ResultEncodingError, TaskCancelled, TimeoutError, WorkerLostError)
from .events import (EventStream, PoolClosed, PoolEvent, Progress, Scaled, TaskRetried,
                     TasksFailed, WorkerLost, WorkerReady, WorkerStarting, WorkerStopped)
from .pool import Pool
from .results import AsyncResult, IMapIterator
from .status import PoolStatus

__version__ = "0.1.0"

__all__ = [
    "AsyncResult", "BrokenPoolError", "EventStream", "FiberError", "IMapIterator",
    "InitializerError", "Pool", "PoolClosed", "PoolEvent", "PoolSizeError", "PoolStateError",
    "PoolStatus", "PoolTerminatedError", "Progress", "RemoteError", "RemoteTraceback",
    "ResultEncodingError", "Scaled", "TaskCancelled", "TaskRetried", "TasksFailed",
    "TimeoutError", "WorkerLost", "WorkerLostError", "WorkerReady", "WorkerStarting",
    "WorkerStopped",
]
