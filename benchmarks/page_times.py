"""How long each page of the app takes to render in a browser, from a fresh server.

Goals (issue 11): the first page of a fresh server renders completely within 3 s of the
server answering; every later page within 1 s; the Overview shows the zoo's MACs and
FLOPs for all 18 networks within 5 s cold.

The server is started as ``make run`` does (``.venv/bin/streamlit run app.py``, the
project's config) with an empty results home. As soon as its health check answers,
Chromium opens the Overview; the time runs until Streamlit reports the script finished
with the page's title shown ("rendered"; the device and the zoo, which need torch, may
still be loading then), until the zoo table is shown (its parameters), and until its MAC
and FLOP columns are filled ("MACs shown"). Then every other page is opened from the sidebar, twice
round, each timed from the click to its finished script. Finally the server is restarted
on the same home (the counts now on disk) and the Overview is timed again.

    .venv/bin/python benchmarks/page_times.py

Writes benchmarks/results/page_times.csv and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import RESULTS_DIR, chromium, load_average, serve, wait_idle  # noqa: E402

COUNTS_DONE = "MACs and FLOPs counted for all"
"""Text the Overview shows once every network's MACs and FLOPs are in its table."""


def time_first_page(server, browser, label: str) -> list[dict]:
    page = browser.new_page()
    start = server.answered
    page.goto(server.url + "/", wait_until="commit")
    page.get_by_role("heading", name="cnncompare").first.wait_for(timeout=120_000)
    rendered = wait_idle(page) - start
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
    zoo = time.monotonic() - start
    page.get_by_text(COUNTS_DONE).first.wait_for(timeout=120_000)
    macs = time.monotonic() - start
    rows = [{"server": label, "page": "Overview (first page)", "visit": 1,
             "seconds": rendered, "measure": "server answering -> page rendered"},
            {"server": label, "page": "Overview (first page)", "visit": 1,
             "seconds": zoo, "measure": "server answering -> zoo table shown (parameters)"},
            {"server": label, "page": "Overview (first page)", "visit": 1,
             "seconds": macs, "measure": "server answering -> MACs and FLOPs shown"}]
    return rows, page


def time_navigation(page, label: str, rounds: int) -> list[dict]:
    """Open every page of the sidebar in turn (the Overview last), ``rounds`` times."""
    rows = []
    nav = page.locator('[data-testid="stSidebarNav"]')
    # Each link's text is its icon's name, then its label: keep the label.
    links = [a.inner_text().strip().splitlines()[-1] for a in nav.get_by_role("link").all()]
    links = links[1:] + links[:1]  # the first page is open already: visit it last
    for visit in range(1, rounds + 1):
        for link in links:
            before = page.locator("h1").first.inner_text()
            start = time.monotonic()
            nav.get_by_role("link", name=link, exact=True).click()
            page.wait_for_function(
                "before => { const h = document.querySelector('h1');"
                " return h && h.innerText !== before; }", arg=before, timeout=120_000)
            drawn = wait_idle(page)
            rows.append({"server": label, "page": link, "visit": visit,
                         "seconds": drawn - start, "measure": "click -> page rendered"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="visits of every page")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cnncompare-pages-"))
    rows = []
    load_before = load_average()
    with chromium() as browser:
        with serve(home) as server:
            first, page = time_first_page(server, browser, "fresh (empty home)")
            rows += first
            rows += time_navigation(page, "fresh (empty home)", args.rounds)
            page.close()
        with serve(home) as server:  # a restart: the counts are on disk now
            first, page = time_first_page(server, browser, "restarted (same home)")
            rows += first
            page.close()
    frame = pd.DataFrame(rows)
    frame["seconds"] = frame["seconds"].round(2)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS_DIR / "page_times.csv", index=False)
    print(f"load average before: {load_before}; after: {load_average()}")
    print(frame.to_markdown(index=False))


if __name__ == "__main__":
    main()
