"""The same small study through the local executor and through a local Ray (2 CPUs).

A study of lenet and lenet5 x 3 seeds on digits (500 images drawn for training, 50 of them
held out for validation, 200 for test, 3 epochs) trains three times, each into a fresh
results home:

1. ``local``: the local executor, one run after another, torch on one thread (a Ray task
   with one CPU trains on one thread too; the same thread count gives the same sums);
2. ``ray, cold``: the Ray executor on a local Ray started with 2 CPUs (one run per CPU, so
   two at once), its worker processes started for this study;
3. ``ray, warm``: the same study again into another fresh home, on the same Ray, whose
   worker processes have imported torch and cnncompare already.

It checks that all three give the same run ids and the same test accuracies, and reports
the wall time of each, Ray's start separately, and the overhead per run,
``(ray wall - local wall) / runs``. Ray runs two at once, so the overhead can be negative
when the training itself dominates; ``--workers-busy`` says how much of Ray's wall was
training.

Run: ``.venv/bin/python benchmarks/ray_vs_local.py`` (about 2 minutes on 2 cores). Writes
``benchmarks/results/ray_vs_local.csv`` and ``ray_vs_local.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from cnncompare.executors import make_executor  # noqa: E402
from cnncompare.store import ResultsStore  # noqa: E402
from cnncompare.studies import TrainOptions, run_grid, study_configs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _grid(args) -> list:
    return study_configs(args.models.split(","), list(range(args.seeds)), epochs=args.epochs,
                         train_size=args.train_size, test_size=args.test_size)


def _timed(configs, executor, home: Path) -> tuple[list, float]:
    store = ResultsStore(home)
    t0 = time.perf_counter()
    results = run_grid(configs, executor=executor, store=store,
                       options=TrainOptions(device="cpu"))
    wall = time.perf_counter() - t0
    failed = [r for r in results if r is None or isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) did not finish: {failed[0]!r}")
    return results, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet,lenet5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=500)
    ap.add_argument("--test-size", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default: 2)")
    args = ap.parse_args(argv)
    configs = _grid(args)
    n = len(configs)

    import ray

    with tempfile.TemporaryDirectory(prefix="ray-vs-local-") as tmp:
        tmp = Path(tmp)
        os.environ["CNNCOMPARE_HOME"] = str(tmp / "caches")  # profiles, counts: fresh
        torch.set_num_threads(1)
        local, local_wall = _timed(configs, make_executor("local"), tmp / "local")
        local_train = sum(r.train_seconds for r in local)

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        try:
            cold, cold_wall = _timed(configs, make_executor("ray"), tmp / "ray-cold")
            warm, warm_wall = _timed(configs, make_executor("ray"), tmp / "ray-warm")
        finally:
            ray.shutdown()

    ids = [r.run_id for r in local]
    accs = [r.test_acc for r in local]
    same = all([r.run_id for r in rs] == ids and [r.test_acc for r in rs] == accs
               for rs in (cold, warm))
    rows = [
        {"executor": "local (1 thread)", "runs": n, "wall_s": local_wall,
         "train_s": local_train, "overhead_per_run_s": 0.0, "same_ids_and_acc": True},
        {"executor": f"ray, cold workers ({args.cpus} CPUs)", "runs": n, "wall_s": cold_wall,
         "train_s": sum(r.train_seconds for r in cold),
         "overhead_per_run_s": (cold_wall - local_wall) / n, "same_ids_and_acc": same},
        {"executor": f"ray, warm workers ({args.cpus} CPUs)", "runs": n, "wall_s": warm_wall,
         "train_s": sum(r.train_seconds for r in warm),
         "overhead_per_run_s": (warm_wall - local_wall) / n, "same_ids_and_acc": same},
    ]
    frame = pd.DataFrame(rows).round(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS / "ray_vs_local.csv", index=False)
    study = (f"{args.models} x {args.seeds} seeds, digits, {args.train_size} train / "
             f"{args.test_size} test images, {args.epochs} epochs, CPU, "
             f"{torch.__version__}, ray {ray.__version__}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (f"Study: {study}.\n\nRay start (`ray.init(num_cpus={args.cpus})`): "
            f"{ray_start:.1f} s, not in the walls below. Load average at the end (1, 5, 15 "
            f"min): {load} on {os.cpu_count()} cores.\n\n"
            + frame.to_markdown(index=False) + "\n\nTest accuracies: "
            + ", ".join(f"{r.config.model}/{r.config.seed} {r.test_acc:.3f}" for r in local)
            + "\n")
    (RESULTS / "ray_vs_local.md").write_text(text)
    print(text)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
