"""How long the Overview's MACs and FLOPs of the whole zoo take cold, and against fvcore.

Goal (issue 11): the MACs and FLOPs of every network at its canonical input within 5 s
cold, equal to fvcore's and torch's figures. In a fresh process with an empty results
home this times, in turn: importing torch; importing cnncompare's counting (torch's meta
kernels and FLOP formulas load on the first count, so that is included in the next
figure); :func:`cnncompare.profiling.forward_costs` of every network (the Overview's
background count); and, for comparison, fvcore's own ``FlopCountAnalysis`` of every
network (a traced forward pass on zeroed CPU weights, which is what the Overview used
before), checking that every MAC count is equal.

    .venv/bin/python benchmarks/zoo_costs.py [--no-fvcore]

Prints a Markdown table and writes benchmarks/results/zoo_costs.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-fvcore", action="store_true", help="skip the fvcore timing")
    args = parser.parse_args()
    os.environ["CNNCOMPARE_HOME"] = tempfile.mkdtemp(prefix="cnncompare-zoo-costs-")
    rows = []
    t0 = time.perf_counter()
    import torch

    rows.append({"step": "import torch", "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    from cnncompare import profiling
    from cnncompare.counting import fvcore_macs
    from cnncompare.registry import list_models, on_meta_device, preset_config

    rows.append({"step": "import cnncompare.profiling", "seconds": time.perf_counter() - t0})
    cfgs = [preset_config(n, "canonical") for n in list_models()]
    t0 = time.perf_counter()
    ours = {cfg.name: profiling.forward_costs(cfg) for cfg in cfgs}
    rows.append({"step": f"forward_costs of {len(cfgs)} networks, cold (params, MACs, "
                         "FLOPs on the meta device)", "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    again = {cfg.name: profiling.forward_costs(cfg) for cfg in cfgs}
    rows.append({"step": f"forward_costs of {len(cfgs)} networks, from the disk cache",
                 "seconds": time.perf_counter() - t0})
    assert again == ours
    if not args.no_fvcore:
        t0 = time.perf_counter()
        for cfg in cfgs:
            with on_meta_device():
                model = cfg.build()
            model.to_empty(device="cpu")
            with torch.no_grad():
                for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                    t.fill_(1 if name.endswith("running_var") else 0)
            model.eval()
            shape = (1, cfg.in_channels, cfg.input_size, cfg.input_size)
            reference = int(fvcore_macs(model, torch.zeros(shape)).total())
            if reference != ours[cfg.name]["macs"]:
                raise AssertionError(f"{cfg.name}: fvcore {reference}, ours "
                                     f"{ours[cfg.name]['macs']}")
        rows.append({"step": f"fvcore FlopCountAnalysis of {len(cfgs)} networks (traced, "
                             "real compute); every MAC count equal", "seconds":
                     time.perf_counter() - t0})
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["seconds"] = frame["seconds"].round(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS / "zoo_costs.csv", index=False)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} cores; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(frame.to_markdown(index=False))


if __name__ == "__main__":
    main()
