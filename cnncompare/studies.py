"""Studies: models x seeds (x one more factor), trained as a grid and summarised per group.

A *study* is a set of runs that share a dataset and hyperparameters and differ in the
factor being compared (the model by default, or one of :data:`FACTORS`) and in the seed.
This module plans the grid (:func:`study_configs`), trains it behind one small function
that takes an executor (:func:`run_grid`; :class:`LocalExecutor` trains in this process,
one run after another), and turns stored runs into numbers people can trust:

* runs are *grouped* when they agree on everything but the seed (:func:`group_runs`);
* a group's accuracy is the mean over its seeds with the sample standard deviation and
  a Student-t 95% confidence interval (:func:`t_interval`); a single-seed group has no
  interval and says so;
* the Pareto front of accuracy against MACs is computed on the means, and a group whose
  interval reaches the front is "within noise of the front" (:func:`pareto_on_means`);
* one sentence says which groups the data can and cannot tell apart at this number of
  seeds (Welch's t-test, :func:`separability`).

Every accuracy here is a run's reported accuracy: the test accuracy at the epoch with the
best validation accuracy (see :mod:`cnncompare.training`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from cnncompare.compare import pareto_front
from cnncompare.i18n import N_, Text, t
from cnncompare.train_config import OPTIMIZERS, TrainConfig, plan_runs

CONFIDENCE = 0.95
MAX_SEEDS = 100
MAX_RUNS = 1000
"""The largest grid one study may ask for (models x values x seeds)."""


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("on", "true", "yes", "1"):
        return True
    if low in ("off", "false", "no", "0"):
        return False
    raise ValueError(N_("expected on or off, got {text}", text=repr(text)))


def _parse_optimizer(text: str) -> str:
    name = text.strip().lower()
    if name not in OPTIMIZERS:
        raise ValueError(N_("optimizer must be one of {choices}, got {text}",
                            choices=", ".join(OPTIMIZERS), text=repr(text)))
    return name


@dataclass(frozen=True)
class Factor:
    """A setting a study may vary: its TrainConfig field, how to read one value from
    text, a title, and how a value reads in a group's label."""

    name: str
    title: str
    parse: Callable[[str], Any]
    label: str  # a format with {value}


FACTORS: dict[str, Factor] = {
    "model": Factor("model", N_("Model"), str, "{value}"),
    "optimizer": Factor("optimizer", N_("Optimizer"), _parse_optimizer, "{value}"),
    "lr": Factor("lr", N_("Learning rate"), float, "lr {value:g}"),
    "batch_size": Factor("batch_size", N_("Batch size"), int, "batch {value}"),
    "width": Factor("width", N_("Width"), float, "width {value:g}"),
    "train_size": Factor("train_size", N_("Training-set size"), int, "{value} train images"),
    "augment": Factor("augment", N_("Augmentation"), _parse_bool, "augment {value}"),
}
"""The factors a study compares: the model (default) or one hyperparameter. Titles are
English (marked for translation: ``t(FACTORS[f].title)`` where shown); a group's label is
data and stays as it is."""

_FACTOR_NOUNS = (N_("model"), N_("optimizer"), N_("learning rate"), N_("batch size"),
                 N_("width"), N_("training-set size"), N_("augmentation"))
"""Each factor's title in lower case, as messages name it (marked so that a message's
``{factor}`` argument is translated where the message is shown)."""


