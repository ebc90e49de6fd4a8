"""In a real JupyterLab: the Fiber side panel follows the notebook's kernel and scales its pools.

Maps block on a gate file that the test creates only after it saw what it
expects, so whatever it saw happened while the cell was still running. The
number of workers is checked from the kernel's side: their processes.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from ..conftest import wait_for, worker_pids
from .conftest import ARTIFACTS
from .lab import (GATED_TASKS, START_POOL, cell_output_text, open_notebook, run_cell,
                  wait_cell_idle, write_notebook)

MAP = "results = pool.map({task}, range(2), chunksize=1)\nprint('results', results)"
UPDATE_MS = 30_000
PANEL = "#fiber-panel"


def open_panel(page):
    page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="fiber-panel"]').click()
    return page.locator(PANEL)


def card(panel, name: str):
    return panel.locator(f'.jp-FiberPanel-pool[data-pool="{name}"]')


def count(pool_card, name: str):
    return pool_card.locator(f'[data-count="{name}"]')


@pytest.fixture
def gate(tmp_path: Path):
    started, gate_file = tmp_path / "started", tmp_path / "gate"
    started.mkdir()
    yield started, gate_file
    gate_file.touch()


def notebook(lab_server, name: str, gate, *cells: str) -> str:
    started, gate_file = gate
    tasks = GATED_TASKS.format(started=str(started), gate=str(gate_file))
    return write_notebook(lab_server.root_dir, name, [START_POOL, tasks, *cells])


def start(page, lab_server, name: str) -> None:
    open_notebook(page, lab_server, name)
    for index in (0, 1):
        run_cell(page, index)
        assert wait_cell_idle(page, index), cell_output_text(page, index)


def test_the_panel_lists_the_pool_of_fiber_pool_with_its_workers(page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_lists.ipynb", gate))
    pool = card(open_panel(page), "pool")
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    expect(count(pool, "target")).to_have_text("2")
    expect(pool).to_have_attribute("data-state", "running")
    expect(pool.locator('.jp-FiberPanel-bar [data-worker-state="idle"]')).to_be_visible()


def test_scaling_from_the_panel_during_a_blocking_map_changes_the_workers_before_it_returns(
        page, lab_server, gate):
    from playwright.sync_api import expect

    started, gate_file = gate
    name = notebook(lab_server, "panel_scales.ipynb", gate, MAP.format(task="gated"))
    start(page, lab_server, name)
    pool = card(open_panel(page), "pool")
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    run_cell(page, 2)
    wait_for(lambda: len(list(started.iterdir())) == 2, what="both tasks of the map running")
    size_box = pool.locator(".jp-FiberPanel-size")
    size_box.fill("5")
    size_box.press("Enter")
    wait_for(lambda: len(worker_pids()) == 5, timeout=60,
             what="5 worker processes while the map blocks")
    expect(count(pool, "live")).to_have_text("5", timeout=UPDATE_MS)
    expect(pool.locator(".jp-FiberPanel-call")).to_contain_text("0/2")
    page.screenshot(path=str(ARTIFACTS / "side_panel_during_blocking_map.png"), full_page=True)
    assert not gate_file.exists()
    gate_file.touch()
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    assert "results [0, 1]" in cell_output_text(page, 2)


# A short CPU-bound map: four batches of one item, each a few tens of milliseconds of work.
SPIN_MAP = """\
def spin(item):
    total = 0
    for i in range(1_000_000):
        total += i * i
    return item
