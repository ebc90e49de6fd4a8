"""Build entry for fiber-jupyter (``pip install .``)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "fiber_jupyter" / "__init__.py").read_text()).group(1)

setup(
    name="fiber-jupyter",
    version=VERSION,
    description="Elastic, crash-proof process pools for Jupyter notebooks",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
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
    extras_require={
        "test": ["pytest>=7", "pytest-timeout", "numpy", "psutil", "hypothesis", "ruff",
                 "jupyter_client", "jupyterlab>=4.6,<5", "playwright==1.65.2", "nbclient",
                 "nbformat", "kubernetes==37.0.2"],
    },
    classifiers=[
        "Framework :: Jupyter",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Distributed Computing",
    ],
)