def factor_info(name: str) -> Factor:
    if name not in FACTORS:
        raise ValueError(f"factor must be one of {', '.join(FACTORS)}, got {name!r}")
    return FACTORS[name]


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``3`` or ``"3"`` -> ``[0, 1, 2]`` (a count); ``"0,1,2"`` or ``"7,"`` -> those seeds.

    ``ValueError`` for anything else, a negative seed, a repeated one or more than
    :data:`MAX_SEEDS`."""
    if isinstance(text, int) and not isinstance(text, bool):
        count: int | None = text
        seeds: list[int] = []
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",")]
        count = None
        if len(items) == 1:
            try:
                count = int(items[0])
            except ValueError:
                raise ValueError(f"seeds must be a count (3) or a list (0,1,2), "
                                 f"got {text!r}") from None
        else:
            try:
                seeds = [int(t) for t in items if t]
            except ValueError:
                raise ValueError(f"seeds must be whole numbers, got {text!r}") from None
            if not seeds:
                raise ValueError(f"seeds must be a count (3) or a list (0,1,2), got {text!r}")
    else:
        count, seeds = None, [int(s) for s in text]
    if count is not None:
        if not 1 <= count <= MAX_SEEDS:
            raise ValueError(f"the number of seeds must be from 1 to {MAX_SEEDS}, got {count}")
        return list(range(count))
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"a study takes at most {MAX_SEEDS} seeds, got {len(seeds)}")
    return seeds


def parse_values(factor: str, text: str) -> list[Any]:
    """The comma-separated values of ``factor`` (``"adam,sgd"``, ``"0.01,0.001"``,
    ``"on,off"``), each checked; ``ValueError`` naming the bad one."""
    info = factor_info(factor)
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(N_("give at least one value of {factor}", factor=info.title.lower()))
    values = []
    for item in items:
        try:
            values.append(info.parse(item))
        except ValueError as exc:
            raise ValueError(N_("bad value {value} of {factor}: {error}", value=repr(item),
                                factor=info.title.lower(),
                                error=exc.args[0] if exc.args else str(exc))) from None
    if len(set(values)) != len(values):
        raise ValueError(N_("the values of {factor} must not repeat, got {items}",
                            factor=info.title.lower(), items=str(items)))
    return values


def study_configs(models: Sequence[str], seeds: Sequence[int], *, factor: str = "model",
                  values: Sequence[Any] = (), preset: str = "quick",
                  **hyper: Any) -> list[TrainConfig]:
    """Every run of a study: each model, each value of ``factor`` (when it is not the
    model) and each seed, in that order. ``hyper`` holds the shared settings (see
    :func:`~cnncompare.train_config.plan_runs`); the factor's own value replaces its
    shared one."""
    factor_info(factor)
    if not models:
        raise ValueError(N_("choose at least one model"))
    if factor != "model" and not values:
        raise ValueError(N_("give the values of {factor} to compare",
                            factor=FACTORS[factor].title.lower()))
    levels = list(values) if factor != "model" else [None]
    size = len(models) * len(levels) * len(seeds)
    if size > MAX_RUNS:
        raise ValueError(N_("this study has {size} runs; at most {limit} are allowed",
                            size=f"{size:,}", limit=f"{MAX_RUNS:,}"))
    out: list[TrainConfig] = []
    for model in models:
        for level in levels:
            settings = dict(hyper)
            if level is not None:
                settings[factor] = level
            out += plan_runs([model], preset=preset, seeds=seeds, **settings)
    return out


# ---------------------------------------------------------------------------------------
# Running the grid


@dataclass(frozen=True)
class TrainOptions:
    """How and where runs train: what is not part of any run's identity. Plain data, so
    an executor can hand it to workers elsewhere."""

    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    allowed_roots: tuple[str, ...] | None = None
    channels_last: bool | str = "auto"

    def kwargs(self) -> dict[str, Any]:
        return {"device": self.device, "data_root": self.data_root, "download": self.download,
                "allowed_roots": self.allowed_roots, "channels_last": self.channels_last}


GridProgress = Callable[[int, dict[str, Any]], None]
"""``progress(index, event)``: the trainer's events of run ``index``, plus ``{"kind":
"start"}`` before it, ``{"kind": "result", "result": RunResult}`` after it and
``{"kind": "failed", "error": text}`` when it raised."""


class Executor(Protocol):
    """Trains a list of configurations; the driver (the caller) owns the results store.

    ``run`` returns one entry per configuration, in order: its
    :class:`~cnncompare.training.RunResult`, or the exception it raised (the other runs
    still train). An executor that trains elsewhere (:class:`cnncompare.executors.RayExecutor`)
    trains into its workers' own stores and hands records, epochs and checkpoints back to
    ``store``. :func:`cnncompare.executors.make_executor` builds one by name.
    """

    def run(self, configs: Sequence[TrainConfig], *, store: Any, options: TrainOptions,
            progress: GridProgress | None, cancel: Any) -> list[Any]: ...


class LocalExecutor:
    """In this process, one run after another (the default). ``train_fn`` is
    :func:`cnncompare.training.train_or_load` unless a test passes another."""

    def __init__(self, train_fn: Callable[..., Any] | None = None):
        self.train_fn = train_fn

    def run(self, configs: Sequence[TrainConfig], *, store: Any, options: TrainOptions,
            progress: GridProgress | None = None, cancel: Any = None) -> list[Any]:
        train = self.train_fn
        if train is None:
            from cnncompare.training import train_or_load  # torch loads on first use only

            train = train_or_load
        is_cancelled = _cancelled(cancel)
        out: list[Any] = []
        for index, cfg in enumerate(configs):
            if is_cancelled():
                out.append(None)
                continue
            tell = (lambda ev, i=index: progress(i, ev)) if progress else None
            if tell:
                tell({"kind": "start"})
            kwargs = {"progress": tell, "cancel": cancel, **options.kwargs()}
            if store is not None:
                kwargs["store"] = store
            try:
                result = train(cfg, **kwargs)
            except Exception as exc:  # reported per run; the next one still trains
                if tell:
                    tell({"kind": "failed", "error": N_(
                        "{kind}: {message}", kind=type(exc).__name__,
                        message=exc.args[0] if len(exc.args) == 1 and
                        isinstance(exc.args[0], Text) else str(exc))})
                out.append(exc)
                continue
            if tell:
                tell({"kind": "result", "result": result})
            out.append(result)
        return out


def _cancelled(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return lambda: bool(cancel())


def run_grid(configs: Sequence[TrainConfig], *, executor: Executor | None = None,
             store: Any = None, options: TrainOptions | None = None,
             progress: GridProgress | None = None, cancel: Any = None) -> list[Any]:
    """Train (or fetch from ``store``) every configuration through ``executor``
    (default: :class:`LocalExecutor`). One entry per configuration: its result, the
    exception it raised, or ``None`` when ``cancel`` stopped the grid before it."""
    executor = executor or LocalExecutor()
    return executor.run(list(configs), store=store, options=options or TrainOptions(),
                        progress=progress, cancel=cancel)


# ---------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and Student-t confidence interval of ``n`` values;
    ``std`` is NaN for one value and the interval is NaN below two (no interval)."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with its Student-t interval:
    ``mean +- t(1 - (1 - confidence)/2, n - 1) * std / sqrt(n)`` (``std`` with n - 1)."""
    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    std = 0.0 if np.ptp(x) == 0 else float(x.std(ddof=1))  # equal values: exactly 0
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


