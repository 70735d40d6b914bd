"""The real app in a real browser, for the benchmarks that time what people wait for.

:func:`serve` starts ``.venv/bin/streamlit run app.py`` from the checkout, exactly as
``make run`` does (the project's ``.streamlit/config.toml``, nothing overridden but the
port), with its own results home, and keeps every line the server prints.
:func:`chromium` opens Debian's Chromium through Playwright (headless, no sandbox, no GPU,
a fresh profile). :func:`wait_idle` waits until Streamlit says the page's script is done.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
STREAMLIT = REPO / ".venv" / "bin" / "streamlit"
CHROMIUM = os.environ.get("CNNCOMPARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``streamlit run app.py``: its URL, its results home and what it printed."""

    url: str
    home: Path
    process: subprocess.Popen
    started: float  # time.monotonic() when the process started
    answered: float = 0.0  # time.monotonic() when its health check first said ok
    lines: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, line)

    def output_since(self, since: float) -> list[str]:
        return [line for t, line in list(self.lines) if t >= since]


@contextlib.contextmanager
def serve(home: Path | None = None, *, timeout: float = 120.0,
          extra_env: dict[str, str] | None = None, app_dir: Path = REPO) -> Iterator[Server]:
    """Start the app's server on a free localhost port; stop it when the block ends.

    ``app_dir`` holds the ``app.py`` and ``.streamlit/`` to serve (the checkout; another
    folder for an experiment with a changed page)."""
    home = Path(home or tempfile.mkdtemp(prefix="cnncompare-bench-home-"))
    port = free_port()
    env = dict(os.environ, CNNCOMPARE_HOME=str(home), PYTHONUNBUFFERED="1",
               **(extra_env or {}))
    started = time.monotonic()
    proc = subprocess.Popen([str(STREAMLIT), "run", "app.py", "--server.port", str(port)],
                            cwd=app_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    server = Server(url=f"http://localhost:{port}", home=home, process=proc, started=started)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        server.answered = _wait_healthy(server, timeout)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)


def _wait_healthy(server: Server, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = "\n".join(line for _, line in server.lines[-20:])
            raise RuntimeError(f"streamlit exited with {server.process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(server.url + "/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer at {server.url} within {timeout}s")


@contextlib.contextmanager
def chromium():
    """A Playwright browser on Debian's Chromium with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="cnncompare-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1800})
        try:
            yield context
        finally:
            context.close()


def wait_idle(page, timeout_ms: int = 120_000, steady_ms: int = 200) -> float:
    """Until the page is drawn: Streamlit's script state ``notRunning`` with no element
    still a placeholder (``stSkeleton``), and still so ``steady_ms`` later (the state reads
    ``notRunning`` for a moment before a rerun starts, too).

    Returns the ``time.monotonic()`` of the first of those two sightings: when the page
    was drawn, without the wait that confirmed it.
    """
    deadline = time.monotonic() + timeout_ms / 1e3
    first = None
    while True:
        left_ms = max(1, int((deadline - time.monotonic()) * 1e3))
        page.locator(IDLE).wait_for(timeout=left_ms)
        seen = time.monotonic()
        if page.locator('[data-testid^="stSkeleton"]').count():
            first = None
        elif first is None:
            first = seen
        else:
            return first
        if seen > deadline:
            raise TimeoutError("the page did not finish drawing in time")
        page.wait_for_timeout(steady_ms)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} cores"
