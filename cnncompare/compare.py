"""Comparing stored runs: one results table, the Pareto front of accuracy against cost.

Pure pandas, so that the Compare page and the CLI's ``export`` show the same numbers.
Every accuracy is a run's reported one: the test accuracy at the epoch chosen on the
validation split (``selected_epoch``), with the last epoch's (``final_test_acc``) beside
it. Grouping runs over seeds and their statistics live in :mod:`cnncompare.studies`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cnncompare.i18n import N_, t

WORD_COLUMNS = ("status", "state", "selected_by", "mem_method")
"""Columns whose values are English words or sentences from a fixed set (a run's status,
how its epoch was chosen, how memory was measured): data in CSV, translated when shown."""

_STORED_WORDS = (
    N_("running"), N_("unfinished"), N_("finished"),              # store: a run's status
    N_("stored"), N_("partial"), N_("training now"), N_("new"),   # train_config.run_status
    N_("last epoch (stored without a validation split)"),         # store.SELECTED_LAST_EPOCH
    N_("best validation accuracy"),
)
"""The words of :data:`WORD_COLUMNS` that the store and the run plan write, marked for
translation (tests check that they match the values those modules write)."""


def shown_words(frame: pd.DataFrame, columns=WORD_COLUMNS) -> pd.DataFrame:
    """A copy of ``frame`` for display: each text value of ``columns`` in the current
    language (:func:`cnncompare.i18n.t`; a value the catalogue does not hold stays as it
    is). The data itself, and any CSV made from it, keep the English words."""
    shown = frame.copy()
    for column in columns:
        if column in shown:
            shown[column] = shown[column].map(lambda v: t(v) if isinstance(v, str) and v
                                              else v)
    return shown


def pareto_front(frame: pd.DataFrame, cost: str = "macs", score: str = "test_acc") -> pd.Series:
    """A boolean mask: the rows that no other row beats on both cost and score.

    A row is dominated when another costs no more and scores no less, and is strictly
    better on one of the two. Rows with a missing cost or score are never on the front.
    """
    c = frame[cost].to_numpy(dtype=float)
    s = frame[score].to_numpy(dtype=float)
    valid = ~(np.isnan(c) | np.isnan(s))
    on_front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(valid):
        no_worse = valid & (c <= c[i]) & (s >= s[i])
        strictly = (c < c[i]) | (s > s[i])
        on_front[i] = not np.any(no_worse & strictly)
    return pd.Series(on_front, index=frame.index, name="pareto")


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """A short, unique label per run: the model, plus what tells it apart from its twins."""
    base = runs["model"].astype(str)
    if "width" in runs:
        width = runs["width"].astype(float)
        base = base.where(width == 1.0, base + " w" + width.map("{:g}".format))
    dup = base.duplicated(keep=False)
    return base.where(~dup, base + " · " + runs["run_id"].astype(str).str[:6])


def pareto_frontier_line(frame: pd.DataFrame, cost: str = "macs",
                         score: str = "test_acc") -> pd.DataFrame:
    """The front's points sorted by cost: the staircase to draw on the chart."""
    front = frame[pareto_front(frame, cost, score)]
    return front.sort_values(cost)[[cost, score]]


RESULT_COLUMNS = [
    "label", "model", "dataset", "status", "test_acc", "selected_epoch", "val_acc",
    "final_test_acc", "selected_by", "epochs_done", "epochs", "seconds", "params", "macs",
    "flops", "latency_ms", "peak_mem_mb", "mem_method", "precision", "input", "width",
    "train_size", "val_size", "test_size", "batch_size", "lr", "optimizer", "scheduler",
    "weight_decay", "label_smoothing", "augment", "model_kwargs", "seed", "run_id",
]
"""The per-run table: reported (validation-chosen) and final accuracy, cost, speed,
precision and every setting."""

GROUP_COLUMNS = [
    "group", "model", "n_seeds", "seeds", "test_acc_mean", "test_acc_std", "test_acc_ci_low",
    "test_acc_ci_high", "val_acc_mean", "selected_epoch_median", "final_test_acc_mean",
    "largest_gap", "seconds_mean", "params", "macs", "flops", "latency_ms", "peak_mem_mb",
    "mem_method", "pareto", "within_noise", "precision", "dataset", "epochs", "batch_size",
    "lr", "optimizer", "scheduler", "weight_decay", "label_smoothing", "augment",
    "train_size", "val_size", "test_size", "input", "width", "model_kwargs", "run_ids",
]
"""The Compare page's table: one row per group of seeds (see
:func:`cnncompare.studies.summarize`), the factor's column after ``group``."""

ALWAYS_SHOWN = ("group", "model", "n_seeds", "test_acc_mean", "test_acc_ci_low",
                "test_acc_ci_high", "final_test_acc_mean", "precision")
"""Columns :func:`hide_constant_columns` keeps even when every row has the same value."""


