"""``python -m cnncompare study``: train a grid of models x seeds (x one factor), summarise.

Trains what is missing (stored runs are reused), then prints one row per group of seeds:
``model``, the factor's column when it is not the model, ``n_seeds``, the mean, standard
deviation and Student-t 95% interval of the test accuracy at the validation-chosen epoch,
the median selected epoch, the final epoch's mean test accuracy, the mean training time,
parameters, MACs and the precision. ``--seeds 3`` means seeds 0, 1 and 2.

``--executor ray`` trains the missing runs on a Ray cluster (``--ray-address``; a local
Ray without it), one run per task with ``--cpus-per-run`` CPUs and ``--gpus-per-run``
GPUs; the results still go to this machine's store (see :mod:`cnncompare.executors`).
A line on stderr says how many runs are done, running and failed, and the time left.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings

from cnncompare.cli import CliError, add_format, emit, parse_list
from cnncompare.cli_train import (
    _install_sigint,
    _plain_warnings,
    _StderrProgress,
    add_train_options,
    shared_settings,
)


def register(subparsers) -> None:
    """Add the ``study`` subcommand."""
    from cnncompare.studies import FACTORS

    p = subparsers.add_parser(
        "study", help="train models x seeds (x one factor) and summarise over the seeds",
        description="Train every model for every seed (and every value of one more factor), "
                    "reusing stored runs, then print one row per group: the mean, standard "
                    "deviation and 95%% Student-t interval over the seeds of the test "
                    "accuracy at the epoch with the best validation accuracy.")
    p.add_argument("--models", required=True, help="comma-separated models, e.g. "
                                                   "lenet,alexnet,resnet18")
    p.add_argument("--seeds", default="3",
                   help="a count (3 means seeds 0,1,2) or a comma-separated list (default: 3)")
    p.add_argument("--factor", choices=list(FACTORS), default="model",
                   help="what is compared besides the model (default: the model only)")
    p.add_argument("--values", help="comma-separated values of --factor, e.g. adam,sgd or "
                                    "0.01,0.001 or on,off")
    p.add_argument("--preset", choices=("quick", "full"), default="quick",
                   help="quick: each model's small width; full: width 1 (default: quick)")
    add_train_options(p, study=True)
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the runs train: local (this process, one after another; "
                        "default) or ray (a Ray cluster; pip install 'cnncompare[ray]')")
    p.add_argument("--ray-address",
                   help="the Ray cluster to use: auto (the one started on this machine with "
                        "`ray start`), HOST:6379 or ray://HOST:10001 (default: start a local "
                        "Ray with this machine's CPUs)")
    p.add_argument("--cpus-per-run", type=int, default=1,
                   help="CPUs each run asks Ray for; torch uses that many threads (default: 1)")
    p.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="GPUs each run asks Ray for (0.5 puts two runs on a GPU); with GPUs "
                        "the device is cuda (default: 0)")
    add_format(p)
    p.set_defaults(func=cmd_study)


def plan(args: argparse.Namespace):
    """The study's configurations, every one resolved (checked) and its memory estimated
    before any training."""
    from cnncompare.studies import parse_seeds, parse_values, study_configs

    models = parse_list(args.models, what="model")
    seeds = parse_seeds(args.seeds)
    values = []
    if args.factor != "model":
        if not args.values:
            raise CliError(f"--factor {args.factor} needs --values, e.g. --values a,b")
        values = parse_values(args.factor, args.values)
    elif args.values:
        raise CliError("--values needs --factor (what the values are of)")
    from cnncompare.training import check_memory

    configs = study_configs(models, seeds, factor=args.factor, values=values,
                            preset=args.preset, **shared_settings(args))
    if getattr(args, "executor", "local") == "ray":
        # Resolved and checked by the workers, on their own devices, data and memory.
        from cnncompare import model_info

        for name in dict.fromkeys(c.model for c in configs):
            model_info(name)  # an unknown model: one error line before Ray starts
        return configs
    checked = set()
    for cfg in configs:
        resolved = cfg.resolve(args.data_root, args.download, device=args.device)
        shape = (resolved.model_config.key(), cfg.batch_size)
        if shape not in checked:  # seeds share a model: one estimate each
            check_memory(resolved, args.device)
            checked.add(shape)
    return configs


def cmd_study(args: argparse.Namespace) -> int:
    from cnncompare.compare import run_costs
    from cnncompare.executors import GridTally, make_executor
    from cnncompare.store import ResultsStore, StoreWarning
    from cnncompare.studies import TrainOptions, run_grid, study_table, summarize

    if args.executor != "ray" and (args.ray_address or args.cpus_per_run != 1
                                   or args.gpus_per_run):
        raise CliError("--ray-address, --cpus-per-run and --gpus-per-run need --executor ray")
    executor = make_executor(args.executor, address=args.ray_address,
                             cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    configs = plan(args)
    cancel = threading.Event()
    previous = _install_sigint(cancel)
    total = len(configs)
    printers: dict[int, _StderrProgress] = {}
    tally = GridTally(total)

    def progress(index: int, event: dict) -> None:
        cfg = configs[index]
        if tally.update(index, event) and args.executor == "ray":
            print(f"progress: {tally.line()}", file=sys.stderr)
        if index not in printers:
            printers[index] = _StderrProgress(prefix=f"[{index + 1}/{total} {cfg.model} "
                                                     f"seed {cfg.seed}] ")
        if event["kind"] == "failed":
            print(f"warning: run {index + 1} of {total} ({cfg.model}, seed {cfg.seed}) "
                  f"failed: {event['error']}", file=sys.stderr)
        elif event["kind"] == "done" and event.get("cached"):
            print(f"[{index + 1}/{total} {cfg.model} seed {cfg.seed}] stored: test accuracy "
                  f"{event['test_acc']:.4f} at epoch {event.get('selected_epoch')}",
                  file=sys.stderr)
        elif event["kind"] not in ("start", "result", "done"):
            printers[index](event)

    try:
        with _plain_warnings():
            store = ResultsStore()
            store.ensure_writable()  # a read-only home, a full disk: one error before any run
            warnings.filterwarnings("ignore", category=StoreWarning)
            results = run_grid(configs, store=store, progress=progress, cancel=cancel,
                               executor=executor, options=TrainOptions(device=args.device,
                                                    data_root=args.data_root,
                                                    download=args.download))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    ids = [r.run_id for r in results if r is not None and not isinstance(r, Exception)]
    records = store.records(ids)

    def warn(run_id: str, exc: Exception) -> None:
        print(f"warning: no cost for run {run_id}: {exc}", file=sys.stderr)

    runs = store.runs().drop_duplicates("run_id").set_index("run_id")
    runs = runs.loc[[i for i in dict.fromkeys(ids) if i in runs.index]].reset_index()
    summary = summarize(runs, args.factor, costs=run_costs(records, on_error=warn))
    emit(study_table(summary, args.factor), args.format)
    failed = [(c, r) for c, r in zip(configs, results, strict=True) if isinstance(r, Exception)]
    unfinished = sum(1 for r in results if r is None or getattr(r, "status", "") == "cancelled")
    if cancel.is_set() or unfinished:
        print(f"interrupted: {unfinished} of {total} run(s) are not finished; their finished "
              "epochs are kept. Run the same command again to resume.", file=sys.stderr)
        return 130
    if failed:
        cfg, exc = failed[0]
        raise CliError(f"{len(failed)} of {total} run(s) failed; the first, {cfg.model} seed "
                       f"{cfg.seed}: {type(exc).__name__}: {exc}")
    return 0
