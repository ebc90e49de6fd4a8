"""fiber_jupyter: elastic, crash-proof process pools for notebooks.

``fiber_jupyter.Pool`` is a drop-in for ``multiprocessing.Pool`` whose workers
run as local processes or on a cluster, can be added or removed while it
works, and are replaced when they crash, without losing or repeating a result.
``Process``, ``SimpleQueue`` and ``Pipe`` are multiprocessing's, for processes
that run as local processes or pods.
"""

import logging
from typing import TYPE_CHECKING

from .errors import (BrokenPoolError, FiberError, InitializerError, PoolSizeError,
                     PoolStateError, PoolTerminatedError, RemoteError, RemoteTraceback,
                     ResultEncodingError, TaskCancelled, TimeoutError, WorkerLostError)
from .events import (CallStarted, EventStream, PoolClosed, PoolEvent, Progress, Scaled, TaskRetried,
                     TaskSpeculated, TasksFailed, WorkerLost, WorkerReady, WorkerStarting,
                     WorkerStopped, WorkerWaiting)
from .backends.kubernetes import KubernetesConfigError
from .channels import ChannelError
from .pool import Pool
from .process import Process, ProcessStateError
from .queues import Connection, Pipe, SimpleQueue
from .results import AsyncResult, IMapIterator
from .status import PoolStatus, WorkerInfo, WorkerOutput

if TYPE_CHECKING:  # only for the extension hooks' annotations: IPython stays unimported
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

# A library's warnings (a lost worker, say) reach users through their own logging
# set-up, or through the progress displays; never through Python's last-resort
# handler, which would print them on stderr, in the middle of a notebook's output.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AsyncResult", "BrokenPoolError", "CallStarted", "ChannelError", "Connection", "EventStream",
    "FiberError", "IMapIterator", "InitializerError", "KubernetesConfigError", "Pipe", "Pool",
    "PoolClosed", "PoolEvent", "PoolSizeError", "PoolStateError", "PoolStatus",
    "PoolTerminatedError", "Process", "ProcessStateError", "Progress", "RemoteError",
    "RemoteTraceback", "ResultEncodingError",
    "Scaled", "SimpleQueue", "TaskCancelled", "TaskRetried", "TaskSpeculated", "TasksFailed",
    "TimeoutError", "WorkerLost", "WorkerLostError", "WorkerReady", "WorkerStarting",
    "WorkerInfo", "WorkerOutput", "WorkerStopped", "WorkerWaiting",
]


def _jupyter_labextension_paths() -> list:
    """Where the built side panel is, for ``jupyter labextension develop``."""
    return [{"src": "labextension", "dest": "fiber-jupyter"}]


def load_ipython_extension(ipython: "InteractiveShell") -> None:
    """``%load_ext fiber_jupyter``: register the ``%fiber_*`` magics in this shell.

    The Jupyter layer is imported here, not at the top, so that importing
    fiber_jupyter (in a worker, a script, a test) never imports IPython.
    """
    from .jupyter import magics

    magics.load(ipython)


def unload_ipython_extension(ipython: "InteractiveShell") -> None:
    """``%unload_ext fiber_jupyter``: remove the magics and shut down their pools."""
    from .jupyter import magics

    magics.unload(ipython)
