"""Smoke test of the browser harness: a widget round trip through a real kernel.

The slider's readout changes in the page alone; the label changes only after the kernel's
observer has run and sent the new value back, so the test fails if that wiring breaks.
"""

from __future__ import annotations

from .lab import (
    cell_output_text,
    notebook_cell,
    open_notebook,
    run_cell,
    wait_cell_idle,
    write_notebook,
)

SLIDER_CELL = """\
import ipywidgets as widgets
from IPython.display import display

slider = widgets.IntSlider(value=10, min=0, max=100, description="workers")
label = widgets.HTML(value="value=10")

def on_value(change):
    label.value = f"value={change['new']}"

slider.observe(on_value, names="value")
display(widgets.VBox([slider, label]))
"""
ROUND_TRIP_MS = 15_000


def test_slider_observer_updates_label(page, lab_server):
    """Keyboard and mouse both move the slider, and the kernel's observer echoes each value."""
    from playwright.sync_api import expect

    name = write_notebook(lab_server.root_dir, "harness_smoke.ipynb", [SLIDER_CELL])
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    assert wait_cell_idle(page, 0), cell_output_text(page, 0)

    cell = notebook_cell(page, 0)
    readout, label = cell.locator(".widget-readout"), cell.locator(".widget-html-content")
    expect(label).to_have_text("value=10", timeout=ROUND_TRIP_MS)

    cell.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    expect(readout).to_have_text("11")
    expect(label).to_have_text("value=11", timeout=ROUND_TRIP_MS)

    track = cell.locator(".widget-slider .noUi-target").bounding_box()
    page.mouse.click(track["x"] + track["width"] * 0.75, track["y"] + track["height"] / 2)
    expect(readout).not_to_have_text("11")
    value = int(readout.inner_text())
    assert 60 <= value <= 90, f"a click at 75% of the track gave {value}"
    expect(label).to_have_text(f"value={value}", timeout=ROUND_TRIP_MS)
