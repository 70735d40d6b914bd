"""How long the Classify page takes to answer an upload, for three small trained networks.

Trains (or reuses) three tiny runs on the digits (LeNet, ResNet-18 and GoogLeNet at their
recommended small widths, one epoch each) in a results home, then times one upload
three ways, each on the same distinct 640x480 JPEG photos:

- ``library``: decode, then for each network preprocess + predict with Grad-CAM, its top-k
  figure and its Grad-CAM overlay: the work of the page without Streamlit;
- ``apptest``: the page run by Streamlit's AppTest, from the upload to the end of the
  script (no browser, no network);
- ``browser``: the real server (``streamlit run app.py`` with the project's config) and
  Chromium, from handing the file to the uploader to the moment the last result is drawn
  (no element stale, the three Plotly charts drawn, every image loaded, three
  "Prediction:" captions of this upload); once onto an empty uploader, once onto one that
  holds a file (Streamlit then reruns the page twice).

Goal (issue 11): the browser figure within 1 s. Usage::

    .venv/bin/python benchmarks/classify_latency.py            # temporary results home
    .venv/bin/python benchmarks/classify_latency.py --home /tmp/cls-home --uploads 8
    .venv/bin/python benchmarks/classify_latency.py --skip browser
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
MODELS = ("lenet", "resnet18", "googlenet")
CHROMIUM = os.environ.get("CNNCOMPARE_CHROMIUM", "/usr/bin/chromium")


def train_runs(home: Path) -> list[str]:
    """The three tiny runs in ``home`` (trained once; later calls are store hits)."""
    from cnncompare import training
    from cnncompare.store import ResultsStore

    store = ResultsStore(home)
    ids = []
    for model in MODELS:
        result = training.train_or_load(
            training.TrainConfig(model=model, dataset="digits", epochs=1),
            device="cpu", store=store)
        ids.append(result.run_id)
    return ids


def photo(seed: int) -> bytes:
    """A 640x480 JPEG with shapes on a gradient, different for every seed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None]
    base = (ramp * rng.uniform(0.3, 1.0, 3)).repeat(480, axis=0).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.integers(0, 600), rng.integers(0, 440)
        draw.ellipse((x, y, x + rng.integers(20, 200), y + rng.integers(20, 200)),
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"{label:<26} median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f} ms   "
            f"max {ms[-1]:7.1f} ms   ({len(ms)} uploads)")


# --------------------------------------------------------------------------- library


def time_library(home: Path, run_ids: list[str], uploads: int) -> list[float]:
    from cnncompare import classify, gradcam, plots
    from cnncompare import uploads as up
    from cnncompare.store import ResultsStore

    store = ResultsStore(home)
    classifiers = [classify.from_run(store, r) for r in run_ids]
    times = []
    for i in range(uploads + 1):  # the first one warms up
        data = photo(100 + i)
        start = time.perf_counter()
        decoded = up.decode_image(data)
        up.preview(decoded.image, 240)
        for clf in classifiers:
            pred = classify.predict(clf, decoded.image, k=5)
            plots.topk_bars(pred.frame(), pred.arch).to_json()
            gradcam.overlay(classify.enlarge(pred.shown), pred.saliency)
        if i:
            times.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------- AppTest


def time_apptest(uploads: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "views" / "classify.py"), default_timeout=300).run()
    assert not at.exception, at.exception
    times = []
    for i in range(uploads + 1):
        at.file_uploader(key="classify_upload").set_value(
            (f"photo-{i}.jpg", photo(200 + i), "image/jpeg"))
        start = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - start
        assert not at.exception and not at.error, (at.exception, at.error)
        captions = [c.value for c in at.caption if str(c.value).startswith("Prediction:")]
        assert len(captions) == len(MODELS), captions
        if i:
            times.append(elapsed)
    return times


# --------------------------------------------------------------------------- browser

# True once the page shows the results of the upload named `name` and nothing is pending.
DRAWN = """([name, n]) => {
  const root = document.querySelector('[data-testid="stMain"]') || document;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) return false;
  if (root.querySelector('[data-stale="true"]')) return false;
  const caps = [...root.querySelectorAll('[data-testid="stCaptionContainer"], '
                + '[data-testid="stImageCaption"]')].map(e => e.innerText);
  if (!caps.some(t => t.startsWith(name + ':'))) return false;
  if (caps.filter(t => t.startsWith('Prediction:')).length !== n) return false;
  const plots = root.querySelectorAll('.js-plotly-plot');
  if (plots.length !== n) return false;
  if ([...plots].some(p => !p.querySelector('.main-svg .bars, .main-svg .trace')))
    return false;
  return [...root.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_browser(home: Path, uploads: int,
                 server_log: Path | None = None) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = dict(os.environ, CNNCOMPARE_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(server_log, "wb") if server_log else tempfile.TemporaryFile()  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    times: dict[str, list[float]] = {"fresh": [], "replacing": []}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/classify")
            page.wait_for_function(DRAWN, arg=["digit_0.png", len(MODELS)], timeout=300_000)
            for i in range(uploads + 1):
                for kind in ("fresh", "replacing"):
                    name = f"photo-{i}-{kind}.jpg"
                    data = photo(300 + 2 * i + (kind == "replacing"))
                    start = time.perf_counter()
                    page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]',
                                         files=[{"name": name, "mimeType": "image/jpeg",
                                                 "buffer": data}])
                    page.wait_for_function(DRAWN, arg=[name, len(MODELS)], timeout=120_000,
                                           polling=10)
                    if i:  # the first round warms up
                        times[kind].append(time.perf_counter() - start)
                # Empty the uploader and let the page settle on the sample again: the next
                # "fresh" upload lands on an empty uploader, the "replacing" one on a full
                # one (Streamlit then reruns twice: without a file, then with the new one).
                page.click('[data-testid="stFileChipDeleteBtn"] button, '
                           '[data-testid="stFileChipDeleteBtn"]')
                page.wait_for_function(DRAWN, arg=["digit_0.png", len(MODELS)],
                                       timeout=120_000)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="results home to train in or reuse")
    parser.add_argument("--uploads", type=int, default=5, help="timed uploads per method")
    parser.add_argument("--server-log", type=Path, help="keep the server's output here")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["library", "apptest", "browser"])
    args = parser.parse_args()
    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="classify-latency-")
        args.home = Path(tmp.name)
    os.environ["CNNCOMPARE_HOME"] = str(args.home)
    start = time.perf_counter()
    run_ids = train_runs(args.home)
    print(f"runs {', '.join(run_ids)} in {args.home} ({time.perf_counter() - start:.1f} s)")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; models {', '.join(MODELS)} (digits, 1 epoch)")
    if "library" not in args.skip:
        print(summary("library", time_library(args.home, run_ids, args.uploads)))
    if "apptest" not in args.skip:
        print(summary("apptest", time_apptest(args.uploads)))
    if "browser" not in args.skip:
        if not Path(CHROMIUM).exists():
            print(f"browser  skipped: no Chromium at {CHROMIUM}")
        else:
            timed = time_browser(args.home, args.uploads, args.server_log)
            print(summary("browser", timed["fresh"]))
            print(summary("browser, replacing a file", timed["replacing"]))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
