"""Specification: the Binder configuration (binder/) installs in a fresh environment as
Binder runs it (requirements.txt, then postBuild from the repository's root), with the side
panel enabled, and every demo notebook runs there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(command: list, cwd: Path, environment: dict) -> str:
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_binder_installs_the_package_with_its_panel_and_the_notebooks_run(checkout, tmp_path):
    venv = tmp_path / "binder-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    environment = {**os.environ, "VIRTUAL_ENV": str(venv),
                   "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "JUPYTER_DATA_DIR": str(tmp_path / "data"),
                   "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
                   "IPYTHONDIR": str(tmp_path / "ipython")}
    run(["python", "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
        checkout, environment)
    run(["bash", "binder/postBuild"], checkout, environment)
    listed = run(["jupyter", "labextension", "list"], checkout, environment)
    assert "fiber-jupyter v0.1.0" in listed and str(venv) in listed
    notebooks = sorted((checkout / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 5
    for notebook in notebooks:
        run(["jupyter", "nbconvert", "--to", "notebook", "--execute", "--output",
             str(tmp_path / notebook.name), str(notebook.relative_to(checkout))],
            checkout, environment)
