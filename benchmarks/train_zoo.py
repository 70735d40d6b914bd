"""Train every model of the zoo at its recommended small configuration on the digits.

Each model gets ``model_info(name).small`` (input size, channels, width), the digits
default split (1,437 / 360, stratified), Adam at 1e-3, batch 64 and the same number of
epochs; chance is 10%. The runs go to a temporary results home, so every figure is a
fresh training, timed on this machine.

Run: ``.venv/bin/python benchmarks/train_zoo.py [--epochs 10] [--models lenet,resnet18]``.
Writes ``benchmarks/results/train_zoo.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnncompare.registry import list_models, model_info  # noqa: E402
from cnncompare.store import ResultsStore  # noqa: E402
from cnncompare.training import TrainConfig, train_or_load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def train_one(name: str, epochs: int, store: ResultsStore, device: str) -> dict:
    info = model_info(name)
    small = info.small
    cfg = TrainConfig(name, epochs=epochs, input_size=small["input_size"],
                      in_channels=small["in_channels"], width=small.get("width", 1.0))
    t0 = time.perf_counter()
    r = train_or_load(cfg, store=store, device=device)
    wall = time.perf_counter() - t0
    h = r.history
    return {
        "model": name, "family": info.family,
        "input": f"{small['in_channels']}x{small['input_size']}x{small['input_size']}",
        "width": small.get("width", 1.0), "params": r.params, "epochs": epochs,
        "train_s": round(r.train_seconds, 1), "wall_s": round(wall, 1),
        "img_per_s": round(float(len(h) / (1 / h["images_per_s"]).sum()), 0),
        "test_acc": r.test_acc, "best_test_acc": float(h["test_acc"].max()),
        "run_id": r.run_id,
    }


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (plain text where the optional ``tabulate`` is missing)."""
    try:
        return frame.to_markdown(index=False, floatfmt=".3f")
    except ImportError:
        return frame.to_string(index=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else list_models()
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        store = ResultsStore(home)
        for name in names:
            row = train_one(name.strip(), args.epochs, store, args.device)
            rows.append(row)
            print(f"{row['model']:12s} {row['input']:8s} w{row['width']:<6g} "
                  f"{row['params']:>9,} params  {row['train_s']:6.1f} s  "
                  f"{row['img_per_s']:7.0f} img/s  acc {row['test_acc']:.3f}", flush=True)
    total = time.perf_counter() - start
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / "train_zoo.csv", index=False)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
               f"threads, {os.cpu_count()} CPUs, torch {torch.__version__}")
    md = [f"# The zoo on digits ({args.epochs} epochs, 1,437/360, Adam 1e-3, batch 64)", "",
          f"Machine: {machine}. Whole zoo: {total:.0f} s.", "",
          markdown(table.drop(columns="run_id")), ""]
    (RESULTS / "train_zoo.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