GROUP_SETTINGS = ["model", "dataset", "epochs", "batch_size", "lr", "optimizer", "scheduler",
                  "weight_decay", "label_smoothing", "augment", "train_size", "val_size",
                  "test_size", "input", "input_size", "in_channels", "width", "model_kwargs",
                  "precision"]
"""What runs of one group share: every setting but the seed (those of them a frame has)."""


def _value_text(column: str, value: Any) -> str:
    if column in FACTORS:
        if column == "augment":
            value = "on" if bool(value) else "off"
        try:
            return FACTORS[column].label.format(value=value)
        except (ValueError, TypeError):
            return f"{column} {value}"
    if column == "model_kwargs":
        return f"args {value}"
    if column in ("precision", "dataset", "scheduler"):
        return str(value)
    return f"{column.replace('_', ' ')} {value:g}" if isinstance(value, float) else \
        f"{column.replace('_', ' ')} {value}"


def group_runs(runs: pd.DataFrame, factor: str = "model") -> pd.DataFrame:
    """``runs`` (one row per run, :data:`cnncompare.store.FRAME_COLUMNS`) with a ``group``
    label and a ``group_key``: runs that agree on every setting but the seed share a
    group. The label starts with the ``factor``'s value and then names, in the order of
    :data:`GROUP_SETTINGS`, each setting that still tells apart groups whose labels would
    otherwise be the same (``"adam · lenet"``; a model's own width is not named when the
    model already is), so no two groups share a label and nothing is pooled silently."""
    factor_info(factor)
    out = runs.copy()
    cols = [c for c in GROUP_SETTINGS if c in out.columns]
    keys = out[cols].astype(str).agg("|".join, axis=1)
    out["group_key"] = keys
    parts = [factor] if factor in out.columns else []
    text = out[cols].astype(str)
    for c in cols:  # a setting is named only where it tells apart groups named alike so far
        if c not in parts and (text.groupby([text[p] for p in parts])[c].nunique() > 1
                               if parts else text[c].nunique() > 1).any():
            parts.append(c)
    if out.empty:
        out["group"] = pd.Series(dtype=str)
        return out
    out["group"] = [" · ".join(_value_text(c, row[c]) for c in parts) or str(row["model"])
                    for _, row in out.iterrows()]
    return out


STUDY_COLUMNS = ["model", "n_seeds", "test_acc_mean", "test_acc_std", "test_acc_ci_low",
                 "test_acc_ci_high", "selected_epoch_median", "final_test_acc_mean",
                 "seconds_mean", "params", "macs", "precision"]
"""The columns of :func:`summarize` (and of the ``study`` command), the factor's column
inserted after ``model`` when it is another setting."""


