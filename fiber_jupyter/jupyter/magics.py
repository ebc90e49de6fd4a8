"""The ``%fiber_*`` magics: start, scale, show and shut down the kernel's pools.

::

    %fiber_pool [N]              start the notebook's pool, or resize it, and show it
    %fiber_pool --adapt MIN:MAX  ... sized by its backlog, between MIN and MAX workers
    %fiber_scale N               set a pool's target number of workers (by hand)
    %fiber_scale --adapt MIN:MAX let a pool's target follow its backlog
    %fiber_status [NAME]         a table of every pool of this kernel
    %fiber_shutdown [NAME]       terminate a pool and wait for its workers (or --all)
    %%fiber                      run the cell on every worker (imports, data, helpers)

Thin on purpose: ``magic_arguments`` parses and checks every option (with the
converters in ``options.py``), the bodies call the public Pool API through the
kernel's :class:`~.registry.PoolRegistry` (sizing through ``sizing.py``), and
misuse is a one-line UsageError.
What a magic did is printed, so it shows wherever the magic sits in a cell, as
IPython's own magics report; tables are returned, so they display as the
cell's result and can be assigned.
"""

from __future__ import annotations

import argparse
import atexit
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import (argument, argument_group, magic_arguments,
                                          parse_argstring)
from IPython.display import display

from .. import progress
from ..adaptive import IDLE_AFTER, TARGET_DURATION, AdaptSettings
from ..errors import FiberError
from ..pool import Pool
from ..status import PoolState
from . import options
from .control import ControlTarget
from .live import LiveComms
from .pool_widget import PoolWidget
from .progress_widget import widget_factory
from .registry import PoolOptions, PoolRegistry, UnknownPoolError
from .sizing import (adapt_pool, check_start_size, request_adapt, scale_pool, tuning_text,
                     workers)
from .status_text import StatusRow, render_status
from .worker_outputs import render

# The name, and the variable, of a notebook's pool when none is given.
DEFAULT_POOL = "pool"
# States in which %fiber_pool starts a new pool under the name: none yet, or
# one that can never run again.
_REPLACEABLE = (None, PoolState.STOPPED.value, PoolState.BROKEN.value)
ADAPT_HELP = ("let the target follow the backlog, between MIN and MAX workers "
              "(see Pool.adapt); e.g. 1:8")
IDLE_AFTER_HELP = (f"with --adapt: seconds with more workers than needed before the pool "
                   f"shrinks (default {IDLE_AFTER:g})")
TARGET_DURATION_HELP = (f"with --adapt: the pool grows when its backlog would take longer "
                        f"than this many seconds (default {TARGET_DURATION:g})")


class WorkerSetupError(FiberError):
    """``%%fiber`` code raised on some workers; the cell's output shows where and how."""

    def _render_traceback_(self) -> List[str]:
        """IPython shows this line, not a traceback into the magic's machinery."""
        return [f"WorkerSetupError: {self}"]


