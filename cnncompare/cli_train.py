"""``python -m cnncompare train|runs|export``: train (or fetch) a run, list runs, export.

``train`` prints one line per epoch on stderr and the run's summary on stdout (a JSON
object with ``--format json``). Its first Ctrl-C stops at the next batch and keeps the
finished epochs (the same command resumes them); a second one interrupts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import warnings
from typing import Any

import pandas as pd

from cnncompare.cli import CliError, add_format, emit

TABLE_COLUMNS = ["run_id", "model", "dataset", "status", "epochs_done", "epochs", "test_acc",
                 "train_acc", "seconds", "params", "input_size", "in_channels", "width",
                 "train_size", "test_size", "optimizer", "lr", "batch_size", "seed",
                 "created_at"]


def register(subparsers) -> None:
    """Add the ``train``, ``runs`` and ``export`` subcommands."""
    from cnncompare.devices import DEVICE_CHOICES
    from cnncompare.train_config import OPTIMIZERS, SCHEDULERS

    p = subparsers.add_parser(
        "train", help="train a model (or return its stored run)",
        description="Train a model on a dataset, or return the stored result of the same "
                    "configuration at once. Per-epoch lines go to stderr.")
    p.add_argument("--model", required=True, help="a registered model, e.g. lenet, resnet18")
    p.add_argument("--dataset", default="digits",
                   help="digits (offline, default), mnist, fashion-mnist, cifar10, imagefolder")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="constant")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="mixed precision: auto (where the hardware runs it natively: CUDA, "
                        "CPUs with AVX512-BF16/AMX), on, or off (float32)")
    p.add_argument("--train-size", type=int, help="training images (default: per dataset)")
    p.add_argument("--test-size", type=int, help="test images (default: per dataset)")
    p.add_argument("--input-size", type=int,
                   help="image side in pixels (default: the dataset's, or the model's minimum)")
    p.add_argument("--in-channels", type=int, choices=(1, 3),
                   help="1 (grey) or 3 (colour); default: the dataset's")
    p.add_argument("--width", type=float,
                   help="channel width multiplier (default: the model's small configuration)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model argument, e.g. aux_logits=true (repeatable)")
    p.add_argument("--data-root", help="folder holding the dataset (or to download it to)")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if it is missing (needs internet)")
    add_format(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("runs", help="list stored runs with their final metrics")
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--finished", action="store_true", help="only finished runs")
    p.add_argument("--all-columns", action="store_true",
                   help="every column in table format (csv and json always have all)")
    add_format(p)
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser(
        "export", help="write runs, final metrics and each model's cost to one CSV")
    p.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--finished", action="store_true", help="only finished runs")
    p.set_defaults(func=cmd_export)


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["aux_logits=true", "dropout=0.5"]`` -> ``{"aux_logits": True, "dropout": 0.5}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--model-arg expects KEY=VALUE, got {item!r}")
        low = text.strip().lower()
        if low in ("true", "false"):
            value: Any = low == "true"
        else:
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        out[key.strip()] = value
    return out


def _config(args: argparse.Namespace):
    from cnncompare.train_config import TrainConfig

    return TrainConfig(
        model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, scheduler=args.scheduler,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed,
        train_size=args.train_size, test_size=args.test_size, input_size=args.input_size,
        in_channels=args.in_channels, width=args.width,
        model_kwargs=parse_model_args(args.model_arg))


class _StderrProgress:
    """Per-epoch lines on stderr; a live batch counter when stderr is a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e["kind"]
        if kind == "batch" and self.live:
            self.stream.write(f"\r  epoch {e['epoch']}/{e['epochs']}  batch {e['batch']}/"
                              f"{e['batches']}  loss {e['loss']:.4f}")
            self.stream.flush()
        elif kind == "epoch":
            prefix = "\r\x1b[K" if self.live else ""
            self.stream.write(
                f"{prefix}epoch {e['epoch']}/{e['epochs']}  train loss {e['train_loss']:.4f} "
                f"acc {e['train_acc']:.4f}  test loss {e['test_loss']:.4f} "
                f"acc {e['test_acc']:.4f}  {e['seconds']:.1f} s  "
                f"{e['images_per_s']:,.0f} img/s\n")
            self.stream.flush()
        elif kind == "status":
            label = "warning" if e.get("level") == "warning" else "note"
            self.stream.write(f"{label}: {e['message']}\n")
            self.stream.flush()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _plain_warnings():
    """Warnings as one ``warning: ...`` line each, without file names and source lines."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def cmd_train(args: argparse.Namespace) -> int:
    from cnncompare.store import ResultsStore, StoreWarning
    from cnncompare.training import train_or_load

    cfg = _config(args)
    cancel = threading.Event()
    previous = _install_sigint(cancel)
    try:
        with _plain_warnings():
            store = ResultsStore()  # a damaged database is reported (and set aside) here
            # From here on the progress printer shows the store's warnings.
            warnings.filterwarnings("ignore", category=StoreWarning)
            result = train_or_load(cfg, device=args.device, data_root=args.data_root,
                                   download=args.download, progress=_StderrProgress(),
                                   cancel=cancel, store=store,
                                   amp={"auto": "auto", "on": True, "off": False}[args.amp])
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    summary = result.summary()
    if args.format == "json":
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        emit(pd.DataFrame([summary]), args.format)
    if result.status == "cancelled":
        print(f"interrupted: {result.epochs_done} finished epoch(s) of run {result.run_id} "
              "are kept; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


def _install_sigint(cancel: threading.Event):
    """First Ctrl-C: ask the trainer to stop after this batch. Second: interrupt now."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nstopping after this batch (Ctrl-C again to stop at once)", file=sys.stderr)

    return signal.signal(signal.SIGINT, handler)


def cmd_runs(args: argparse.Namespace) -> int:
    from cnncompare.store import ResultsStore

    with _plain_warnings():
        frame = ResultsStore().runs(dataset=args.dataset, finished_only=args.finished)
    if args.format == "table":
        if frame.empty:
            print("no stored runs", file=sys.stderr)
            return 0
        if not args.all_columns:
            frame = frame[TABLE_COLUMNS]
    emit(frame, args.format)
    return 0


def export_frame(dataset: str | None = None, finished_only: bool = False) -> pd.DataFrame:
    """Stored runs, their final metrics and each model's cost (parameters, MACs, ...)."""
    from cnncompare.compare import run_costs
    from cnncompare.store import FRAME_COLUMNS, ResultsStore

    records = ResultsStore().records(dataset=dataset, finished_only=finished_only)
    runs = pd.DataFrame([r.row() for r in records], columns=list(FRAME_COLUMNS))

    def warn(run_id: str, exc: Exception) -> None:
        print(f"warning: no cost for run {run_id}: {exc}", file=sys.stderr)

    cost_frame = run_costs(records, on_error=warn).rename(columns={"params": "cost_params"})
    out = runs.merge(cost_frame, on="run_id", how="left")
    # One params column: the model's (identical for a run and its model configuration).
    out["params"] = out["cost_params"].where(out["cost_params"].notna(), out["params"])
    return out.drop(columns="cost_params")


def cmd_export(args: argparse.Namespace) -> int:
    with _plain_warnings():
        frame = export_frame(args.dataset, args.finished)
    if args.out == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        try:
            frame.to_csv(args.out, index=False)
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc}") from None
        print(f"wrote {len(frame)} run(s) to {args.out}", file=sys.stderr)
    return 0