def hide_constant_columns(frame: pd.DataFrame, keep=ALWAYS_SHOWN) -> pd.DataFrame:
    """``frame`` without the columns whose value is the same in every row (missing values
    count as one value), except those in ``keep``. One row: nothing is hidden."""
    if len(frame) < 2:
        return frame
    constant = [c for c in frame.columns if c not in keep
                and frame[c].astype(str).nunique(dropna=False) <= 1]
    return frame.drop(columns=constant)


def group_table(runs: pd.DataFrame, factor: str = "model") -> pd.DataFrame:
    """One row per group of seeds from the per-run :func:`results_table`: the
    statistics of :func:`cnncompare.studies.summarize`, the Pareto front on the means
    (``pareto``, ``within_noise``) and each group's cost and speed, as
    :data:`GROUP_COLUMNS` (the factor's column after ``group``)."""
    from cnncompare import studies  # scipy loads with the statistics only

    cols = list(GROUP_COLUMNS)
    if factor != "model":
        cols.remove(factor)
        cols.insert(1, factor)
    summary = studies.summarize(runs, factor)
    if summary.empty:
        return pd.DataFrame(columns=cols)
    first = runs.drop_duplicates("run_id").set_index("run_id")
    lead = summary["run_ids"].str.split(",").str[0]
    for col in ("flops", "latency_ms", "peak_mem_mb", "mem_method", "input", "macs"):
        if col in first:
            summary[col] = lead.map(first[col]).to_numpy()
    return studies.pareto_on_means(summary).reindex(columns=cols)


def run_costs(records, on_error=None) -> pd.DataFrame:
    """One row per run record: ``profiling.cost_summary`` of the exact configuration it
    trained (:meth:`~cnncompare.store.RunRecord.model_cfg`).

    Runs that share a configuration are profiled once. A run whose configuration cannot be
    built raises, unless ``on_error(run_id, exc)`` is given: then its cost is empty.
    """
    from cnncompare import profiling  # torch and fvcore load when costs are asked for

    by_key: dict[str, dict] = {}
    rows = []
    for rec in records:
        try:
            cfg = rec.model_cfg()
            if cfg.key() not in by_key:
                by_key[cfg.key()] = profiling.cost_summary(cfg)
            rows.append({"run_id": rec.run_id, **by_key[cfg.key()]})
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            if on_error is None:
                raise
            on_error(rec.run_id, exc)
            rows.append({"run_id": rec.run_id})
    return pd.DataFrame(rows, columns=["run_id", *profiling.SUMMARY_KEYS])


def results_table(store, run_ids, *, bench: str = "cached", device: str = "auto",
                  progress=None, cancel=None) -> pd.DataFrame:
    """One row per run (:data:`RESULT_COLUMNS`): the reported (validation-chosen) and
    final test accuracy, the model's cost and (optionally) its speed.

    Each run's record is read once. Cost (``params``, ``macs`` from fvcore, ``flops``
    from torch) is profiled for the exact configuration each run trained (cached on
    disk). ``bench`` says where latency and peak memory (batch 1, inference) come from:
    ``"cached"`` reads earlier measurements only, ``"measure"`` measures what is missing,
    ``"none"`` leaves them out.
    """
    from cnncompare import benchmark  # torch loads when the table is built

    records = store.records(list(run_ids))
    if not records:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    out = pd.DataFrame([r.row() for r in records])
    cfgs = [r.model_cfg() for r in records]
    costs = run_costs(records)
    out["label"] = run_labels(out)
    out["params"] = costs["params"].to_numpy()
    out["macs"] = costs["macs"].to_numpy()
    out["flops"] = costs["flops"].to_numpy()
    out["input"] = [f"{c.in_channels}x{c.input_size}x{c.input_size}" for c in cfgs]
    out["latency_ms"] = np.nan
    out["peak_mem_mb"] = np.nan
    out["mem_method"] = ""
    if bench != "none":
        settings = benchmark.BenchSettings(device=device, iters=15, max_seconds=3.0)
        unique = list({c.key(): c for c in cfgs}.values())
        rows = benchmark.benchmark_models(unique, [1], settings, only_cached=bench == "cached",
                                          progress=progress, cancel=cancel)
        by_config = rows.set_index("config_key")
        for i, cfg in enumerate(cfgs):
            if cfg.key() in by_config.index:
                row = by_config.loc[cfg.key()]
                out.loc[i, ["latency_ms", "peak_mem_mb"]] = [row["median_ms"], row["peak_mem_mb"]]
                out.loc[i, "mem_method"] = row["mem_method"]
    return out[RESULT_COLUMNS]


def per_class_accuracy(matrix, class_names) -> pd.DataFrame:
    """Recall per class from a confusion matrix (rows: true class); NaN for an empty class."""
    m = np.asarray(matrix, dtype=float)
    totals = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(totals > 0, np.diag(m) / totals, np.nan)
    return pd.DataFrame({"class": [str(c) for c in class_names], "accuracy": acc,
                         "images": totals.astype(int)})
