"""The reference study on real data: MNIST's test split from ``../shared/datasets``.

Five networks at their small configurations (lenet, alexnet, resnet18, googlenet,
densenet121), 3 seeds, the default recipe, 8,000 images drawn for training (800 of them
held out for validation) and 2,000 for test, all from the 10,000 images of MNIST's
official test split (the only part of MNIST shipped offline here). Epochs: 5 by default.

Run: ``.venv/bin/python benchmarks/study_mnist.py [--epochs 5] [--home DIR]``. Writes
``benchmarks/results/study_mnist.csv``, ``study_mnist_runs.csv`` and ``study_mnist.md``
through ``train_zoo.py``'s study. The same numbers come from
``python -m cnncompare study --models lenet,alexnet,resnet18,googlenet,densenet121
--seeds 3 --dataset mnist --data-root ../shared/datasets --train-size 8000
--test-size 2000 --epochs 5``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = "lenet,alexnet,resnet18,googlenet,densenet121"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--home", help="results home to keep the runs in")
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    args = ap.parse_args(argv)
    if not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"MNIST's test split was not found under {args.data_root}")
    extra = ["--home", args.home] if args.home else []
    return train_zoo.main(["--models", MODELS, "--seeds", args.seeds, "--epochs",
                           str(args.epochs), "--dataset", "mnist", "--data-root",
                           args.data_root, "--train-size", "8000", "--test-size", "2000",
                           "--out", "study_mnist", *extra])


if __name__ == "__main__":
    sys.exit(main())
