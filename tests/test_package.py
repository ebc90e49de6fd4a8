"""Specification of the package's top level (fiber_jupyter/__init__.py): every public name
is there, and a worker imports only what it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fiber_jupyter


def test_every_public_name_is_importable_from_the_package():
    namespace: dict = {}
    exec("from fiber_jupyter import *", namespace)
    assert set(fiber_jupyter.__all__) <= set(namespace)
    assert namespace["Pool"] is fiber_jupyter.pool.Pool
    assert set(fiber_jupyter.__all__) <= set(dir(fiber_jupyter))


def test_every_error_is_a_fiber_error_but_the_remote_traceback():
    errors = [getattr(fiber_jupyter, name) for name in fiber_jupyter.__all__
              if name.endswith(("Error", "Cancelled"))]
    assert errors and all(issubclass(error, fiber_jupyter.FiberError) for error in errors)
    assert not issubclass(fiber_jupyter.RemoteTraceback, fiber_jupyter.FiberError)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="module 'fiber_jupyter' has no attribute 'Poool'"):
        fiber_jupyter.Poool  # noqa: B018


def test_a_worker_imports_neither_the_pool_nor_asyncio_nor_the_kubernetes_client():
    heavy = ("fiber_jupyter.pool", "fiber_jupyter.scheduler", "fiber_jupyter.process",
             "asyncio", "kubernetes", "IPython")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, fiber_jupyter.worker\n"
                               f"print(sorted(set({heavy!r}) & set(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
