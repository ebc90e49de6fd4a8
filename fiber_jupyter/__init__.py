"""fiber_jupyter: elastic, crash-proof process pools for notebooks.

``fiber_jupyter.Pool`` is a drop-in for ``multiprocessing.Pool`` whose workers
run as local processes or on a cluster, can be added or removed while it
works, and are replaced when they crash, without losing or repeating a result.
``Process``, ``SimpleQueue`` and ``Pipe`` are multiprocessing's, for processes
that run as local processes or pods.
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any, List

# Each public name and the module it comes from, imported on first use: a worker
# (``python -m fiber_jupyter.worker``) then imports what it runs, not the pool's
# machinery, and starts faster.
_EXPORTS = {
    **dict.fromkeys(("BrokenPoolError", "FiberError", "InitializerError", "PoolSizeError",
                     "PoolStateError", "PoolTerminatedError", "RemoteError", "RemoteTraceback",
                     "ResultEncodingError", "TaskCancelled", "TimeoutError", "WorkerLostError"),
                    ".errors"),
    **dict.fromkeys(("CallStarted", "EventStream", "PoolClosed", "PoolEvent", "Progress",
                     "Scaled", "TaskRetried", "TaskSpeculated", "TasksFailed", "WorkerLost",
                     "WorkerReady", "WorkerStarting", "WorkerStopped", "WorkerWaiting"),
                    ".events"),
    "KubernetesConfigError": ".backends.kubernetes",
    "ChannelError": ".channels",
    "Pool": ".pool",
    "Process": ".process",
    "ProcessStateError": ".process",
    **dict.fromkeys(("Connection", "Pipe", "SimpleQueue"), ".queues"),
    **dict.fromkeys(("AsyncResult", "IMapIterator"), ".results"),
    **dict.fromkeys(("PoolStatus", "WorkerInfo", "WorkerOutput"), ".status"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``fiber_jupyter.Pool`` and the other public names, imported when first asked for."""
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # only for the extension hooks' annotations: IPython stays unimported
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

# A library's warnings (a lost worker, say) reach users through their own logging
# set-up, or through the progress displays; never through Python's last-resort
# handler, which would print them on stderr, in the middle of a notebook's output.
logging.getLogger(__name__).addHandler(logging.NullHandler())


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
