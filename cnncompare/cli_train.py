"""``python -m cnncompare train|runs|export|repair``: train (or fetch) a run, list runs,
export, recover a damaged results database.

``train`` prints one line per epoch on stderr and the run's summary on stdout (a JSON
object with ``--format json``). Its first Ctrl-C stops at the next batch and keeps the
finished epochs (the same command resumes them); a second one interrupts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
import warnings
from typing import Any

import pandas as pd

from cnncompare.cli import CliError, add_format, emit

TABLE_COLUMNS = ["run_id", "model", "dataset", "status", "epochs_done", "epochs", "test_acc",
                 "selected_epoch", "val_acc", "final_test_acc", "precision", "seconds",
                 "params", "input_size", "in_channels", "width", "train_size", "val_size",
                 "test_size", "optimizer", "lr", "batch_size", "augment", "seed", "created_at"]
"""``runs --format table`` without ``--all-columns``; csv and json have every column."""


def add_train_options(p: argparse.ArgumentParser, *, study: bool = False) -> None:
    """The options of ``train`` (and of ``study``, which takes lists of models and seeds
    instead of one). Defaults are :class:`~cnncompare.train_config.TrainConfig`'s, which
    are the Train page's too, so a run started here is found there."""
    from cnncompare.devices import DEVICE_CHOICES
    from cnncompare.train_config import OPTIMIZERS, SCHEDULERS, TrainConfig

    d = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p.add_argument("--dataset", default=d["dataset"],
                   help="digits (offline, default), mnist, fashion-mnist, cifar10, imagefolder")
    p.add_argument("--epochs", type=int, default=d["epochs"],
                   help=f"epochs per run (default: {d['epochs']})")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help=f"images per step (default: {d['batch_size']})")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help=f"peak learning rate (default: {d['lr']:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"])
    p.add_argument("--scheduler", choices=SCHEDULERS, default=d["scheduler"],
                   help="learning-rate schedule, stepped every batch (default: one epoch of "
                        "warm-up, the peak held, a linear decay over the last 30%%)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--label-smoothing", type=float, default=d["label_smoothing"])
    if not study:
        p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--augment", action="store_true",
                   help="random shifts and small rotations (digits, MNIST) or crops and flips "
                        "(CIFAR-10, image folders), on the device; part of the run's key")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    p.add_argument("--amp", choices=("auto", "on", "off"), default=d["amp"],
                   help="mixed precision: auto (where the hardware runs it natively: CUDA, "
                        "CPUs with AVX512-BF16/AMX), on, or off (float32). The precision is "
                        "part of a run's key")
    p.add_argument("--train-size", type=int,
                   help="images drawn for training, validation included (default: per dataset)")
    p.add_argument("--val-size", type=int,
                   help="validation images held out of them (default: 10%% of --train-size)")
    p.add_argument("--test-size", type=int, help="test images (default: per dataset)")
    p.add_argument("--input-size", type=int,
                   help="image side in pixels (default: the dataset's, or the model's minimum)")
    p.add_argument("--in-channels", type=int, choices=(1, 3),
                   help="1 (grey) or 3 (colour); default: the dataset's")
    p.add_argument("--width", type=float,
                   help="channel width multiplier (default: the model's small configuration)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model argument with a literal value, e.g. aux_logits=true "
                        "(repeatable)")
    p.add_argument("--data-root", help="folder holding the dataset (or to download it to)")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if it is missing (needs internet)")


