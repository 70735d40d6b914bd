"""Train the whole zoo on the digits under the default recipe, several seeds each.

Every model at its recommended small configuration (the quick preset: ``model_info(name)
.small``), the digits default split (1,437 drawn for training, 144 of them held out for
validation; 360 test; stratified), the shared default recipe (Adam, peak lr 1e-3, batch
32, one epoch of warm-up, the peak held, a linear decay over the last 30% of the steps),
``--epochs`` epochs and ``--seeds`` seeds; chance is 10%. It is one study, trained
through :func:`cnncompare.studies.run_grid`. Per model: the mean, standard deviation and
95% Student-t interval over the seeds of the test accuracy at the epoch of best
validation accuracy, the final epoch's mean, and the largest gap between a run's
selected and final epoch (how stable the recipe is at the end of training).

Run: ``.venv/bin/python benchmarks/train_zoo.py [--epochs 10] [--seeds 3]
[--models lenet,resnet18] [--home DIR]`` (``--home`` keeps the runs, so an interrupted
measurement resumes). Writes ``benchmarks/results/train_zoo.csv``, ``train_zoo_runs.csv``
and ``train_zoo.md`` (``--out`` changes the name; ``--dataset``, ``--data-root`` and the
sizes run the same study on other data: see ``study_mnist.py``).
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
from cnncompare.studies import (  # noqa: E402
    TrainOptions,
    parse_seeds,
    run_grid,
    study_configs,
    summarize,
)

RESULTS = ROOT / "benchmarks" / "results"


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table of ``frame`` (numbers as they are, thousands separated)."""
    def cell(v) -> str:
        if isinstance(v, int):
            return f"{v:,}"
        return f"{v:g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """The README's columns: accuracy as mean +- std with the interval, the last epoch's
    mean, the largest selected-minus-final gap of a seed, the mean training time."""
    rows = []
    for _, g in summary.iterrows():
        small = model_info(g["model"]).small
        rows.append({
            "model": g["model"],
            "input": f"{small['in_channels']}x{small['input_size']}x{small['input_size']}",
            "width": small.get("width", 1.0),
            "params": int(g["params"]),
            "seeds": int(g["n_seeds"]),
            "test acc (mean ± std)": f"{g['test_acc_mean']:.3f} ± {g['test_acc_std']:.3f}",
            "95% CI": f"{g['test_acc_ci_low']:.3f}–{g['test_acc_ci_high']:.3f}",
            "last epoch (mean)": round(g["final_test_acc_mean"], 3),
            "largest selected−last gap": round(g["largest_gap"], 3),
            "selected epoch (median)": g["selected_epoch_median"],
            "train s (mean)": round(g["seconds_mean"], 1),
        })
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="3", help="a count (3: seeds 0,1,2) or a list")
    ap.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--home", help="results home to keep the runs in (default: a temporary one)")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-root", help="folder holding the dataset (not needed for digits)")
    ap.add_argument("--train-size", type=int, help="images drawn for training (default: the "
                                                    "dataset's), 10%% of them for validation")
    ap.add_argument("--test-size", type=int, help="test images (default: the dataset's)")
    ap.add_argument("--out", default="train_zoo", help="file name stem under results/")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.models.split(",")] if args.models else list_models()
    configs = study_configs(names, parse_seeds(args.seeds), epochs=args.epochs,
                            dataset=args.dataset, train_size=args.train_size,
                            test_size=args.test_size)
    load_before = load()
    start = time.perf_counter()

    def progress(index: int, event: dict) -> None:
        cfg = configs[index]
        if event["kind"] == "done":
            print(f"{cfg.model:12s} seed {cfg.seed}: acc {event['test_acc']:.3f} at epoch "
                  f"{event.get('selected_epoch')}  {event['train_seconds']:6.1f} s "
                  f"{'(stored)' if event['cached'] else ''}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(args.home or tmp)
        results = run_grid(configs, store=store, progress=progress,
                           options=TrainOptions(device=args.device, data_root=args.data_root))
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise SystemExit(f"{len(failed)} run(s) failed, the first: {failed[0]}")
        ids = [r.run_id for r in results]
        runs = store.runs().set_index("run_id").loc[ids].reset_index()
    total = time.perf_counter() - start
    summary = summarize(runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.to_csv(RESULTS / f"{args.out}.csv", index=False)
    runs.to_csv(RESULTS / f"{args.out}_runs.csv", index=False)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
               f"threads, {os.cpu_count()} CPUs, torch {torch.__version__}")
    precision = ", ".join(sorted(runs["precision"].unique()))
    split = (f"{runs['train_size'].iloc[0]:,} drawn for training ({runs['val_size'].iloc[0]:,}"
             f" of them validation) / {runs['test_size'].iloc[0]:,} test")
    md = [f"# {', '.join(names) if args.models else 'The zoo'} on {args.dataset} "
          f"({args.epochs} epochs, {len(parse_seeds(args.seeds))} seeds, default recipe, "
          f"{precision}; {split})", "",
          f"Machine: {machine}. Wall time: {total:.0f} s. Load average (1, 5, 15 min) "
          f"before: {load_before}; after: {load()}.", "",
          markdown(table(summary)), ""]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
