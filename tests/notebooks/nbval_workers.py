"""pytest plugin for ``pytest --nbval notebooks/``: each notebook leaves no worker behind.

``make test`` loads it with ``-p tests.notebooks.nbval_workers``. The kernels
nbval starts inherit this process's environment and their workers inherit the
kernel's, so a tag set here finds a notebook's workers even after they were
reparented. After a notebook's last cell, its own ``%fiber_shutdown`` must have
stopped them all.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import wait_for
from tests.jupyter.kernel import TAG_VARIABLE, worker_processes


def pytest_configure(config: pytest.Config) -> None:
    os.environ[TAG_VARIABLE] = uuid.uuid4().hex


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item) -> None:
    last_cell = nextitem is None or nextitem.parent is not item.parent
    if last_cell and item.path.suffix == ".ipynb":
        wait_for(lambda: not worker_processes(os.environ[TAG_VARIABLE]), timeout=30,
                 what=f"the workers of {item.path.name} to exit after its last cell")