def register(subparsers) -> None:
    """Add the ``train``, ``runs``, ``export`` and ``repair`` subcommands."""
    p = subparsers.add_parser(
        "train", help="train a model (or return its stored run)",
        description="Train a model on a dataset, or return the stored result of the same "
                    "configuration at once. Per-epoch lines go to stderr. The reported "
                    "test accuracy is the one at the epoch with the best validation "
                    "accuracy (selected_epoch); final_test_acc is the last epoch's.")
    p.add_argument("--model", required=True, help="a registered model, e.g. lenet, resnet18")
    add_train_options(p)
    add_format(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("runs", help="list stored runs with their metrics")
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--finished", action="store_true", help="only finished runs")
    p.add_argument("--all-columns", action="store_true",
                   help="every column in table format (csv and json always have all)")
    add_format(p)
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser(
        "export", help="write runs, their metrics and each model's cost to one CSV")
    p.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--finished", action="store_true", help="only finished runs")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "repair", help="recover a damaged results database (the damaged file is kept)",
        description="Check the results database with SQLite; if SQLite reports it damaged, "
                    "copy every run that still reads into a new database and keep the "
                    "damaged file as results.sqlite.damaged-<time>. An intact database is "
                    "left as it is.")
    p.set_defaults(func=cmd_repair)


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["aux_logits=true", "dropout=0.5", 'name="x"']`` -> ``{"aux_logits": True,
    "dropout": 0.5, "name": "x"}``. Values must be literals: true, false, null, a number
    or a quoted string (JSON); anything else is an error naming the argument."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--model-arg expects KEY=VALUE, got {item!r}")
        low = text.strip().lower()
        if low in ("true", "false"):
            value: Any = low == "true"
        else:
            try:
                value = json.loads(text)
            except ValueError:
                raise CliError(
                    f"--model-arg {key}: {text!r} is not a literal value; write true, false, "
                    f"a number, or a quoted string such as {key}='\"text\"'") from None
        if key in out:
            raise CliError(f"--model-arg {key} is given twice")
        out[key] = value
    return out


def _config(args: argparse.Namespace, model: str | None = None, seed: int | None = None):
    from cnncompare.train_config import TrainConfig

    return TrainConfig(
        model=model or args.model, dataset=args.dataset, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        scheduler=args.scheduler, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, seed=args.seed if seed is None else seed,
        augment=args.augment, amp=args.amp, train_size=args.train_size,
        val_size=args.val_size, test_size=args.test_size, input_size=args.input_size,
        in_channels=args.in_channels, width=args.width,
        model_kwargs=parse_model_args(args.model_arg))


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields a study's runs share, from the command's options."""
    return dict(
        dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, scheduler=args.scheduler, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, augment=args.augment, amp=args.amp,
        train_size=args.train_size, val_size=args.val_size, test_size=args.test_size,
        input_size=args.input_size, in_channels=args.in_channels, width=args.width,
        model_kwargs=parse_model_args(args.model_arg))


class _StderrProgress:
    """Per-epoch lines on stderr; a live batch counter when stderr is a terminal."""

    def __init__(self, stream=None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.prefix = prefix

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e["kind"]
        if kind == "batch" and self.live:
            self.stream.write(f"\r  {self.prefix}epoch {e['epoch']}/{e['epochs']}  batch "
                              f"{e['batch']}/{e['batches']}  loss {e['loss']:.4f}")
            self.stream.flush()
        elif kind == "epoch":
            clear = "\r\x1b[K" if self.live else ""
            self.stream.write(
                f"{clear}{self.prefix}epoch {e['epoch']}/{e['epochs']}  train loss "
                f"{e['train_loss']:.4f} acc {e['train_acc']:.4f}  val acc {e['val_acc']:.4f}  "
                f"test loss {e['test_loss']:.4f} acc {e['test_acc']:.4f}  "
                f"{e['seconds']:.1f} s  {e['images_per_s']:,.0f} img/s\n")
            self.stream.flush()
        elif kind == "status":
            label = "warning" if e.get("level") == "warning" else "note"
            self.stream.write(f"{label}: {self.prefix}{e['message']}\n")
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
    cfg.resolve(args.data_root, args.download, device=args.device)  # every check, no work
    cancel = threading.Event()
    previous = _install_sigint(cancel)
    try:
        with _plain_warnings():
            store = ResultsStore()  # a damaged database is recovered by the trainer
            # From here on the progress printer shows the store's warnings.
            warnings.filterwarnings("ignore", category=StoreWarning)
            result = train_or_load(cfg, device=args.device, data_root=args.data_root,
                                   download=args.download, progress=_StderrProgress(),
                                   cancel=cancel, store=store)
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


def cmd_repair(args: argparse.Namespace) -> int:
    from cnncompare.store import ResultsStore

    store = ResultsStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report is printed below, once
        report = store.recover()
    print(report or f"The results database {store.db_path} is intact; nothing was changed.",
          file=sys.stderr)
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