class PlainText(str):
    """Text the notebook shows as it is, where a ``str`` result would be shown quoted."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self)


@magics_class
class FiberMagics(Magics):
    """The ``%fiber_*`` magics of one kernel, over the registry of its pools."""

    def __init__(self, shell: InteractiveShell, registry: PoolRegistry,
                 live: Optional[LiveComms] = None) -> None:
        super().__init__(shell)
        self.registry = registry
        # In a kernel: how widget messages reach us during a blocked cell, and
        # each pool's widget, one per pool however often it is shown.
        self.live = live
        self.control = ControlTarget(live) if live is not None else None
        self._widgets: Dict[str, PoolWidget] = {}

    @magic_arguments()
    @argument("size", nargs="?", metavar="N", type=options.positive_int,
              help="target number of workers (default for a new pool: the backend's "
                   "natural size, or MIN with --adapt; a running pool keeps its size)")
    @argument("--backend", choices=options.BACKEND_CHOICES,
              help="where workers run: local processes, or pods when the kernel runs "
                   f"in Kubernetes ({options.IN_CLUSTER_VARIABLE} is set)")
    @argument("--name", type=options.pool_name, default=DEFAULT_POOL,
              help=f"the pool's name in %%fiber_status and events (default: {DEFAULT_POOL})")
    @argument("-o", dest="variable", metavar="VAR", type=options.variable_name,
              default=DEFAULT_POOL, help=f"variable to bind the pool to (default: {DEFAULT_POOL})")
    @argument("--max-retries", type=options.non_negative_int,
              help="how often a task that lost its worker runs again before it fails "
                   f"(default: {options.DEFAULT_MAX_RETRIES})")
    @argument("--adapt", metavar="MIN:MAX", type=options.adapt_bounds, help=ADAPT_HELP)
    @argument("--idle-after", metavar="SECONDS", type=options.positive_seconds,
              help=IDLE_AFTER_HELP)
    @argument("--target-duration", metavar="SECONDS", type=options.positive_seconds,
              help=TARGET_DURATION_HELP)
    @argument_group("remote workers", "For remote backends only.")
    @argument("--cpu", type=options.cpu_quantity, help="CPU cores, e.g. 2, 0.5 or 500m")
    @argument("--memory", type=options.memory_quantity, help="memory, e.g. 512Mi or 4Gi")
    @argument("--gpu", type=options.positive_int, help="number of GPUs")
    @argument("--image", type=options.image_reference, help="container image of the workers")
    @argument("--namespace", type=options.namespace_name, help="Kubernetes namespace")
    @argument("--pod-template", metavar="FILE", type=options.pod_template_file,
              help="YAML or JSON merged over each worker's pod, e.g. tolerations")
    @argument("--context", type=options.context_name,
              help="kubeconfig context of the cluster (outside a cluster)")
    @line_magic
    def fiber_pool(self, line: str) -> Union[PlainText, PoolWidget]:
        """Start the notebook's pool, or resize the running pool of that name, and show it.

        The pool is bound to a variable (``pool`` unless -o names another) and
        runs until %fiber_shutdown or the end of the kernel. Running the cell
        again resizes the pool instead of starting a second one, so a notebook
        states the size of its pool in one place.

        With --adapt MIN:MAX the pool sizes itself: it grows as soon as its
        backlog would take longer than a few seconds, and shrinks after a
        minute with more workers than it needs (--target-duration and
        --idle-after change both). A new pool starts at N
        (within the bounds) or MIN; a running one adapts from the size it
        has. A size set by hand (%fiber_pool N, %fiber_scale N) ends adapting.

        Workers are local processes unless the kernel runs in a Kubernetes pod
        with a service account (KUBERNETES_SERVICE_HOST is set), where they
        default to pods. The backend and --max-retries are fixed when a pool starts: shut it down
        to change them. Resource hints describe each remote worker; the local
        backend refuses them.

        Examples:

          %fiber_pool 8                     eight local workers, as `pool`
          %fiber_pool                       one worker per CPU core
          %fiber_pool 64 --name es -o es    a second pool, as `es`
          %fiber_pool --adapt 1:32          1 to 32 workers, as the work needs
          %fiber_pool --adapt 1:32 --idle-after 10
                                            ... giving back idle workers sooner
          %fiber_pool 128 --backend kubernetes --cpu 1 --memory 2Gi
                                            pods (see docs/kubernetes.md)

        See also: %fiber_scale, %fiber_status, %fiber_shutdown.
        """
        args = _parse(self.fiber_pool, line)
        state = self._state(args.name)
        if state == PoolState.RUNNING.value:
            pool, report = self._resize(args)
        elif state in _REPLACEABLE:
            pool, report = self._start(args)
        else:  # closing: its last calls are still running
            raise UsageError(f"pool {args.name!r} is {state}: wait for it, or stop it now "
                             f"with %fiber_shutdown {args.name}")
        print(report + self._bind(args.variable, pool))
        return self._shown(pool)

    @magic_arguments()
    @argument("size", nargs="?", metavar="N", type=options.positive_int,
              help="target number of workers")
    @argument("--adapt", metavar="MIN:MAX", type=options.adapt_bounds,
              help=f"instead of N: {ADAPT_HELP}")
    @argument("--idle-after", metavar="SECONDS", type=options.positive_seconds,
              help=IDLE_AFTER_HELP)
    @argument("--target-duration", metavar="SECONDS", type=options.positive_seconds,
              help=TARGET_DURATION_HELP)
    @argument("--name", type=options.pool_name, default=DEFAULT_POOL,
              help=f"the pool to scale (default: {DEFAULT_POOL})")
    @line_magic
    def fiber_scale(self, line: str) -> Union[PlainText, PoolWidget]:
        """Set a pool's target number of workers, or let it adapt; show the pool.

        The pool grows or shrinks toward the target, also while a map runs:
        new workers take tasks as soon as they connect, surplus ones stop
        idle workers first and finish what they hold. A target set by hand
        ends adapting; --adapt MIN:MAX starts it (or changes its bounds).

        Examples:

          %fiber_scale 16                   16 workers, set by hand
          %fiber_scale --adapt 4:64         4 to 64 workers, as the work needs
        """
        args = _parse(self.fiber_scale, line)
        if (args.size is None) == (args.adapt is None):
            raise UsageError("give N or --adapt MIN:MAX" if args.size is None
                             else "give N or --adapt MIN:MAX, not both")
        settings = _adapt_settings(args)
        pool = self._pool(args.name)
        if settings is None:
            print(scale_pool(pool, args.size))
        else:
            print(adapt_pool(pool, settings))
        return self._shown(pool)

    @magic_arguments()
    @argument("name", nargs="?", type=options.pool_name, help="show only this pool")
    @argument("-w", "--widget", action="store_true",
              help="show each pool's live widget instead of the table (in a notebook)")
    @line_magic
    def fiber_status(self, line: str) -> Optional[PlainText]:
        """Show every pool of this kernel as a table, or as live widgets.

        Per pool: backend and state; who sets the target (mode: manual, or
        adaptive MIN–MAX); workers asked for (target), connected
        (live), starting (pending), running tasks (busy) or not (idle), and
        lost to crashes or hangs since the pool started; tasks waiting
        (queued), on a worker (running) and finished (done).
        """
        args = _parse(self.fiber_status, line)
        pools = [self._pool(args.name)] if args.name else self.registry.pools()
        if not pools:
            return PlainText("no pools in this kernel; start one with %fiber_pool")
        if not args.widget:
            return self._table(pools)
        if self.live is None:
            raise UsageError("--widget needs a notebook (a Jupyter kernel): "
                             "in a terminal, %fiber_status shows the table")
        for pool in pools:
            display(self._widget(pool))
        return None

    @magic_arguments()
    @argument("name", nargs="?", type=options.pool_name,
              help=f"the pool to shut down (default: {DEFAULT_POOL})")
    @argument("--all", action="store_true", help="shut down every pool of this kernel")
    @line_magic
    def fiber_shutdown(self, line: str) -> None:
        """Terminate a pool and wait until its workers have exited.

        Calls still waiting on it fail. Variables that refer to the pool keep
        it, terminated; the report names them, so nothing is unbound behind
        your back.
        """
        args = _parse(self.fiber_shutdown, line)
        if args.all and args.name:
            raise UsageError("give a pool name or --all, not both")
        names = self.registry.names() if args.all else [self._pool(args.name or DEFAULT_POOL).name]
        self._shut_down(names)
        if not names:
            print("no pools to shut down")

    @magic_arguments(name="%fiber")  # the help then reads %%fiber, as the cell magic is spelt
    @argument("--name", type=options.pool_name, default=DEFAULT_POOL,
              help=f"the pool whose workers run the cell (default: {DEFAULT_POOL})")
    @argument("--once", action="store_true",
              help="run it on the workers of the moment only; by default workers that "
                   "start later (scale-up, replacements of crashed ones) run it too")
    @cell_magic
    def fiber(self, line: str, cell: str) -> None:
        """Run the cell on every worker of a pool: imports, loading data, helpers.

        The cell runs once per worker, in the worker's own namespace; the
        functions the notebook maps later see the names it defines (where
        the notebook has a name too, the notebook's value wins). Workers that
        start later run it before their first task, unless --once is given
        or the cell raised on a worker now. A worker busy with tasks runs it
        once it has finished the batches it holds.

        Output is grouped: workers that printed the same thing and ended
        the same way are shown once, under the ranges of their ids. If the
        cell raised anywhere, the magic fails after showing the tracebacks.

        Example:

          %%fiber
          import numpy as np
          weights = np.load("weights.npy")
        """
        args = _parse(self.fiber, line)
        pool = self._pool(args.name)
        try:
            outputs = pool.execute(cell, keep=not args.once)
        except FiberError as exc:
            raise UsageError(str(exc)) from None
        print(render(outputs))
        failed = sum(output.error is not None for output in outputs)
        if failed:
            raise WorkerSetupError(f"the cell raised on {failed} of {len(outputs)} workers "
                                   f"of pool {pool.name!r}; it is not kept for new workers")

    def close(self) -> None:
        """Shut down every pool, saying so: the extension is being unloaded."""
        self._shut_down(self.registry.names())

    # Helpers -----------------------------------------------------------------

    def _start(self, args: argparse.Namespace) -> Tuple[Pool, str]:
        backend = options.resolve_backend(args.backend, os.environ)
        options.check_resource_hints(backend, vars(args))
        settings = _adapt_settings(args)
        size = args.size
        if args.adapt is not None:
            check_start_size(size, args.adapt)
            size = args.adapt[0] if size is None else size
        replacing = ""
        if args.name in self.registry:
            replacing = f", replacing the {self.registry.get(args.name).status().state} one"
            self.registry.shutdown(args.name)
        max_retries = (options.DEFAULT_MAX_RETRIES if args.max_retries is None
                       else args.max_retries)
        hints = {hint: getattr(args, hint) for hint in options.RESOURCE_HINTS
                 if getattr(args, hint) is not None}
        try:
            pool = self.registry.create(args.name, size, PoolOptions(backend, max_retries, hints))
        except FiberError as exc:  # e.g. no cluster to run on, no image
            raise UsageError(str(exc)) from None
        mode = ""
        if settings is not None:
            request_adapt(pool, settings)
            mode = f", {settings.describe()}{tuning_text(settings)}"
        target = workers(pool.status().target)
        return pool, f"started pool {pool.name!r} ({backend}, {target}{mode}){replacing}"

    def _resize(self, args: argparse.Namespace) -> Tuple[Pool, str]:
        pool = self.registry.get(args.name)
        started = self.registry.options(args.name)
        for flag, asked, fixed in (("--backend", args.backend, started.backend),
                                   ("--max-retries", args.max_retries, started.max_retries)):
            if asked is not None and asked != fixed:
                raise UsageError(f"pool {pool.name!r} was started with {flag} {fixed}, which "
                                 f"is fixed: %fiber_shutdown {pool.name} first to change it")
        options.check_resource_hints(started.backend, vars(args))
        settings = _adapt_settings(args)
        if settings is not None:  # N, where a new pool would start, is past for this one
            check_start_size(args.size, args.adapt)
            return pool, adapt_pool(pool, settings)
        if args.size is None:
            return pool, f"pool {pool.name!r} ({pool.backend}) is running"
        return pool, scale_pool(pool, args.size)

    def _bind(self, variable: str, pool: Pool) -> str:
        """Bind ``pool`` in the user's namespace; say what the variable held before."""
        previous = self.shell.user_ns.get(variable)
        if previous is pool:
            return ""
        self.shell.push({variable: pool})
        if previous is None:
            return f"; bound to `{variable}`"
        if isinstance(previous, Pool):
            held = f"pool {previous.name!r} ({previous.status().state})"
        else:
            held = f"a value of type {type(previous).__name__}"
        return f"; bound to `{variable}`, which held {held}"

    def _shut_down(self, names: Iterable[str]) -> None:
        for name in names:
            pool = self.registry.get(name)
            status = pool.status()
            self.registry.shutdown(name)
            self._widgets.pop(name, None)
            stopped = workers(status.live + status.pending)
            report = f"shut down pool {name!r} ({pool.backend}, {stopped} stopped)"
            holders = self._variables_holding(pool)
            if holders:
                verb = "refers" if len(holders) == 1 else "refer"
                report += f"; {', '.join(f'`{v}`' for v in holders)} still {verb} to it"
            print(report)

    def _variables_holding(self, pool: Pool) -> List[str]:
        """User variables bound to ``pool`` (not IPython's ``_``, ``_3`` output history)."""
        return [name for name, value in self.shell.user_ns.items()
                if value is pool and not name.startswith("_")]

    def _state(self, name: str) -> Optional[str]:
        """The state of the pool called ``name``; None if there is none."""
        return self.registry.get(name).status().state if name in self.registry else None

    def _pool(self, name: str) -> Pool:
        try:
            return self.registry.get(name)
        except UnknownPoolError as exc:
            raise UsageError(str(exc)) from None

    def _shown(self, pool: Pool) -> Union[PlainText, PoolWidget]:
        """What a magic shows for ``pool``: its widget in a notebook, its table elsewhere."""
        return self._table([pool]) if self.live is None else self._widget(pool)

    def _widget(self, pool: Pool) -> PoolWidget:
        widget = self._widgets.get(pool.name)
        if widget is None or widget.pool is not pool:
            widget = self._widgets[pool.name] = PoolWidget(pool, self.live)
        return widget

    def _table(self, pools: Iterable[Pool]) -> PlainText:
        return PlainText(render_status([StatusRow(p.name, p.backend, p.status()) for p in pools]))


def _adapt_settings(args: argparse.Namespace) -> Optional[AdaptSettings]:
    """What --adapt and its tuning ask for; None without --adapt (then tuning is an error)."""
    tuning = {name: getattr(args, name) for name in ("idle_after", "target_duration")
              if getattr(args, name) is not None}
    if args.adapt is None:
        if tuning:
            flags = " and ".join("--" + name.replace("_", "-") for name in tuning)
            raise UsageError(f"{flags} {'needs' if len(tuning) == 1 else 'need'} "
                             f"--adapt MIN:MAX")
        return None
    return AdaptSettings(*args.adapt, **tuning)


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """``parse_argstring``, where unbalanced quotes are a UsageError too, not a traceback."""
    try:
        return parse_argstring(magic, line)
    except ValueError as exc:  # from splitting the line; argparse reports its own errors
        raise UsageError(f"cannot split the options: {exc}") from None


def load(shell: InteractiveShell) -> None:
    """Register the magics over a new registry, whose pools are shut down at exit.

    In a kernel, also: progress widgets for every pool created from now on,
    widget and control messages handled while a cell blocks, and the control
    comm target.
    """
    kernel = getattr(shell, "kernel", None)
    live = LiveComms(kernel) if kernel is not None else None
    magics = FiberMagics(shell, PoolRegistry(), live)
    shell.register_magics(magics)
    atexit.register(magics.registry.shutdown_at_exit)
    if live is not None:
        progress.set_default_factory(widget_factory(shell))
        magics.control.register(kernel.comm_manager)


def unload(shell: InteractiveShell) -> None:
    """Remove the magics and shut down the pools they started, saying so."""
    magics = shell.magics_manager.registry.pop(FiberMagics.__name__, None)
    if magics is None:
        return
    for kind, names in magics.magics.items():
        for name in names:
            shell.magics_manager.magics[kind].pop(name, None)
    atexit.unregister(magics.registry.shutdown_at_exit)
    magics.close()
    if magics.live is not None:
        progress.set_default_factory(None)
        magics.control.unregister(shell.kernel.comm_manager)
        magics.live.close()
