"""Real-browser fixtures: a throwaway JupyterLab server and Debian's chromium via Playwright.

Why this shape: the recipe in shared/research/labext.md (section 6) was proven on the project
machine. Playwright cannot download its own browser here, so it must launch /usr/bin/chromium;
the server demands a token, as a user's does, and is bound to 127.0.0.1 only; everything
it writes lives in a temp dir so runs never see each other's workspaces, settings or kernels.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

log = logging.getLogger(__name__)

CHROMIUM = os.environ.get("FIBER_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
INSTALL_HINT = (
    "Browser tests need Debian's chromium and Python Playwright (no browser download):\n"
    "  apt-get update && apt-get install -y chromium\n"
    "  .venv/bin/pip install -e '.[test]'   # brings playwright, jupyterlab, ipywidgets"
)
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 30.0
ARTIFACTS = Path(__file__).parent / "artifacts"
# JupyterLab asks (with a toast over the page) whether to fetch news; this user setting says no.
NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, token and the directory it serves notebooks from."""

    url: str
    token: str
    root_dir: Path
    process: subprocess.Popen
    log_path: Path

    def api(self, method: str, path: str) -> Any:
        """Call the REST API with the token, as a script of the user's would."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every session and kernel so the next test starts from a clean slate."""
        sessions = self.api("GET", "/api/sessions")
        for session in sessions:
            self.api("DELETE", f"/api/sessions/{session['id']}")
        kernels = self.api("GET", "/api/kernels")
        for kernel in kernels:
            self.api("DELETE", f"/api/kernels/{kernel['id']}")
        log.info("stopped %d session(s) and %d stray kernel(s)", len(sessions), len(kernels))

    def server_log(self) -> str:
        """The server's stderr so far; shown when it fails to start or stop."""
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    """A port that was free a moment ago; port_retries=0 makes a lost race fail loudly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_dirs(base: Path) -> dict[str, Path]:
    """Fresh root, workspace, settings and Jupyter dirs, so no user config leaks in."""
    dirs = {name: base / name for name in
            ("root", "workspaces", "settings", "config", "data", "runtime", "ipython")}
    for path in dirs.values():
        path.mkdir()
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps(NOTIFICATION_SETTINGS))
    return dirs


def _server_command(port: int, token: str, dirs: dict[str, Path]) -> list[str]:
    """`jupyter lab` with the flags the research note found necessary (see its P5-P7)."""
    return [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        f"--IdentityProvider.token={token}", "--ServerApp.password=",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={dirs['root']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        f"--LabApp.user_settings_dir={dirs['settings']}",
        "--LabApp.expose_app_in_browser=True",
    ]


def _server_env(dirs: dict[str, Path]) -> dict[str, str]:
    """Environment that isolates the server and its kernels from ~/.jupyter and ~/.ipython."""
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]))
    return env


def _status_ok(server: LabServer) -> bool:
    """True once the server answers GET /api/status with 200."""
    request = urllib.request.Request(server.url + "/api/status",
                                     headers={"Authorization": f"token {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_until_up(server: LabServer, timeout: float) -> None:
    """Poll /api/status; fail at once if the process dies, or when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not _status_ok(server):
        try:
            # Doubles as the poll interval and as the "did it die?" check.
            code = server.process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            pytest.fail(f"jupyter lab exited with {code} before it was up:\n{server.server_log()}")
        if time.monotonic() > deadline:
            _stop_server(server)
            pytest.fail(f"jupyter lab not up after {timeout} s:\n{server.server_log()}")


def _stop_server(server: LabServer) -> list[str]:
    """SIGTERM (the server then shuts its kernels down), wait, and reap any straggler.

    Returns a description of every process that had to be killed, so the caller can fail.
    """
    try:
        children = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    server.process.send_signal(signal.SIGTERM)
    stragglers = []
    try:
        server.process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        stragglers.append(f"jupyter lab pid {server.process.pid}")
        server.process.kill()
        server.process.wait()
    _gone, alive = psutil.wait_procs(children, timeout=SERVER_STOP_TIMEOUT)
    for proc in alive:
        stragglers.append(f"child pid {proc.pid}")
        proc.kill()
    psutil.wait_procs(alive, timeout=SERVER_STOP_TIMEOUT)
    return stragglers


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One JupyterLab for the whole session (startup costs seconds); see the module docstring."""
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.fail(f"jupyterlab is not installed in {sys.executable}.\n{INSTALL_HINT}")
    base = tmp_path_factory.mktemp("jupyterlab")
    dirs = _make_dirs(base)
    port = _free_port()
    log_path = base / "server.log"
    token = secrets.token_hex(24)
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(_server_command(port, token, dirs), env=_server_env(dirs),
                                   cwd=dirs["root"], stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, dirs["root"], process, log_path)
    _wait_until_up(server, SERVER_START_TIMEOUT)
    log.info("jupyter lab up at %s in %.1f s", server.url, time.monotonic() - started)
    yield server
    stragglers = _stop_server(server)
    if stragglers:
        pytest.fail(f"processes outlived the server and were killed: {stragglers}\n"
                    f"{server.server_log()}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium; fails (not skips) when it cannot run, so CI cannot go green silently."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found.\n{INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"Python Playwright is not installed ({error}).\n{INSTALL_HINT}")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


def _artifact_name(node_name: str) -> str:
    """A file-system-safe name for a test (parametrized ids contain brackets and slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name)


@pytest.fixture
def page(browser: Any, lab_server: LabServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh context and page per test; a screenshot is always kept, and kernels are stopped."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    new_page.on("console", lambda msg: log.debug("console %s: %s", msg.type, msg.text))
    new_page.on("pageerror", lambda error: log.warning("page error: %s", error))
    yield new_page
    _save_screenshot(new_page, request.node)
    context.close()
    lab_server.shutdown_kernels()


def _save_screenshot(page: Any, node: pytest.Item) -> None:
    """Write artifacts/<test name>.png; a broken page must not hide the test's own result."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{_artifact_name(node.name)}.png"
    try:
        page.screenshot(path=str(path), full_page=True, timeout=10_000)
        log.info("screenshot saved to %s", path)
    except Exception as error:  # noqa: BLE001 - any Playwright error; the test result matters more
        log.warning("could not save screenshot %s: %s", path, error)
