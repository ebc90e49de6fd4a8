"""The Jupyter layer: IPython magics that create, scale, show and stop the kernel's pools.

Loaded by ``%load_ext fiber_jupyter`` (see ``load_ipython_extension`` in the
package root). Everything here uses the public Pool API and its event
stream; the core package never imports this one, so ``import fiber_jupyter``
works without IPython.

- ``registry.py``: the kernel's pools by name, shut down at kernel exit.
- ``options.py``: parsing and checking of the magics' options.
- ``status_text.py``: pool status as a fixed-width text table.
- ``magics.py``: the ``%fiber_*`` magics themselves, and loading/unloading.
"""
