"""In a real JupyterLab: dragging the pool widget's slider rescales the pool during a blocking map.

The map's tasks wait for a gate file that the test creates only after it saw
the new workers; so the pool grew while the cell was still blocked. A
screenshot taken at that moment is kept in artifacts/ next to the one the
fixture takes at the end.
"""

from __future__ import annotations

from pathlib import Path

from ..conftest import wait_for, worker_pids
from .conftest import ARTIFACTS
from .lab import (GATED_TASKS, START_POOL, cell_output_text, notebook_cell, open_notebook,
                  run_cell, wait_cell_idle, write_notebook)

GATED_MAP = GATED_TASKS + """
results = pool.map(gated, range(2), chunksize=1)
print("results", results)
"""
UPDATE_MS = 30_000


def _drag_slider_to(page, cell, fraction: float) -> int:
    """Drag the slider's handle to ``fraction`` of its track; the value the page shows."""
    handle = cell.locator(".noUi-handle").bounding_box()
    track = cell.locator(".widget-slider .noUi-target").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * fraction, track["y"] + track["height"] / 2,
                    steps=5)
    page.mouse.up()
    return int(cell.locator(".widget-readout").inner_text())


def test_dragging_the_slider_during_a_blocking_map_changes_the_workers(page, lab_server,
                                                                       tmp_path: Path):
    from playwright.sync_api import expect

    started, gate = tmp_path / "started", tmp_path / "gate"
    started.mkdir()
    name = write_notebook(lab_server.root_dir, "pool_widget.ipynb",
                          [START_POOL, GATED_MAP.format(started=str(started), gate=str(gate))])
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    assert wait_cell_idle(page, 0), cell_output_text(page, 0)
    widget = notebook_cell(page, 0)
    expect(widget.locator(".widget-html-content").nth(1)).to_contain_text(
        "target 2 \u00b7 live 2", timeout=UPDATE_MS)

    run_cell(page, 1)
    wait_for(lambda: len(list(started.iterdir())) == 2, what="both tasks of the map running")
    size = _drag_slider_to(page, widget, 0.1)
    assert size not in (2, 1), f"the drag left the slider at {size}"
    wait_for(lambda: len(worker_pids()) == size, timeout=60,
             what=f"{size} worker processes while the map blocks")
    expect(widget.locator(".widget-html-content").nth(1)).to_contain_text(
        f"target {size} \u00b7 live {size}", timeout=UPDATE_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pool_widget_during_blocking_map.png"), full_page=True)
    assert not gate.exists()

    gate.touch()
    assert wait_cell_idle(page, 1), cell_output_text(page, 1)
    assert "results [0, 1]" in cell_output_text(page, 1)
