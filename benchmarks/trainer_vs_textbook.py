"""Our trainer against the textbook training loop, side by side in one process.

The same model (LeNet, and ResNet-18 at its small configuration), the same data (the
digits set at the model's input size, the same stratified split: both train on the 1,293
training images; ours also evaluates its 144 validation images every epoch, outside the
timed training pass), the same number of epochs, batch size, optimizer and constant
learning rate, the same initial weights. Accuracy is the last epoch's on both sides. The
textbook loop is the one Dive into Deep Learning and the PyTorch tutorials teach: a
``Dataset`` that hands out PIL images through ``ToTensor()`` (and ``Normalize``) one
sample at a time, a default ``DataLoader`` (shuffled, no workers), and
``zero_grad``/``backward``/``step``; it evaluates under ``torch.no_grad()`` every epoch, as
ours does. Ours runs with its defaults otherwise; on a CPU with native bf16 (AVX512-BF16
or AMX) those include bf16 autocast, and then a third row, ours with ``amp=False``, shows
what float32 alone gives.

Run: ``.venv/bin/python benchmarks/trainer_vs_textbook.py`` (``--quick`` for a smoke run).
Writes ``benchmarks/results/trainer_vs_textbook.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnncompare import data as datasets  # noqa: E402
from cnncompare.registry import model_info  # noqa: E402
from cnncompare.runtime import cpu_has_native_bf16  # noqa: E402
from cnncompare.store import ResultsStore  # noqa: E402
from cnncompare.training import TrainConfig, train_or_load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
AMP_AUTO = cpu_has_native_bf16()
"""Whether our trainer's defaults use bf16 autocast on this CPU (then float32 is run too)."""