def summarize(runs: pd.DataFrame, factor: str = "model",
              costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per group (see :func:`group_runs`; a frame that has its ``group`` and
    ``group_key`` columns already keeps them), finished runs only: how many seeds,
    the test accuracy's mean, std and 95% interval over them (NaN for one seed), the
    median selected epoch, the final epoch's mean test accuracy, the mean training time,
    and the model's parameters and MACs (from ``costs``: ``run_id``, ``params``,
    ``macs``). Extra columns: ``group``, ``seeds``, ``val_acc_mean``, ``largest_gap``
    (the largest selected-minus-final test accuracy of a seed), ``run_ids`` and the
    group's shared settings."""
    grouped = runs if "group_key" in runs else group_runs(runs, factor)
    grouped = grouped[grouped["status"] == "finished"].copy()
    if costs is not None and len(grouped):
        cost = costs.drop_duplicates("run_id").set_index("run_id")
        for col in ("params", "macs"):
            if col in cost:
                grouped[col] = grouped["run_id"].map(cost[col])
    rows = []
    for key, g in grouped.groupby("group_key", sort=False):
        acc = t_interval(g["test_acc"])
        first = g.iloc[0]
        gaps = (g["test_acc"] - g["final_test_acc"]).dropna()
        row = {
            "group": first["group"], "model": first["model"],
            "n_seeds": int(acc.n), "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])),
            "test_acc_mean": acc.mean, "test_acc_std": acc.std,
            "test_acc_ci_low": acc.low, "test_acc_ci_high": acc.high,
            "selected_epoch_median": float(g["selected_epoch"].median())
            if g["selected_epoch"].notna().any() else math.nan,
            "final_test_acc_mean": float(g["final_test_acc"].mean()),
            "val_acc_mean": float(g["val_acc"].mean()) if g["val_acc"].notna().any()
            else math.nan,
            "largest_gap": float(gaps.max()) if len(gaps) else math.nan,
            "seconds_mean": float(g["seconds"].mean()),
            "params": first.get("params"), "macs": first.get("macs", math.nan),
            "precision": first.get("precision"),
            "run_ids": ",".join(g["run_id"]),
            "group_key": key,
        }
        if factor != "model":
            row[factor] = first[factor]
        for col in GROUP_SETTINGS:
            if col not in row and col in g:
                row[col] = first[col]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        cols = list(STUDY_COLUMNS)
        if factor != "model":
            cols.insert(1, factor)
        return pd.DataFrame(columns=["group", *cols])
    return frame


def study_table(summary: pd.DataFrame, factor: str = "model") -> pd.DataFrame:
    """The ``study`` command's columns (:data:`STUDY_COLUMNS`, the factor after model)."""
    cols = list(STUDY_COLUMNS)
    if factor != "model":
        cols.insert(1, factor)
    return summary.reindex(columns=cols)


def curve_bands(epochs: pd.DataFrame, groups: pd.DataFrame, y: str,
                x: str = "epoch") -> pd.DataFrame:
    """Per group and ``x`` (epoch or cumulative wall time): the mean of ``y`` over the
    group's seeds and the band drawn around it: +- one std for three or more seeds, the
    min-max range for two, none for one. ``groups`` maps ``run_id`` to ``group`` (and
    ``model``). For ``x == "wall_time"`` the x of an epoch is its mean over the seeds."""
    cols = ["group", "model", "epoch", "x", "mean", "low", "high", "n"]
    merged = epochs.merge(groups[["run_id", "group", "model"]], on="run_id")
    merged = merged[merged[y].notna()]
    if merged.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (group, epoch), g in merged.groupby(["group", "epoch"], sort=False):
        v = g[y].astype(float)
        n, mean = len(v), float(v.mean())
        if n >= 3:
            std = float(v.std(ddof=1))
            low, high = mean - std, mean + std
        elif n == 2:
            low, high = float(v.min()), float(v.max())
        else:
            low = high = math.nan
        xv = float(g[x].mean()) if x != "epoch" else int(epoch)
        rows.append({"group": group, "model": g["model"].iloc[0], "epoch": int(epoch), "x": xv,
                     "mean": mean, "low": low, "high": high, "n": n})
    order = {g: i for i, g in enumerate(pd.unique(groups["group"]))}  # as ``groups`` lists
    out = pd.DataFrame(rows, columns=cols)
    out["_order"] = out["group"].map(order)
    return out.sort_values(["_order", "epoch"]).drop(columns="_order").reset_index(drop=True)


