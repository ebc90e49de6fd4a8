"""Helpers that drive a real JupyterLab page (see conftest.py for the server and browser).

Why JavaScript through ``window.jupyterapp`` (the server runs with expose_app_in_browser):
the toolbar's "idle" indicator turns idle before the kernel websocket is connected, and a
Ctrl+Enter sent in that gap is silently dropped (shared/research/labext.md, 6.3). The app's
own kernel connection and cell models are the real conditions, so the waits poll those.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import quote

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

log = logging.getLogger(__name__)

# Cells of the test notebooks: a pool, and tasks that each say they started (a file in
# `started`) and then wait for the `gate` file the test creates; ``die_once`` first
# kills its worker, once.
START_POOL = "%load_ext fiber_jupyter\n%fiber_pool 2"
GATED_TASKS = """\
import os, signal, time
def gated(item, started={started!r}, gate={gate!r}):
    open(os.path.join(started, str(item)), "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
    return item
def die_once(item, started={started!r}, gate={gate!r}):
    marker = os.path.join(started, "died")
    if item == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return gated(item)
"""

# The visible notebook only: a restored workspace may keep hidden ones in the DOM.
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# Shared JS: the current notebook panel and its index-th cell, or an Error that says why not.
_CELL_JS = """
function fiberCell(index) {
  const panel = window.jupyterapp?.shell?.currentWidget;
  const cell = panel?.content?.widgets?.[index];
  if (!cell) throw new Error(`no cell ${index} in the current widget`);
  return {panel, cell};
}
"""

_NOTEBOOK_READY_JS = """
(path) => {
  const panel = window.jupyterapp?.shell?.currentWidget;
  if (!panel || panel.context?.path !== path || !panel.content?.widgets?.length) return false;
  const kernel = panel.sessionContext?.session?.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}
"""

# Fire and forget: returning the command's promise would make Playwright wait for the cell.
_RUN_CELL_JS = _CELL_JS + """
const {panel, cell} = fiberCell(index);
panel.content.activeCellIndex = index;
panel.content.deselectAll();
const runs = (window.__fiberRuns ??= {});
const run = (runs[cell.model.id] = {done: false, error: null});
window.jupyterapp.commands.execute('notebook:run-cell').then(
  () => { run.done = true; },
  (error) => { run.done = true; run.error = String(error); });
"""

_CELL_STARTED_JS = _CELL_JS + """
const {cell} = fiberCell(index);
const run = window.__fiberRuns?.[cell.model.id];
if (run?.error) return {error: run.error};
return (run?.done || cell.model.executionState === 'running') ? {error: null} : false;
"""

# A cell run through run_cell is idle when its command resolved; any other cell when its model
# is idle and has an execution count.
_CELL_IDLE_JS = _CELL_JS + """
const {cell} = fiberCell(index);
const run = window.__fiberRuns?.[cell.model.id];
const idle = run ? run.done
  : cell.model.executionState !== 'running' && cell.model.executionCount !== null;
if (!idle) return false;
const outputs = cell.model.outputs.toJSON();
return {error: run?.error ?? null, failed: outputs.some((o) => o.output_type === 'error')};
"""


def _function(body: str) -> str:
    """Wrap a JS body as a one-argument function, the form evaluate/wait_for_function take."""
    return f"(index) => {{ {body} }}"


def write_notebook(root: Path, name: str, cells: Sequence[str]) -> str:
    """Write an nbformat 4.5 notebook of code cells; returns the server path to open.

    Plain json keeps the harness free of extra imports; the kernelspec is set so that
    JupyterLab starts a kernel without asking which one.
    """
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
        "cells": [{"id": uuid.uuid4().hex[:8], "cell_type": "code", "metadata": {},
                   "execution_count": None, "outputs": [], "source": source}
                  for source in cells],
    }
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1))
    return Path(name).as_posix()


def open_notebook(page: Page, server: Any, name: str, timeout: float = 60_000) -> None:
    """Open a notebook in a fresh workspace and wait until its kernel really accepts code.

    The token in the URL logs the page in, as the link ``jupyter lab`` prints does.
    """
    page.goto(f"{server.url}/lab/tree/{quote(name)}?reset&token={server.token}")
    page.wait_for_function(_NOTEBOOK_READY_JS, arg=name, timeout=timeout, polling=100)
    log.info("notebook %s open, kernel connected and idle", name)


def notebook_cell(page: Page, index: int) -> Locator:
    """The index-th cell of the visible notebook, for Playwright locator assertions."""
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index)


def run_cell(page: Page, index: int, timeout: float = 30_000) -> None:
    """Start a cell and return once it is running (or done), without waiting for it to end.

    Not waiting lets a test interact with widgets while a long cell blocks the kernel.
    """
    page.evaluate(_function(_RUN_CELL_JS), index)
    started = page.wait_for_function(_function(_CELL_STARTED_JS), arg=index,
                                     timeout=timeout, polling=50).json_value()
    if started["error"]:
        raise RuntimeError(f"could not run cell {index}: {started['error']}")


def wait_cell_idle(page: Page, index: int, timeout: float = 60_000) -> bool:
    """Wait until a cell has finished; True if it ran without raising an exception."""
    result: dict[str, Any] = page.wait_for_function(
        _function(_CELL_IDLE_JS), arg=index, timeout=timeout, polling=100).json_value()
    if result["error"]:
        raise RuntimeError(f"running cell {index} failed in the page: {result['error']}")
    return not result["failed"]


def cell_output_text(page: Page, index: int) -> str:
    """The rendered text of a cell's outputs (widgets included), as a user would read it."""
    return "\n".join(notebook_cell(page, index).locator(".jp-OutputArea-output").all_inner_texts())