print('results', pool.map(spin, range(4), chunksize=1))
"""
WORKER_IDS = "print('workers:', *sorted(worker.worker_id for worker in pool.workers()))"


def test_the_panel_shows_what_the_workers_use_and_names_the_heaviest(page, lab_server, gate):
    from playwright.sync_api import expect

    name = notebook(lab_server, "panel_usage.ipynb", gate, SPIN_MAP, WORKER_IDS)
    start(page, lab_server, name)
    for index in (2, 3):
        run_cell(page, index)
        assert wait_cell_idle(page, index), cell_output_text(page, index)
    assert "results [0, 1, 2, 3]" in cell_output_text(page, 2)
    workers = re.search(r"workers: (.*)", cell_output_text(page, 3)).group(1).split()
    assert len(workers) == 2, workers

    pool = card(open_panel(page), "pool")
    usage = pool.locator(".jp-FiberPanel-usage")
    # Workers report with their heartbeats: wait for a positive whole number of bytes.
    expect(usage).to_have_attribute("data-usage-memory", re.compile(r"^[1-9][0-9]*$"),
                                    timeout=UPDATE_MS)
    expect(usage).to_contain_text("memory")
    heaviest = pool.locator(".jp-FiberPanel-heaviest")
    expect(heaviest).to_be_visible()
    worker = heaviest.get_attribute("data-worker-id")
    assert worker in workers, (worker, workers)
    expect(heaviest).to_contain_text(f"most memory: {worker},")
    # Hovering the bar's idle segment tells the range of those workers' memory.
    idle = pool.locator('.jp-FiberPanel-segment[data-worker-state="idle"]')
    expect(idle).to_have_attribute("title", re.compile(r"^2 idle \u00b7 .*memory \d"),
                                   timeout=UPDATE_MS)
    page.screenshot(path=str(ARTIFACTS / "side_panel_usage.png"), full_page=True)


SVG_URL = "data:image/svg+xml;charset=utf-8,"
DONE_BAR = re.compile(r'<rect [^>]*data-outcome="done"')
# How many finished batches the timeline of a card shows, read from its data: URL.
DONE_BARS_JS = """(selector) => {
  const src = document.querySelector(selector)?.getAttribute('src') ?? '';
  const svg = decodeURIComponent(src.slice(src.indexOf(',') + 1));
  return (svg.match(/<rect [^>]*data-outcome="done"/g) ?? []).length;
}"""


def test_the_timeline_toggle_shows_the_batches_follows_new_ones_and_hides(page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_timeline.ipynb", gate, SPIN_MAP))
    run_cell(page, 2)
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    pool = card(open_panel(page), "pool")
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    toggle = pool.get_by_role("button", name="Timeline of pool pool", exact=True)
    image = pool.locator("img.jp-FiberPanel-timeline")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(image).to_be_hidden()

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(image).to_be_visible(timeout=UPDATE_MS)
    expect(image).to_have_attribute("alt", "Timeline of pool pool")
    image.evaluate("(image) => image.decode()")  # rejects unless the SVG is a valid picture
    src = image.get_attribute("src")
    assert src.startswith(SVG_URL), src[:80]
    svg = unquote(src[len(SVG_URL):])
    assert svg.startswith("<svg"), svg[:80]
    assert len(DONE_BAR.findall(svg)) == 4, svg  # one bar per batch of the map

    # While open it follows the pool: the second map's batches join the picture.
    run_cell(page, 2)
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    selector = f'{PANEL} .jp-FiberPanel-pool[data-pool="pool"] img.jp-FiberPanel-timeline'
    page.wait_for_function(f"(selector) => ({DONE_BARS_JS})(selector) === 8", arg=selector,
                           timeout=UPDATE_MS)
    page.screenshot(path=str(ARTIFACTS / "side_panel_timeline.png"), full_page=True)

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(image).to_be_hidden()


SIZING = "print('sizing', pool.status().adapt, pool.status().target)"


def test_the_panel_switches_a_pool_to_adaptive_and_the_size_box_makes_it_manual_again(
        page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_adapt.ipynb", gate, SIZING))
    pool = card(open_panel(page), "pool")
    mode = pool.locator(".jp-FiberPanel-mode")
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    expect(pool).to_have_attribute("data-mode", "manual")
    expect(mode).to_have_text("manual")

    pool.locator(".jp-FiberPanel-adapt-min").fill("3")
    pool.locator(".jp-FiberPanel-adapt-max").fill("4")
    pool.locator(".jp-FiberPanel-adapt").check()
    expect(pool).to_have_attribute("data-mode", "adaptive", timeout=UPDATE_MS)
    expect(mode).to_have_text("adaptive 3\u20134")
    expect(count(pool, "live")).to_have_text("3", timeout=UPDATE_MS)  # grown to its minimum
    wait_for(lambda: len(worker_pids()) == 3, timeout=60, what="3 worker processes")
    page.screenshot(path=str(ARTIFACTS / "side_panel_adaptive.png"), full_page=True)
    run_cell(page, 2)
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    assert "sizing (3, 4) 3" in cell_output_text(page, 2)

    size_box = pool.locator(".jp-FiberPanel-size")
    size_box.fill("2")
    size_box.press("Enter")
    expect(pool).to_have_attribute("data-mode", "manual", timeout=UPDATE_MS)
    expect(mode).to_have_text("manual")
    expect(pool.locator(".jp-FiberPanel-adapt")).not_to_be_checked()
    expect(count(pool, "target")).to_have_text("2")
    run_cell(page, 2)
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    assert "sizing None 2" in cell_output_text(page, 2)


def test_a_worker_killed_during_a_map_shows_as_lost_and_recovered(page, lab_server, gate):
    from playwright.sync_api import expect

    _, gate_file = gate
    name = notebook(lab_server, "panel_crash.ipynb", gate, MAP.format(task="die_once"))
    start(page, lab_server, name)
    pool = card(open_panel(page), "pool")
    run_cell(page, 2)
    expect(count(pool, "lost")).to_have_text("1", timeout=UPDATE_MS)
    log = pool.locator(".jp-FiberPanel-log")
    expect(log).to_contain_text("lost: exit -9 (SIGKILL)", timeout=UPDATE_MS)
    expect(log).to_contain_text("re-run on", timeout=UPDATE_MS)
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    page.screenshot(path=str(ARTIFACTS / "side_panel_crash_recovered.png"), full_page=True)
    gate_file.touch()
    assert wait_cell_idle(page, 2), cell_output_text(page, 2)
    assert "results [0, 1]" in cell_output_text(page, 2)


def test_shutting_down_from_the_panel_stops_the_workers(page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_shutdown.ipynb", gate))
    panel = open_panel(page)
    pool = card(panel, "pool")
    expect(count(pool, "live")).to_have_text("2", timeout=UPDATE_MS)
    pool.locator(".jp-FiberPanel-shutdown").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    expect(pool).to_have_count(0, timeout=UPDATE_MS)
    wait_for(lambda: worker_pids() == [], timeout=60, what="the workers to exit")
    expect(panel.locator(".jp-FiberPanel-status")).to_contain_text("No pools yet")


def test_a_kernel_restart_empties_the_panel(page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_restart.ipynb", gate))
    panel = open_panel(page)
    expect(count(card(panel, "pool"), "live")).to_have_text("2", timeout=UPDATE_MS)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                  ".kernel.restart()")
    expect(panel.locator(".jp-FiberPanel-pool")).to_have_count(0, timeout=UPDATE_MS)
    expect(panel.locator(".jp-FiberPanel-status")).to_contain_text(
        "not loaded in this kernel", timeout=UPDATE_MS)
    wait_for(lambda: worker_pids() == [], timeout=60, what="the old kernel's workers to exit")


THEME_COLOURS_JS = """(panel) => {
  const style = getComputedStyle(panel);
  return {background: style.backgroundColor, text: style.color};
}"""


def test_the_panel_follows_the_dark_theme(page, lab_server, gate):
    from playwright.sync_api import expect

    start(page, lab_server, notebook(lab_server, "panel_theme.ipynb", gate))
    panel = open_panel(page)
    expect(count(card(panel, "pool"), "live")).to_have_text("2", timeout=UPDATE_MS)
    light = panel.evaluate(THEME_COLOURS_JS)
    try:
        change_theme(page, "JupyterLab Dark")
        page.wait_for_function(f"(light) => ({THEME_COLOURS_JS})(document.querySelector("
                               f"'{PANEL}')).background !== light.background", arg=light)
        dark = panel.evaluate(THEME_COLOURS_JS)
        assert dark["text"] != light["text"]
        page.wait_for_selector("#jupyterlab-splash", state="detached")  # the change's veil
        page.screenshot(path=str(ARTIFACTS / "side_panel_dark.png"), full_page=True)
    finally:  # the theme is a user setting: later tests of the session would inherit it
        change_theme(page, "JupyterLab Light")


def change_theme(page, theme: str) -> None:
    page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme})", theme)
    page.wait_for_function("(light) => document.body.dataset.jpThemeLight === light",
                           arg=str(theme == "JupyterLab Light").lower())
