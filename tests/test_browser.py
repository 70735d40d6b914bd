"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium, every page.

Skips with a reason where Chromium is absent (CI installs it in .ci/run). Screenshots of
every page land in artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = os.environ.get("CNNCOMPARE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic",
]

# (url path, the page's title) for every page in app.py's navigation.
PAGES = [
    ("", "cnncompare"),
    ("architectures", "Architectures"),
    ("conv_arithmetic", "Convolution arithmetic"),
    ("profile_bench", "Profile & Benchmark"),
    ("train", "Train"),
    ("compare", "Compare"),
    ("classify", "Classify"),
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"Chromium not found at {CHROMIUM} "
                              "(apt-get install chromium; .ci/run does this)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout}s")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A live server on a free localhost port with its own results home."""
    home = tmp_path_factory.mktemp("browser-home")
    _seed_runs(home)
    port = _free_port()
    env = dict(os.environ, CNNCOMPARE_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(home / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _seed_runs(home: Path) -> None:
    """Two tiny stored runs, so that Compare has something to show."""
    if not (REPO / "cnncompare" / "cli_train.py").exists():
        return
    env = dict(os.environ, CNNCOMPARE_HOME=str(home))
    for model in ("lenet", "resnet18"):
        subprocess.run(
            [sys.executable, "-m", "cnncompare", "train", "--model", model, "--dataset",
             "digits", "--epochs", "2", "--width", "0.25" if model != "lenet" else "1",
             "--train-size", "400", "--test-size", "200", "--format", "json"],
            cwd=REPO, env=env, check=True, capture_output=True, timeout=300,
        )


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def _wait_until_idle(page, timeout_ms: int = 180_000) -> None:
    """Wait until Streamlit reports that the page's script has finished running."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout_ms)
    page.wait_for_timeout(1500)  # let charts and data grids paint


@pytest.mark.parametrize("path,title", PAGES)
def test_page_renders_in_chromium(app_url, browser, path, title):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 3600})
    try:
        page.goto(f"{app_url}/{path}", wait_until="domcontentloaded")
        page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
        _wait_until_idle(page)
        shot = ARTIFACTS / f"{path or 'overview'}.png"
        page.screenshot(path=str(shot), full_page=True)
        errors = page.locator('[data-testid="stException"]')
        assert errors.count() == 0, errors.first.inner_text()
        assert shot.stat().st_size > 10_000
    finally:
        page.close()


def test_drawing_a_digit_gets_a_prediction(app_url, browser):
    """The canvas works in a real browser: a stroke drawn with the mouse is classified by
    the stored digit networks as soon as the button is released."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    try:
        page.goto(f"{app_url}/classify", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Classify").first.wait_for(timeout=120_000)
        _wait_until_idle(page)
        page.get_by_text("A digit I draw").click()
        page.get_by_text("Draw a digit in the black square").wait_for(timeout=120_000)
        _wait_until_idle(page)
        canvas = page.locator("canvas").last  # Fabric.js draws on its upper canvas
        box = canvas.bounding_box()
        assert box is not None and box["width"] >= 200
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15
        page.mouse.move(x, y)
        page.mouse.down()
        for step in range(1, 25):  # a vertical stroke, top to bottom: a "1"
            page.mouse.move(x, y + step * box["height"] * 0.03)
        page.mouse.up()
        page.get_by_text("Prediction: ").first.wait_for(timeout=120_000)
        _wait_until_idle(page)
        page.screenshot(path=str(ARTIFACTS / "classify-drawing.png"), full_page=True)
        assert page.get_by_text("Draw a digit in the black square").count() == 0
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "trained on digits" in text and "input as the network sees it" in text
        errors = page.locator('[data-testid="stException"]')
        assert errors.count() == 0, errors.first.inner_text()
    finally:
        page.close()



# (url path, a Chinese heading it shows) for every page translated so far (issue 15); the
# pages still to translate join this list when they are.
PAGES_ZH = [
    ("", "去哪里"),
    ("architectures", "网络结构"),
    ("conv_arithmetic", "卷积算术"),
    ("profile_bench", "性能分析与基准测试"),
    ("train", "训练"),
    ("compare", "比较"),
    ("classify", "分类"),
]


@pytest.mark.parametrize("path,heading", PAGES_ZH)
def test_page_renders_in_chinese(app_url, browser, path, heading, tmp_path):
    """Each translated page with ?lang=zh: its Chinese heading, the Chinese sidebar, no
    error; the screenshot (under the test's tmp dir, copied to artifacts/browser/) shows
    whether the CJK glyphs render (a CJK font must be installed: .ci/run does it)."""
    import shutil

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 3600})
    try:
        page.goto(f"{app_url}/{path}?lang=zh", wait_until="domcontentloaded")
        page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
        _wait_until_idle(page)
        shot = tmp_path / f"zh-{path or 'overview'}.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        errors = page.locator('[data-testid="stException"]')
        assert errors.count() == 0, errors.first.inner_text()
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "卷积算术" in sidebar and "中文" in sidebar
        assert "lang=zh" in page.url
        assert shot.stat().st_size > 10_000
    finally:
        page.close()


def test_a_chinese_browser_gets_chinese_and_the_url_keeps_it(app_url, browser):
    """No ?lang=: the browser's language decides (st.context.locale), and the URL then says
    ?lang=zh, so the link can be shared."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 2000})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/conv_arithmetic", wait_until="domcontentloaded")
        page.get_by_role("heading", name="卷积算术").first.wait_for(timeout=120_000)
        _wait_until_idle(page)
        assert "lang=zh" in page.url
    finally:
        context.close()
