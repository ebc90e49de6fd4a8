"""Specification: the package ships the side panel prebuilt, built from its current sources.

Users install a wheel and never need Node; the wheel's panel is rebuilt
whenever its TypeScript or styles changed, so a stale build is never shipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

PANEL_IN_WHEEL = "fiber_jupyter-0.1.0.data/data/share/jupyter/labextensions/fiber-jupyter/"


def test_jupyterlab_lists_the_panel_as_enabled():
    listed = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                            capture_output=True, text=True, check=True)
    assert "fiber-jupyter v0.1.0 enabled OK (python, fiber-jupyter)" in (
        listed.stdout + listed.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "")


def build_wheel(source: Path, into: Path) -> zipfile.ZipFile:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                         f"{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(into), str(source)], check=True, env=environment)
    [wheel] = into.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_a_wheel_built_after_a_style_change_ships_the_changed_panel(checkout, tmp_path):
    marker = "fiber-panel-style-marker-7f3a"
    styles = checkout / "labextension" / "style" / "base.css"
    styles.write_text(styles.read_text() + f"\n.{marker} {{ color: inherit; }}\n")
    with build_wheel(checkout, tmp_path / "wheel") as wheel:
        names = wheel.namelist()
        assert PANEL_IN_WHEEL + "package.json" in names
        assert PANEL_IN_WHEEL + "install.json" in names
        scripts = [name for name in names
                   if name.startswith(PANEL_IN_WHEEL + "static/") and name.endswith(".js")]
        assert any(name.split("/")[-1].startswith("remoteEntry.") for name in scripts)
        assert any(marker in wheel.read(name).decode() for name in scripts)
