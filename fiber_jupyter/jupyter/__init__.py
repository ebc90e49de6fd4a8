"""The Jupyter layer: magics and widgets that create, scale, show and stop the kernel's pools.

Loaded by ``%load_ext fiber_jupyter`` (see ``load_ipython_extension`` in the
package root). Everything here uses the public Pool API and its event
stream; the core package never imports this one, so ``import fiber_jupyter``
works without IPython.

- ``registry.py``: the kernel's pools by name, shut down at kernel exit.
- ``options.py``: parsing and checking of the magics' options.
- ``status_text.py``: pool status as a fixed-width text table.
- ``magics.py``: the ``%fiber_*`` and ``%%fiber`` magics, and loading/unloading.
- ``worker_outputs.py``: what ``%%fiber`` shows, grouped by worker.
- ``pool_widget.py``: the pool widget (counts, size slider, worker grid, event log).
- ``progress_widget.py``: a call's progress in the cell that made it.
- ``control.py``: the ``fiber_jupyter.control`` comm target for front ends.
- ``live.py``: routing fiber's comms so that they act while a cell blocks.
"""
