"""Cold against warm profiling of the whole zoo (cnncompare.profiling's disk cache).

    .venv/bin/python benchmarks/bench_profile_cache.py [--preset canonical|small] [--warm-reads 5]

Cold: the first ``profiling.analyze`` of each model in an empty results home (torchinfo on
the meta device, FlopCounterMode forward and training step, fvcore's traced forward).
Warm: the same call again, answered from the JSON file on disk (median of several reads).
Writes ``benchmarks/results/profile_cache.csv`` and ``.md``.
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
from cost_results import write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("canonical", "small"), default="canonical")
    parser.add_argument("--warm-reads", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cnncompare-bench-") as home:
        os.environ["CNNCOMPARE_HOME"] = home  # an empty cache: every first call is cold
        from cnncompare import list_models, profiling
        from cnncompare.registry import preset_config

        profiling.analyze_module(lambda: torch.nn.Conv2d(1, 1, 1), (1, 1, 4, 4))  # imports
        rows = []
        for name in list_models():
            cfg = preset_config(name, args.preset)
            t0 = time.perf_counter()
            prof = profiling.analyze(cfg)
            cold = time.perf_counter() - t0
            assert not prof.from_cache
            warm = []
            for _ in range(args.warm_reads):
                t0 = time.perf_counter()
                hit = profiling.analyze(cfg)
                warm.append(time.perf_counter() - t0)
                assert hit.from_cache
            s = prof.summary()
            rows.append({
                "model": name, "config": cfg.label(), "params": s["params"],
                "macs": s["macs"], "flops": s["flops"], "layers": len(prof.layers),
                "cold_s": cold, "warm_ms": statistics.median(warm) * 1e3,
                "speedup": cold / statistics.median(warm),
            })
            print(f"{name:12s} cold {cold:6.2f} s  warm {rows[-1]['warm_ms']:6.2f} ms",
                  file=sys.stderr)
        stats = profiling.cache_stats()
    frame = pd.DataFrame(rows)
    total = {"model": "TOTAL", "config": f"{len(rows)} models", "params": None, "macs": None,
             "flops": None, "layers": int(frame["layers"].sum()),
             "cold_s": frame["cold_s"].sum(), "warm_ms": frame["warm_ms"].sum(),
             "speedup": frame["cold_s"].sum() / (frame["warm_ms"].sum() / 1e3)}
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    note = (f"preset {args.preset}; torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads; {stats['computed']} computed, {stats['disk_hits']} disk hits; "
            f"warm = median of {args.warm_reads} reads")
    write_results(frame, f"profile_cache_{args.preset}", "Cold vs warm profiling", note,
                  formats={"cold_s": "{:.2f}", "warm_ms": "{:.2f}", "speedup": "{:,.0f}x",
                           "params": "{:,.0f}", "macs": "{:,.0f}", "flops": "{:,.0f}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
