"""How long the command line takes to answer: ``--help`` and ``list`` against ``import torch``.

Goals (issue 11): ``python -m cnncompare --help`` within 1 s; ``python -m cnncompare list``
within the time of ``import torch`` + 0.5 s. Each command runs as a fresh process, the
three in turn for ``--rounds`` rounds (so that a burst of load hits all three alike);
``list`` runs twice a round: cold (a new, empty results home: parameter counts built) and
warm (the counts read from the home's cache). Prints a Markdown table of the median and
the p10–p90 range of the wall times and writes it as CSV to benchmarks/results/.

    .venv/bin/python benchmarks/cli_start.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def wall(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of ``cmd`` (its output discarded; it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    warm_home = tempfile.mkdtemp(prefix="cnncompare-cli-warm-")
    base = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    commands = {
        "import torch": ([py, "-c", "import torch"], None),
        "cnncompare --help": ([py, "-m", "cnncompare", "--help"], None),
        "cnncompare list (cold home)": ([py, "-m", "cnncompare", "list"], "cold"),
        "cnncompare list (warm home)": ([py, "-m", "cnncompare", "list"], warm_home),
    }
    wall(commands["cnncompare list (warm home)"][0], dict(base, CNNCOMPARE_HOME=warm_home))
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (cmd, home) in commands.items():
            env = dict(base)
            if home == "cold":
                env["CNNCOMPARE_HOME"] = tempfile.mkdtemp(prefix="cnncompare-cli-cold-")
            elif home:
                env["CNNCOMPARE_HOME"] = home
            times[name].append(wall(cmd, env))
    rows = []
    torch_median = float(np.median(times["import torch"]))
    for name, t in times.items():
        median = float(np.median(t))
        rows.append({"command": name, "median_s": round(median, 3),
                     "p10_s": round(float(np.percentile(t, 10)), 3),
                     "p90_s": round(float(np.percentile(t, 90)), 3),
                     "minus_torch_s": round(median - torch_median, 3),
                     "rounds": len(t)})
    frame = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS / "cli_start.csv", index=False)
    print(f"load average before and after: {os.getloadavg()}")
    print(frame.to_markdown(index=False))


if __name__ == "__main__":
    main()
