"""Our canonical networks against torchvision's, timed side by side in one process.

    .venv/bin/python benchmarks/bench_vs_torchvision.py [--models resnet18,vgg16,densenet121]
        [--batch-sizes 1,8] [--rounds 15] [--per-round 1] [--device auto] [--threads N]

For each model and batch size both networks are built (random weights, eval mode), warmed
up, then timed in interleaved rounds: each round runs ``--per-round`` forward passes of one
network and then of the other, the order swapping every round, so that machine noise
(other processes, clock changes) falls on both alike. Each pass runs under
``torch.inference_mode()`` and ends with a device synchronisation. Reported: median ms of
each, the ratio ours/torchvision (expected <= 1.05; also the ratio of the fastest
passes, which a busy machine disturbs least), and the achieved GFLOP/s of ours set
against a large matmul on the same device (cnncompare.benchmark.machine_peak).
Writes ``benchmarks/results/vs_torchvision.csv`` and ``.md`` (``vs_torchvision_t<N>.*``
with ``--threads N``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from cost_results import write_results  # noqa: E402


def _time(model: torch.nn.Module, x: torch.Tensor, n: int, device: torch.device) -> list[float]:
    from cnncompare.devices import synchronize

    out = []
    with torch.inference_mode():
        for _ in range(n):
            t0 = time.perf_counter()
            model(x)
            synchronize(device)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def compare(name: str, batch: int, rounds: int, per_round: int, device: torch.device) -> dict:
    from cnncompare import get_model, profiling
    from cnncompare.registry import config_for

    torch.manual_seed(0)
    ours = get_model(name).eval().to(device)
    theirs = getattr(torchvision.models, name)(weights=None).eval().to(device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_ours == n_theirs, (name, n_ours, n_theirs)
    x = torch.randn(batch, 3, 224, 224, device=device)
    for m in (ours, theirs):  # warm-up
        _time(m, x, 2, device)
    t_ours, t_theirs = [], []
    for r in range(rounds):
        pair = [(ours, t_ours), (theirs, t_theirs)]
        for model, sink in pair if r % 2 == 0 else pair[::-1]:
            sink += _time(model, x, per_round, device)
    med_ours, med_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    min_ours, min_theirs = min(t_ours), min(t_theirs)
    flops = profiling.cost_summary(config_for(name))["flops"]
    return {
        "model": name, "batch_size": batch, "params": n_ours,
        "ours_ms": med_ours, "torchvision_ms": med_theirs, "ratio": med_ours / med_theirs,
        "ratio_of_min": min_ours / min_theirs,
        "ours_gflops": flops * batch / (med_ours / 1e3) / 1e9,
        "timed_passes": len(t_ours),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16,densenet121")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    # Profiles (for the FLOPs) go to a throwaway home; nothing else is written there.
    os.environ.setdefault("CNNCOMPARE_HOME", tempfile.mkdtemp(prefix="cnncompare-bench-"))
    from cnncompare import benchmark
    from cnncompare.devices import device_name, resolve_device

    device = resolve_device(args.device)
    torch.set_flush_denormal(True)
    peak = benchmark.machine_peak(device, cache=False)
    rows = []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = compare(name, batch, args.rounds, args.per_round, device)
            row["peak_share"] = row["ours_gflops"] / peak["gflops"]
            rows.append(row)
            print(f"{name:12s} b{batch:<3d} ours {row['ours_ms']:9.2f} ms  torchvision "
                  f"{row['torchvision_ms']:9.2f} ms  ratio {row['ratio']:.3f}", file=sys.stderr)
    # A busy machine lowers a single peak reading: take the better of before and after.
    after = benchmark.machine_peak(device, cache=False)
    if after["gflops"] > peak["gflops"]:
        peak = after
        for row in rows:
            row["peak_share"] = row["ours_gflops"] / peak["gflops"]
    frame = pd.DataFrame(rows)
    note = (f"{device_name(device)}; torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}; float32, inference_mode; {args.rounds} interleaved "
            f"rounds x {args.per_round} passes each; matmul peak {peak['gflops']:.0f} GFLOP/s "
            f"(n={peak['n']})")
    stem = f"vs_torchvision_t{args.threads}" if args.threads else "vs_torchvision"
    write_results(frame, stem, "Ours vs torchvision (latency)", note,
                  formats={"ours_ms": "{:.2f}", "torchvision_ms": "{:.2f}",
                           "ratio": "{:.3f}", "ratio_of_min": "{:.3f}",
                           "ours_gflops": "{:.1f}", "params": "{:,}", "peak_share": "{:.0%}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
