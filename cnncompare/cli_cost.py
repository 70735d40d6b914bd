"""``profile`` and ``bench``: what the networks cost, from the command line.

    python -m cnncompare profile --models resnet18,alexnet --format csv
    python -m cnncompare profile --model resnet18 --layers
    python -m cnncompare bench --models lenet,resnet18 --batch-sizes 1,8 --device cpu

Numbers are written raw (counts, MB, ms), never as "1.8 G" strings, so that the CSV and
JSON outputs can be read back by a program. Progress goes to stderr, and so does one
``warning:`` line per benchmark row whose timing should not be trusted (a noisy machine, a
larger batch faster than a smaller one).

Every argument is checked before any work starts: sizes within :data:`LIMITS`, and for
``bench`` each row's estimated memory and step time against the device's free memory
and the time budget (:func:`cnncompare.benchmark.check_feasible`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import pandas as pd

from cnncompare.benchmark import MAX_THREADS
from cnncompare.cli import COMMANDS, CliError, add_format, emit, one_line, parse_list
from cnncompare.devices import resolve_device
from cnncompare.registry import ModelConfig, config_for


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profile`` and ``bench`` subcommands."""
    p = subparsers.add_parser(
        "profile",
        help=COMMANDS["profile"][1],
        description="Parameters, MACs (fvcore: one multiply-add = 1), FLOPs (torch's "
                    "FlopCounterMode: one multiply-add = 2) and memory, per image. "
                    "activation_mb is the sum of the layer outputs for one image in "
                    "float32, in-place layers left out (an estimate). receptive_field is "
                    "the size in input pixels of the region one unit of the last feature "
                    "map can see (padding included). Cached on disk: a "
                    "second call is instant.",
    )
    _add_models(p)
    _add_config(p)
    view = p.add_mutually_exclusive_group()
    view.add_argument("--layers", action="store_true",
                      help="the layer table (shapes, shape arithmetic, receptive field rf, rf_jump "
                           "and rf_start in input pixels, params, MACs per layer)")
    view.add_argument("--by-module", action="store_true", help="MACs and params per module")
    view.add_argument("--by-operator", action="store_true",
                      help="MACs (fvcore) and FLOPs (torch) per operator")
    p.add_argument("--depth", type=int, default=1,
                   help="module depth for --by-module (default: 1, the top-level blocks)")
    add_format(p)
    p.set_defaults(func=cmd_profile)

    b = subparsers.add_parser(
        "bench",
        help=COMMANDS["bench"][1],
        description="Warm-up, then timed steps (synchronised); median and p90 ms, "
                    "images/s, measured peak memory and the share of the machine's "
                    "matmul peak. Progress on stderr.",
    )
    _add_models(b)
    _add_config(b)
    b.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,8 (default: 1)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    b.add_argument("--mode", choices=("infer", "train"), default="infer",
                   help="inference forward pass or one training step (default: infer)")
    b.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "amp"),
                   default="float32", help="weights and inputs dtype, or amp (autocast)")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    b.add_argument("--iters", type=int, default=30,
                   help="timed steps at most; timing stops sooner once 5 steps spread at most "
                        "--target-spread around their median (default: 30)")
    b.add_argument("--target-spread", type=float, default=0.10,
                   help="stop once (p90 - p10) / median is at most this (default: 0.10)")
    b.add_argument("--max-seconds", type=float, default=10.0,
                   help="the time budget of one row, warm-up included; a row whose step "
                        "would take longer is refused before it starts (default: 10)")
    b.add_argument("--threads", type=int, default=None,
                   help=f"torch CPU threads, 1 to {MAX_THREADS} (default: as is)")
    b.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    b.add_argument("--reuse", action="store_true",
                   help="reuse rows measured before with the same settings (default: measure)")
    add_format(b)
    b.set_defaults(func=cmd_bench)


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", "--model", dest="models", required=True,
                   help="comma-separated model names (see `python -m cnncompare list`)")