def pareto_on_means(summary: pd.DataFrame, cost: str = "macs",
                    score: str = "test_acc_mean") -> pd.DataFrame:
    """``summary`` with ``pareto`` (no other group's mean is both cheaper and more
    accurate) and ``within_noise`` (off the front, but the group's 95% interval reaches
    the front's accuracy at its cost: the best front mean among groups that cost no
    more). Single-seed groups have no interval, so they are never within noise."""
    out = summary.copy()
    if out.empty:
        out["pareto"] = pd.Series(dtype=bool)
        out["within_noise"] = pd.Series(dtype=bool)
        return out
    out["pareto"] = pareto_front(out, cost, score).to_numpy()
    front = out[out["pareto"]]
    near = []
    for _, row in out.iterrows():
        if row["pareto"] or pd.isna(row["test_acc_ci_high"]) or pd.isna(row[cost]):
            near.append(False)
            continue
        reachable = front[front[cost] <= row[cost]][score]
        near.append(bool(len(reachable)) and row["test_acc_ci_high"] >= reachable.max())
    out["within_noise"] = near
    return out


@dataclass(frozen=True)
class Pair:
    """Two groups compared by Welch's t-test on their seeds' test accuracies."""

    better: str
    worse: str
    p_value: float
    clear: bool  # p < 1 - CONFIDENCE


def compare_pairs(summary: pd.DataFrame, alpha: float = 1 - CONFIDENCE) -> list[Pair]:
    """Welch's t-test (unequal variances) for every pair of groups with two or more
    seeds each, from their means, standard deviations and counts; the better group first.
    Two groups whose seeds all scored the same are told apart only if their means differ."""
    rows = summary[summary["n_seeds"] >= 2]
    pairs = []
    for (_, a), (_, b) in itertools.combinations(rows.iterrows(), 2):
        if a["test_acc_mean"] < b["test_acc_mean"]:
            a, b = b, a
        if a["test_acc_std"] == 0 and b["test_acc_std"] == 0:
            p = 0.0 if a["test_acc_mean"] != b["test_acc_mean"] else 1.0
        else:
            p = float(stats.ttest_ind_from_stats(
                a["test_acc_mean"], a["test_acc_std"], int(a["n_seeds"]),
                b["test_acc_mean"], b["test_acc_std"], int(b["n_seeds"]),
                equal_var=False).pvalue)
        pairs.append(Pair(str(a["group"]), str(b["group"]), p, p < alpha))
    return pairs


def separability(summary: pd.DataFrame) -> str:
    """Which groups the data can and cannot tell apart at this number of seeds, in
    words: Welch's t-test at the 5% level on each pair of groups with two or more seeds
    (neighbours in the ranking only, when there are more than five groups). In the current
    language (:func:`cnncompare.i18n.t`): English unless a page chose another."""
    if summary.empty:
        return ""
    single = summary[summary["n_seeds"] < 2]["group"].astype(str).tolist()
    multi = summary[summary["n_seeds"] >= 2].sort_values("test_acc_mean", ascending=False)
    sentences = []
    if len(multi) >= 2:
        counts = sorted(set(int(n) for n in multi["n_seeds"]))
        seeds = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}\u2013{counts[-1]}")
        pairs = compare_pairs(multi)
        if len(multi) > 5:
            order = list(multi["group"].astype(str))
            neighbours = set(zip(order, order[1:], strict=False))
            pairs = [p for p in pairs if (p.better, p.worse) in neighbours]
        clear = ", ".join(t("{better} > {worse}", better=p.better, worse=p.worse)
                          for p in pairs if p.clear)
        unclear = ", ".join(t("{better} and {worse}", better=p.better, worse=p.worse)
                            for p in pairs if not p.clear)
        if clear and unclear:
            sentences.append(t(
                "At {seeds} seeds per group, Welch's t-test (5% level) tells apart "
                "{clear}, but it cannot tell apart {unclear}.",
                seeds=seeds, clear=clear, unclear=unclear))
        elif clear:
            sentences.append(t(
                "At {seeds} seeds per group, Welch's t-test (5% level) tells every pair "
                "compared apart: {clear}.", seeds=seeds, clear=clear))
        else:
            sentences.append(t(
                "At {seeds} seeds per group, Welch's t-test (5% level) cannot tell any of "
                "these groups apart: {unclear}. More seeds would be needed to rank them.",
                seeds=seeds, unclear=unclear))
    elif len(multi) == 1 and not single:
        sentences.append(t("There is only one group, so there is nothing to tell apart."))
    if single:
        sentences.append(t("These groups have a single seed, so they have no interval and no "
                           "difference involving them can be tested: {names}.",
                           names=", ".join(single)))
    return " ".join(sentences)