class PILImages(Dataset):
    """The textbook dataset: one PIL image per item, converted by a transform each time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = x.numpy()
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        arr = self.x[i]
        img = (Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1
               else Image.fromarray(arr.transpose(1, 2, 0), mode="RGB"))
        return self.transform(img), self.y[i]


def textbook(cfg: TrainConfig, d: datasets.TensorData, build) -> dict:
    """The classic loop; returns images/s over the training passes and final accuracy."""
    torch.manual_seed(cfg.seed)
    model = build()
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize(d.meta.mean, d.meta.std)])
    train_loader = DataLoader(PILImages(d.x_train, d.y_train, tf), batch_size=cfg.batch_size,
                              shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
    test_loader = DataLoader(PILImages(d.x_test, d.y_test, tf), batch_size=cfg.batch_size)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epoch_ips, total = [], time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for X, y in train_loader:
            optimizer.zero_grad()
            y_hat = model(X)
            loss = loss_fn(y_hat, y)
            loss.backward()
            optimizer.step()
            seen += len(y)
        epoch_ips.append(seen / (time.perf_counter() - t0))
        model.eval()
        correct, n = 0, 0
        with torch.no_grad():
            for X, y in test_loader:
                correct += (model(X).argmax(1) == y).sum().item()
                n += len(y)
    return {"epoch_images_per_s": epoch_ips, "test_acc": correct / n,
            "seconds": time.perf_counter() - total}


def ours(cfg: TrainConfig, amp: bool | str = "auto") -> dict:
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        r = train_or_load(cfg, store=ResultsStore(home), device="cpu", amp=amp)
        seconds = time.perf_counter() - t0
    # the last epoch's accuracy, as the textbook loop reports it (not the validation-chosen)
    return {"epoch_images_per_s": r.history["images_per_s"].tolist(),
            "test_acc": r.final_test_acc, "seconds": seconds}


def compare(name: str, epochs: int, repeats: int) -> list[dict]:
    """``repeats`` pairs of runs; repeat ``r`` uses seed ``r`` on both sides (same split,
    same initial weights), so the mean accuracies compare like with like."""
    small = model_info(name).small
    shape = dict(input_size=small["input_size"], in_channels=small["in_channels"],
                 width=small.get("width", 1.0))
    ours(TrainConfig(name, epochs=1, train_size=128, test_size=64, **shape))  # warm-up
    rows = []
    for rep in range(repeats):
        cfg = TrainConfig(name, epochs=epochs, batch_size=64, lr=1e-3, optimizer="adam",
                          scheduler="constant", seed=rep, **shape)  # the textbook's recipe
        resolved = cfg.resolve()
        d = datasets.load_spec(resolved.data, resolved.source)
        pair = [("textbook", lambda c=cfg, d=d, b=resolved.model_config.build: textbook(c, d, b)),
                ("ours", lambda c=cfg: ours(c))]
        if AMP_AUTO:  # ours uses bf16 here; show float32 too
            pair.append(("ours_fp32", lambda c=cfg: ours(c, amp=False)))
        if rep % 2:  # alternate, so that neither side always runs on a warmer machine
            pair.reverse()
        for label, fn in pair:
            m = fn()
            ips = m.pop("epoch_images_per_s")
            rows.append({"model": name, "config": resolved.model_config.label(),
                         "loop": label, "seed": rep, "epochs": epochs,
                         "batch_size": cfg.batch_size, "train_size": resolved.data.train_size,
                         "test_size": resolved.data.test_size,
                         "best_epoch_img_s": max(ips), "median_epoch_img_s": median(ips),
                         "epoch_img_s": ";".join(f"{v:.0f}" for v in ips), **m})
            print(f"{name:9s} {label:8s} seed {rep}: best epoch {max(ips):8.0f} img/s, "
                  f"median {median(ips):8.0f}  acc {m['test_acc']:.4f}  {m['seconds']:.1f} s",
                  flush=True)
    return rows


def summarize(rows: list[dict]) -> pd.DataFrame:
    """One row per model. Other processes share this machine, so each side's speed is its
    best epoch over all repeats (the least disturbed one); the ratio of the medians over
    all epochs is given beside it. Accuracy: the mean over the seeds."""
    df = pd.DataFrame(rows)
    out = []
    for name, g in df.groupby("model", sort=False):
        tb, us = g[g.loop == "textbook"], g[g.loop == "ours"]

        def epochs_of(part: pd.DataFrame) -> list[float]:
            return [float(v) for cell in part["epoch_img_s"] for v in cell.split(";")]

        out.append({
            "model": name, "config": g["config"].iloc[0], "epochs": g["epochs"].iloc[0],
            "batch": g["batch_size"].iloc[0],
            "split": f"{g['train_size'].iloc[0]}/{g['test_size'].iloc[0]}",
            "seeds": len(us),
            "textbook_img_s": round(tb["best_epoch_img_s"].max()),
            "ours_img_s": round(us["best_epoch_img_s"].max()),
            "speedup": us["best_epoch_img_s"].max() / tb["best_epoch_img_s"].max(),
            "speedup_median": median(epochs_of(us)) / median(epochs_of(tb)),
            "textbook_acc": tb["test_acc"].mean(), "ours_acc": us["test_acc"].mean(),
            "textbook_s": tb["seconds"].min(), "ours_s": us["seconds"].min(),
        })
        fp = g[g.loop == "ours_fp32"]
        if len(fp):
            out[-1].update({
                "ours_fp32_img_s": round(fp["best_epoch_img_s"].max()),
                "fp32_speedup": fp["best_epoch_img_s"].max() / tb["best_epoch_img_s"].max(),
                "ours_fp32_acc": fp["test_acc"].mean()})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch, 1 repeat")
    ap.add_argument("--models", default="lenet,resnet18")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    epochs, repeats = (1, 1) if args.quick else (args.epochs, args.repeats)
    rows = []
    for name in args.models.split(","):
        rows += compare(name.strip(), epochs, repeats)
    table = summarize(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(RESULTS / "trainer_vs_textbook_raw.csv", index=False)
    table.to_csv(RESULTS / "trainer_vs_textbook.csv", index=False)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
               f"threads, torch {torch.__version__}, {os.cpu_count()} CPUs")
    precision = ("ours: the trainer's defaults, which on this CPU (AVX512-BF16) mean bf16 "
                 "autocast; ours_fp32: the same with amp=False" if AMP_AUTO else
                 "ours: the trainer's defaults (float32 on this CPU)")
    md = ["# Our trainer vs the textbook loop (digits, CPU)", "", f"Machine: {machine}.",
          f"Speeds: best epoch over all seeds (the machine is shared); {precision}.", "",
          table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate()
          else table.to_string(index=False), ""]
    (RESULTS / "trainer_vs_textbook.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