def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (default: each model's canonical one)")
    g.add_argument("--preset", choices=("canonical", "small"), default=None,
                   help="start from each model's canonical or recommended small configuration")
    g.add_argument("--input-size", type=int, default=None, help="square input side in pixels")
    g.add_argument("--in-channels", type=int, default=None, help="input channels")
    g.add_argument("--num-classes", type=int, default=None, help="output classes")
    g.add_argument("--width", type=float, default=None, help="channel width multiplier")


LIMITS = {"input_size": 4096, "in_channels": 1024, "num_classes": 1_000_000}
"""The largest value of each size argument: beyond them no network here is meaningful, and
building one would exhaust the memory before any message could be given."""


def _config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("input_size", "in_channels", "num_classes", "width")
    values = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    for key, most in LIMITS.items():
        if key in values and values[key] > most:
            flag = "--" + key.replace("_", "-")
            raise CliError(f"{flag} must be at most {most:,}, got {values[key]:,}.")
    return values


def _configs(args: argparse.Namespace) -> list[ModelConfig]:
    """Resolve every model's configuration first, so a bad one fails before any work."""
    names = parse_list(args.models, str, "model name")
    return [config_for(n, args.preset, **_config_kwargs(args)) for n in names]


def cmd_profile(args: argparse.Namespace) -> int:
    from cnncompare import profiling

    cfgs = _configs(args)
    if args.depth < 1:
        raise CliError(f"--depth must be at least 1, got {args.depth}")
    frames = []
    for cfg in cfgs:
        prof = profiling.analyze(cfg)
        if args.layers:
            frame = prof.layer_table()
        elif args.by_module:
            frame = prof.by_module(args.depth)
        elif args.by_operator:
            frame = prof.by_operator()
        else:
            frames.append(_summary_row(cfg, prof.summary()))
            continue
        frame.insert(0, "model", cfg.name)
        frames.append(frame)
    if args.layers or args.by_module or args.by_operator:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame(frames)
    emit(out, args.format)
    return 0


def _summary_row(cfg: ModelConfig, summary: dict[str, Any]) -> dict[str, Any]:
    from cnncompare.receptive_field import receptive_field  # with profiling, on first use

    row = {"model": cfg.name, "input": f"{cfg.in_channels}x{cfg.input_size}x{cfg.input_size}",
           "width": cfg.width, "num_classes": cfg.num_classes}
    row.update(summary)
    row["receptive_field"] = receptive_field(cfg)  # px, a unit of the last feature map
    return row


def cmd_bench(args: argparse.Namespace) -> int:
    from cnncompare import benchmark

    cfgs = _configs(args)
    sizes = benchmark.check_batch_sizes(parse_list(args.batch_sizes, int, "batch size"))
    if max(sizes) > MAX_BATCH:
        raise CliError(f"batch sizes must be at most {MAX_BATCH:,}, got {max(sizes):,}.")
    settings = benchmark.BenchSettings(
        mode=args.mode, device=args.device, dtype=args.dtype, warmup=args.warmup,
        iters=args.iters, max_seconds=args.max_seconds, measure_memory=not args.no_memory,
        threads=args.threads, target_spread=args.target_spread,
        min_iters=min(benchmark.BenchSettings.min_iters, args.iters),
    )
    try:  # a missing or malformed device fails here, before any model is built
        resolve_device(settings.device)
    except RuntimeError as exc:
        raise CliError(f"Unknown device {args.device!r} ({one_line(exc)}); choose auto, cpu, "
                       "cuda, cuda:N or mps.") from None
    frame = benchmark.benchmark_models(cfgs, sizes, settings, cache=args.reuse,
                                       progress=StderrProgress())
    emit(frame, args.format)
    for row in frame.itertuples(index=False):
        if row.note:
            print(f"warning: {row.model} at batch {row.batch_size}: {row.note}",
                  file=sys.stderr)
    return 0


MAX_BATCH = 65_536
"""The largest batch size ``bench`` accepts (the memory check refuses most before)."""


class StderrProgress:
    """Progress on stderr: one rewritten line on a terminal, a few plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""

    def __call__(self, fraction: float, message: str) -> None:
        line = f"[{fraction:4.0%}] {message}"
        if self.tty:
            end = "\n" if fraction >= 1 else ""
            self.stream.write(f"\r{line[:100]:<100}{end}")
        elif not any(w in message for w in ("warm-up", "timed step")) or _last_step(message):
            self.stream.write(line + "\n")
        self.stream.flush()


def _last_step(message: str) -> bool:
    """True for ``"... timed step 20/20"``: the end of a row's timing."""
    tail = message.rsplit(" ", 1)[-1]
    done, _, total = tail.partition("/")
    return "timed step" in message and done == total
