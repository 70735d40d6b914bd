"""Latency, throughput and memory of a network on this machine, and the machine's peak.

The loop follows timm's benchmark script: build the model once, run a few warm-up steps,
then time single steps, each ended by a device synchronisation. A step is

* ``infer``: one forward pass under ``torch.inference_mode()``;
* ``train``: forward, cross-entropy loss, backward and one SGD (momentum 0.9) update.

**Repeats until the figure is steady or the time budget is spent.** After ``min_iters``
timed steps the loop stops as soon as the spread of the step times, (p90 - p10) /
median, is at most ``target_spread`` (10% by default); otherwise it goes on until
``iters`` steps or ``max_seconds`` (the budget of one row, warm-up included) have passed.
Each row gives the median and the p10-p90 range of its step times, the spread, the load
average of the machine, why the timing stopped, and ``noisy`` when the spread is above
:data:`NOISY_SPREAD`: then the median may be off by about that much, and ``note`` says
so in a sentence. Within one model, a larger batch whose step came out *faster* than a
smaller batch's is flagged (``batch_anomaly``) rather than shown silently: the machine
was busy while one of them ran. Throughput is images/s (batch size / median).

**Bounded before it starts.** Before anything is built, every row's memory (the
estimate below) is checked against the memory free on the device, and its step time
(the step's counted FLOPs at the machine's measured matmul rate for that dtype) against
the time budget: a row that cannot fit is refused with a message saying why and what to
change, so that a request like float16 on a CPU (no fast kernels: minutes per step) ends
at once instead of running for many minutes. The matmul peak itself is timed on growing
squares within its own small budget.

Memory, per row (``peak_mem_mb``, with ``mem_method`` saying how it was measured):

* CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``) during one extra step;
* CPU: torch's profiler with ``profile_memory=True`` records every allocation and release
  of the CPU allocator during one extra step; the peak of their running sum is the step's
  peak (buffers a library allocates outside torch's allocator, e.g. oneDNN scratch, are
  not seen);
* both add the bytes that were already live for this model (parameters, buffers,
  optimiser state, the batch), so the figure is this model's peak, not the process's.

``est_mem_mb`` is the estimate from :mod:`cnncompare.profiling` for comparison:
parameters (x3 in training: weights, gradients, momentum) + batch x activations.

:func:`machine_peak` times square matmuls on the same device and dtype (the fastest
run); every row's ``achieved_gflops`` (torch FLOPs per image x images/s) is set against
it (``peak_share``).

A benchmark never changes the thread count other threads see: with ``threads`` set, the
calling thread uses that many intra-op threads and the process's default for new threads
(a training job started meanwhile) stays as it was.

Results are cached on disk under ``paths.cache_dir("bench")``, keyed by the model
configuration, batch size, settings, device name, thread count and torch version, so a
page that shows them comes back at once; pass ``cache=False`` to measure afresh (the
fresh row then replaces the cached one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnncompare import paths, profiling
from cnncompare.cache import read_json, stable_hash, write_json
from cnncompare.checks import positive_int
from cnncompare.devices import device_name, resolve_device, synchronize
from cnncompare.i18n import N_
from cnncompare.registry import ModelConfig, config_for
from cnncompare.runtime import (
    Cancel,
    Cancelled,
    Runtime,
    autocast_dtype,
    cancel_check,
    main_logits,
    optimizer_step,
)

MODES = ("infer", "train")
DTYPES = ("float32", "float16", "bfloat16", "amp")
MB = profiling.MB
SCHEMA = 4  # 4: p10, spread, noisy, load, stop reason, note, status, batch anomaly

NOISY_SPREAD = 0.25
"""A row whose step times spread more than this, (p90 - p10) / median, is ``noisy``."""

MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
"""The most intra-op threads a benchmark may ask for (far more crashes OpenMP)."""

MAX_SECONDS = 3600.0
"""The largest time budget of one row."""

PEAK_SECONDS = 2.0
"""The time budget of :func:`machine_peak`."""

NOT_MEASURED = "not measured yet"
"""The ``status`` of a row asked for with ``missing="row"`` that nobody has measured."""

Progress = Callable[[float, str], None]
"""``progress(fraction_done, message)``; the fraction runs from 0 to 1 over a whole job."""

RESULT_COLUMNS = [
    "model", "config", "config_key", "mode", "device", "device_name", "dtype", "batch_size",
    "threads", "torch", "iters", "median_ms", "p10_ms", "p90_ms", "spread", "noisy",
    "batch_anomaly", "note", "mean_ms", "min_ms", "throughput", "peak_mem_mb", "mem_method",
    "est_mem_mb", "flops_per_image", "achieved_gflops", "peak_gflops", "peak_share",
    "load_per_core", "stopped", "status", "cached",
]
"""The columns of :func:`benchmark_models`."""


_PEAKS: dict[str, dict[str, Any]] = {}
"""Machine peaks measured by this process (a machine's peak does not change while it runs)."""


class BenchmarkCancelled(Cancelled, RuntimeError):
    """Raised inside a benchmark when its ``cancel`` says stop."""


@dataclass(frozen=True)
class BenchSettings:
    """How to benchmark: the mode, the device and dtype, and how long to time.

    ``max_seconds`` is the time budget of one row (warm-up and timed steps); timing stops
    early once ``min_iters`` steps spread at most ``target_spread`` around their median.
    """

    mode: str = "infer"
    device: str = "auto"
    dtype: str = "float32"
    warmup: int = 3
    iters: int = 20
    min_iters: int = 5
    max_seconds: float = 10.0
    measure_memory: bool = True
    threads: int | None = None
    target_spread: float = 0.10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for what, least in (("warmup", 0), ("iters", 1), ("min_iters", 1)):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{what} must be an integer of at least {least}, got {value!r}")
        if self.warmup > 1000 or self.iters > 100_000:
            raise ValueError(f"warmup must be at most 1000 and iters at most 100000, got "
                             f"{self.warmup} and {self.iters}")
        seconds = self.max_seconds
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                or not 0 < seconds <= MAX_SECONDS):
            raise ValueError(f"max_seconds must be more than 0 and at most {MAX_SECONDS:g}, "
                             f"got {seconds!r}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= MAX_THREADS):
            raise ValueError(f"threads must be an integer from 1 to {MAX_THREADS} (this machine "
                             f"has {os.cpu_count()} cores), got {self.threads!r}")
        spread = self.target_spread
        if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not (
                0 < spread < 10):
            raise ValueError(f"target_spread must be a fraction above 0, got {spread!r}")

    def cache_fields(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("device")  # the resolved device and its name key the cache instead
        d.pop("threads")  # the thread count in effect keys it
        return d


# --------------------------------------------------------------------------------------
# Public functions


def check_batch_sizes(batch_sizes: Iterable[Any]) -> list[int]:
    """The batch sizes as a list of positive ints; ``ValueError`` with a clear message."""
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("give at least one batch size")
    return [positive_int(b, "batch size", (int, np.integer)) for b in sizes]


def benchmark_models(
    names: Sequence[str | ModelConfig],
    batch_sizes: Iterable[int] = (1,),
    settings: BenchSettings | None = None,
    *,
    preset: str | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache: bool = True,
    only_cached: bool = False,
    missing: str = "skip",
    **config: Any,
) -> pd.DataFrame:
    """One row per model and batch size (columns: :data:`RESULT_COLUMNS`).

    ``names`` are model names (configured by ``preset`` and ``config`` as in
    :func:`cnncompare.profiling.profile_models`) or :class:`ModelConfig` objects.
    With ``cache`` a row measured before with the same key is reused (``cached`` is True);
    without it every row is measured again. Either way a fresh row replaces the cached one.
    With ``only_cached`` nothing is measured; the rows not in the cache are left out, or
    with ``missing="row"`` kept with ``status`` :data:`NOT_MEASURED` and no figures.
    Raises ``ValueError`` before measuring anything when a row would not fit in the
    device's free memory or its time budget (:func:`check_feasible`), and
    :class:`BenchmarkCancelled` when ``cancel`` says stop.
    """
    settings = settings or BenchSettings()
    if missing not in ("skip", "row"):
        raise ValueError(f"missing must be 'skip' or 'row', got {missing!r}")
    sizes = check_batch_sizes(batch_sizes)
    cfgs = [_config(n, preset, config) for n in names]
    device = resolve_device(settings.device)
    jobs = [(cfg, b) for cfg in cfgs for b in sizes]
    rows: list[dict[str, Any] | None] = []
    with _threads(settings.threads):
        paths_ = [_row_path(cfg, b, settings, device) for cfg, b in jobs]
        for (cfg, b), path in zip(jobs, paths_, strict=True):
            row = _read_row(path) if (cache or only_cached) else None
            if row is None and only_cached and missing == "row":
                row = _missing_row(cfg, b, settings, device)
            rows.append(row)
        todo = [i for i, row in enumerate(rows) if row is None and not only_cached]
        peak = None
        if todo:
            check_feasible([jobs[i] for i in todo], settings)  # memory: before the peak
            _report(progress, 0.0, N_("timing the machine's peak (matmul)"))
            peak = machine_peak(settings.device, settings.dtype, cache=cache)
            check_feasible([jobs[i] for i in todo], settings, peak)
        for done, i in enumerate(todo):
            _check_cancel(cancel)
            cfg, b = jobs[i]
            sub = _sub_progress(progress, done, len(todo))
            row = benchmark_one(cfg, b, settings, progress=sub, cancel=cancel,
                                peak_gflops=peak["gflops"] if peak else None)
            _write_json(paths_[i], row)  # the latest measurement, for the next reader
            rows[i] = dict(row, cached=False)
    _report(progress, 1.0, N_("done"))
    frame = pd.DataFrame([r for r in rows if r is not None], columns=RESULT_COLUMNS)
    return flag_batch_anomalies(frame)


def check_feasible(jobs: Sequence[tuple[ModelConfig, int]], settings: BenchSettings,
                   peak: dict[str, Any] | None = None) -> None:
    """``ValueError`` (the first problem in a sentence) for rows that cannot run in bounds.

    A row needs its estimated memory (:func:`estimate_memory_mb`, float32) free on the
    device, and, given the machine's ``peak``, one step, estimated as its counted FLOPs at
    the matmul rate in this dtype (``peak["gflops"]``), must fit in ``max_seconds``.
    """
    free_mb = free_memory_mb(resolve_device(settings.device))
    problems = []
    for cfg, batch in jobs:
        summary = profiling.cost_summary(cfg)
        need_mb = estimate_memory_mb(summary, batch, settings.mode)
        step_flops = batch * (summary["train_flops"] if settings.mode == "train"
                              else summary["flops"])
        rate = float(peak["gflops"]) if peak and peak.get("gflops") else math.inf
        step_s = step_flops / (rate * 1e9)
        what = "training step" if settings.mode == "train" else "inference step"
        if free_mb is not None and need_mb > free_mb:
            problems.append(
                f"{cfg.label()} at batch {batch} needs about {_size_text(need_mb)} for one "
                f"{what} (parameters and activations, estimated), more than the "
                f"{_size_text(free_mb)} free on this device: choose a smaller batch, input "
                "or width.")
        elif step_s > settings.max_seconds:
            problems.append(
                f"{cfg.label()} at batch {batch} would take about {step_s:,.0f} s per {what} "
                f"in {settings.dtype} here (its {step_flops / 1e9:,.1f} GFLOPs at the "
                f"{rate:,.1f} GFLOP/s this device reaches in that dtype), more "
                f"than the time budget of {settings.max_seconds:g} s: choose a smaller "
                "batch or input, another dtype, or a larger budget.")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)


def _size_text(mb: float) -> str:
    """``"3.2 GB"`` from 3,200 MB; ``"512 MB"`` below a gigabyte."""
    return f"{mb / 1e3:,.1f} GB" if mb >= 1e3 else f"{mb:,.0f} MB"


def free_memory_mb(device: torch.device) -> float | None:
    """Memory free for a benchmark on ``device`` (decimal MB), or None where unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free / MB
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MB
    except (AttributeError, OSError, ValueError):
        return None


def flag_batch_anomalies(frame: pd.DataFrame) -> pd.DataFrame:
    """Set ``batch_anomaly`` (and say why in ``note``) on every row whose step came out
    faster than a smaller batch's of the same model and settings.

    A larger batch does at least as much work per step, so a faster step means one of the
    two timings was disturbed (another program took the cores while the smaller batch
    ran): the figures should not be read as the batches' true cost.
    """
    frame = frame.copy()
    if frame.empty:
        return frame
    frame["batch_anomaly"] = False
    keys = ["config_key", "mode", "device", "dtype", "threads"]
    for _, group in frame.dropna(subset=["median_ms"]).groupby(keys, sort=False):
        ordered = group.sort_values("batch_size")
        slowest_so_far: tuple[int, float] | None = None
        for index, row in ordered.iterrows():
            if slowest_so_far is not None and row["median_ms"] < slowest_so_far[1]:
                smaller, smaller_ms = slowest_so_far
                frame.at[index, "batch_anomaly"] = True
                frame.at[index, "note"] = _join_notes(
                    row["note"],
                    f"Batch {row['batch_size']} took {row['median_ms']:.3g} ms a step, less "
                    f"than batch {smaller} ({smaller_ms:.3g} ms): the machine was busy during "
                    "one of them; measure again for a figure to compare.")
            if slowest_so_far is None or row["median_ms"] > slowest_so_far[1]:
                slowest_so_far = (int(row["batch_size"]), float(row["median_ms"]))
    return frame


def latency_text(row: Mapping[str, Any]) -> str:
    """One cell of text for a latency: ``"1.23 ms (p10-p90 1.20-1.31)"``, with "noisy"
    appended when it is, or :data:`NOT_MEASURED` for a row nobody has measured."""
    median = row.get("median_ms")
    if median is None or (isinstance(median, float) and math.isnan(median)):
        return NOT_MEASURED
    text = f"{median:.3g} ms (p10–p90 {row['p10_ms']:.3g}–{row['p90_ms']:.3g})"
    return text + " · noisy" if row.get("noisy") else text


def benchmark_one(
    cfg: ModelConfig,
    batch_size: int,
    settings: BenchSettings | None = None,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    peak_gflops: float | None = None,
) -> dict[str, Any]:
    """Measure one model at one batch size; returns one row (see :data:`RESULT_COLUMNS`)."""
    settings = settings or BenchSettings()
    (batch_size,) = check_batch_sizes([batch_size])
    device = resolve_device(settings.device)
    label = N_("{model} · batch {batch}", model=cfg.name, batch=batch_size)
    _report(progress, 0.0, N_("{label}: building", label=label))
    torch.manual_seed(0)
    started = time.perf_counter()
    model = cfg.build().to(device)
    runner = _StepRunner(model, cfg, batch_size, settings, device)
    try:
        timing = time_steps(runner.step, device, settings, progress=progress, cancel=cancel,
                            label=label)
        if settings.measure_memory and time.perf_counter() - started > settings.max_seconds:
            peak_mb, method = math.nan, N_("not measured: the time budget was spent")
        elif settings.measure_memory:
            _report(progress, 0.97, N_("{label}: measuring peak memory", label=label))
            peak_mb, method = runner.measure_peak_memory()
        else:
            peak_mb, method = math.nan, N_("not measured")
    except (RuntimeError, ValueError) as exc:
        if "Expected more than 1 value per channel" in str(exc):
            raise ValueError(N_(
                "{model} cannot train with batch size {batch}: batch normalisation needs "
                "more than one value per channel; use a batch size of 2 or more.",
                model=cfg.name, batch=batch_size)) from None
        raise
    finally:
        del runner, model
        _free(device)
    summary = profiling.cost_summary(cfg)
    flops = summary["train_flops"] if settings.mode == "train" else summary["flops"]
    stats = summarize_times(timing, settings)
    throughput = batch_size / (stats["median_ms"] / 1e3)
    achieved = flops * throughput / 1e9
    return {
        "model": cfg.name,
        "config": cfg.label(),
        "config_key": cfg.key(),
        "mode": settings.mode,
        "device": device.type,
        "device_name": device_name(device),
        "dtype": settings.dtype,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "iters": stats["iters"],
        "median_ms": stats["median_ms"],
        "p10_ms": stats["p10_ms"],
        "p90_ms": stats["p90_ms"],
        "spread": stats["spread"],
        "noisy": stats["noisy"],
        "batch_anomaly": False,
        "note": stats["note"],
        "mean_ms": stats["mean_ms"],
        "min_ms": stats["min_ms"],
        "throughput": throughput,
        "peak_mem_mb": peak_mb,
        "mem_method": method,
        "est_mem_mb": estimate_memory_mb(summary, batch_size, settings.mode),
        "flops_per_image": flops,
        "achieved_gflops": achieved,
        "peak_gflops": peak_gflops if peak_gflops is not None else math.nan,
        "peak_share": achieved / peak_gflops if peak_gflops else math.nan,
        "load_per_core": stats["load_per_core"],
        "stopped": timing.stopped,
        "status": "measured",
    }


@dataclass(frozen=True)
class Timing:
    """What :func:`time_steps` measured: the step times (ms) and why it stopped.

    ``stopped``: ``"steady"`` (the spread reached the target), ``"max steps"`` (``iters``
    were timed) or ``"time budget"`` (``max_seconds`` ran out first).
    """

    times: list[float]
    stopped: str


def time_steps(
    step: Callable[[], Any],
    device: torch.device,
    settings: BenchSettings,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    label: str = "",
) -> Timing:
    """Warm up, then time ``step`` (ms each, synchronised) as :class:`BenchSettings` says.

    The budget ``max_seconds`` covers the warm-up (which stops early once it has used a
    quarter of it, after one step) and the timed steps; at least one step is timed.
    """
    started = time.perf_counter()
    for i in range(settings.warmup):
        _check_cancel(cancel)
        _report(progress, 0.05 + 0.15 * i / max(settings.warmup, 1),
                N_("{label}: warm-up {step}/{steps}", label=label, step=i + 1,
                   steps=settings.warmup))
        step()
        synchronize(device)
        if time.perf_counter() - started > settings.max_seconds / 4:
            break
    times: list[float] = []
    stopped = "max steps"
    while len(times) < settings.iters:
        _check_cancel(cancel)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
        _report(progress, 0.2 + 0.75 * len(times) / settings.iters,
                N_("{label}: timed step {step}/{steps}", label=label, step=len(times),
                   steps=settings.iters))
        if len(times) >= settings.min_iters and relative_spread(times) <= settings.target_spread:
            stopped = "steady"
            break
        if time.perf_counter() - started > settings.max_seconds:
            stopped = "time budget"
            break
    return Timing(times=times, stopped=stopped)


def summarize_times(timing: Timing, settings: BenchSettings) -> dict[str, Any]:
    """The figures of one row's step times: ``iters, median_ms, p10_ms, p90_ms, spread,
    noisy, note, mean_ms, min_ms, load_per_core``.

    ``noisy``: fewer than three steps (no spread can be measured) or a spread above
    :data:`NOISY_SPREAD`; ``note`` then says so in a sentence.
    """
    times = timing.times
    median = float(np.median(times))
    p10, p90 = (float(v) for v in np.percentile(times, [10, 90]))
    spread = (p90 - p10) / median if median > 0 else math.nan
    noisy = bool(len(times) < 3 or not spread <= NOISY_SPREAD)
    load = load_per_core()
    return {"iters": len(times), "median_ms": median, "p10_ms": p10, "p90_ms": p90,
            "spread": spread, "noisy": noisy,
            "note": _timing_note(times, spread, noisy, timing.stopped, settings, load),
            "mean_ms": float(np.mean(times)), "min_ms": float(np.min(times)),
            "load_per_core": load}


def relative_spread(times: Sequence[float]) -> float:
    """(p90 - p10) / median of ``times``; infinite for fewer than three."""
    if len(times) < 3:
        return math.inf
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return float((p90 - p10) / median) if median > 0 else math.inf


def load_per_core() -> float:
    """The machine's 1-minute load average per core (NaN where the OS gives none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return math.nan


def _timing_note(times: Sequence[float], spread: float, noisy: bool, stopped: str,
                 settings: BenchSettings, load: float) -> str:
    """A plain sentence when a timing should not be trusted; empty when it can be."""
    if not noisy:
        return ""
    busy = (f" The machine's load was {load:.1f} per core." if not math.isnan(load) and
            load > 0.8 else "")
    if len(times) < 3:
        return (f"Only {len(times)} step(s) fit in the {settings.max_seconds:g} s budget: "
                f"no spread can be measured, so this figure may be far off.{busy}")
    why = {"max steps": f"after {len(times)} steps, the most asked for",
           "time budget": f"after {len(times)} steps, when the {settings.max_seconds:g} s "
                          "budget ran out"}.get(stopped, f"after {len(times)} steps")
    return (f"Too noisy to mean much: the step times spread {spread:.0%} around their median "
            f"(p10 to p90) {why}.{busy} Measure again on a quieter machine or with a larger "
            "time budget.")


def _join_notes(*notes: Any) -> str:
    return " ".join(str(n) for n in notes if isinstance(n, str) and n)


def _missing_row(cfg: ModelConfig, batch_size: int, settings: BenchSettings,
                 device: torch.device) -> dict[str, Any]:
    """A placeholder for a row nobody has measured: its keys, no figures."""
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, math.nan)
    row.update({"model": cfg.name, "config": cfg.label(), "config_key": cfg.key(),
                "mode": settings.mode, "device": device.type,
                "device_name": device_name(device), "dtype": settings.dtype,
                "batch_size": batch_size, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "noisy": False, "batch_anomaly": False,
                "note": "", "mem_method": "", "stopped": "", "status": NOT_MEASURED,
                "cached": False})
    return row


def estimate_memory_mb(summary: dict[str, Any], batch_size: int, mode: str) -> float:
    """Parameters (x3 when training: weights, gradients, momentum) + batch x activations."""
    copies = 3 if mode == "train" else 1
    return copies * summary["param_mb"] + batch_size * summary["activation_mb"]


def machine_peak(device: str | torch.device = "auto", dtype: str = "float32",
                 n: int | None = None, *, iters: int = 10, cache: bool = True,
                 max_seconds: float = PEAK_SECONDS) -> dict[str, Any]:
    """GFLOP/s of square matmuls (2 n^3 FLOPs each) on ``device``: the fastest run.

    A peak is what the machine can do, so the fastest run counts (``gflops``); the median
    run at that size is reported too (``gflops_median``). With ``n`` one size is timed;
    without, squares of 256, 512, 1024, 2048 (and 4096 on a GPU) in turn while they fit in
    ``max_seconds``, so that a dtype the device computes slowly (float16 on most CPUs)
    costs seconds, not minutes; ``n`` reports the size of the fastest run. At most
    ``iters`` runs a size. ``dtype="amp"`` times the dtype mixed-precision training uses
    on the device. With ``cache`` a result is reused from this process's memory or the
    disk; without it the matmuls are timed again.
    """
    dev = resolve_device(device)
    tdtype = _compute_dtype(dtype, dev)
    sizes = [n] if n else [256, 512, 1024, 2048] + ([4096] if dev.type != "cpu" else [])
    key = {"kind": "peak", "device": device_name(dev), "threads": torch.get_num_threads(),
           "dtype": str(tdtype), "sizes": sizes, "iters": iters, "budget": max_seconds,
           "torch": torch.__version__, "schema": SCHEMA}
    digest = stable_hash(key, 20)
    path = _cache_file(f"peak-{digest}.json")
    if cache:
        hit = _PEAKS.get(digest) or (_read_row(path) if path else None)
        if hit is not None:
            if path is not None and not path.exists():
                _write_json(path, hit)
            _PEAKS[digest] = hit
            return dict(hit)
    started = time.perf_counter()
    best: tuple[float, float, int] | None = None  # (best s, median s, n)
    for size in sizes:
        a = torch.randn(size, size, device=dev).to(tdtype)
        b = torch.randn(size, size, device=dev).to(tdtype)
        a @ b  # warm-up
        synchronize(dev)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            a @ b
            synchronize(dev)
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - started > max_seconds:
                break
        del a, b
        rate = 2 * size**3 / min(times)
        if best is None or rate > 2 * best[2] ** 3 / best[0]:
            best = (min(times), float(np.median(times)), size)
        elapsed = time.perf_counter() - started
        # A run of the next size takes about 8x as long: go on only if a few would fit.
        if elapsed + 8 * min(times) * 4 > max_seconds:
            break
    assert best is not None
    best_s, median_s, size = best
    result = {"device": dev.type, "device_name": device_name(dev), "dtype": str(tdtype),
              "n": size, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "best_ms": best_s * 1e3, "median_ms": median_s * 1e3,
              "gflops": 2 * size**3 / best_s / 1e9, "gflops_median": 2 * size**3 / median_s / 1e9,
              "seconds": time.perf_counter() - started}
    _PEAKS[digest] = result
    if path is not None:
        _write_json(path, result)
    return dict(result)


def clear_cache() -> int:
    """Delete every cached benchmark row and peak under the current home."""
    return paths.clear_cache("bench")


# --------------------------------------------------------------------------------------
# One model's step


class _StepRunner:
    """A model, a batch and (in training) an optimiser: ``step()`` runs one step.

    ``dtype="amp"`` runs under the autocast dtype training uses with mixed precision on
    this device (:func:`cnncompare.runtime.autocast_dtype`), with its gradient scaler.
    """

    def __init__(self, model: nn.Module, cfg: ModelConfig, batch_size: int,
                 settings: BenchSettings, device: torch.device):
        self.model, self.device, self.mode = model, device, settings.mode
        amp = autocast_dtype(device, True) if settings.dtype == "amp" else None
        self.runtime = Runtime(device, amp)
        tdtype = torch.float32 if amp else _compute_dtype(settings.dtype, device)
        model.to(dtype=tdtype)
        g = torch.Generator().manual_seed(0)
        shape = (batch_size, cfg.in_channels, cfg.input_size, cfg.input_size)
        self.x = torch.randn(shape, generator=g).to(device=device, dtype=tdtype)
        self.y = torch.randint(0, cfg.num_classes, (batch_size,), generator=g).to(device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler = self.runtime.grad_scaler()
        if self.mode == "train":
            model.train()
            self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        else:
            model.eval()

    def step(self) -> None:
        if self.mode == "infer":
            with torch.inference_mode(), self.runtime.autocast():
                self.model(self.x)
            return
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        with self.runtime.autocast():
            logits = main_logits(self.model(self.x))
            loss = nn.functional.cross_entropy(logits.float(), self.y)
        optimizer_step(loss, self.optimizer, self.scaler)

    def live_bytes(self) -> int:
        """Bytes this model already holds: parameters, buffers, optimiser state, batch."""
        tensors = list(self.model.parameters()) + list(self.model.buffers()) + [self.x, self.y]
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
        seen, total = set(), 0
        for t in tensors:
            if t.device.type != self.device.type:
                continue
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
        return total

    def measure_peak_memory(self) -> tuple[float, str]:
        """The peak bytes of one step (MB) and how they were measured."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        live = self.live_bytes()
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            self.step()
            synchronize(self.device)
            extra = torch.cuda.max_memory_allocated(self.device) - before
            return (live + extra) / MB, N_("cuda allocator peak (max_memory_allocated)")
        if self.device.type == "cpu":
            extra = _cpu_step_peak(self.step)
            if extra is None:
                return math.nan, N_("not measured (profiler memory events unavailable)")
            return (live + extra) / MB, N_("torch.profiler CPU allocator events")
        return math.nan, f"not measured on {self.device.type}"


def _cpu_step_peak(step: Callable[[], Any]) -> int | None:
    """Peak of the CPU allocator's running total (bytes) during ``step``, via the profiler."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_silenced():
        prof.__enter__()
    try:
        step()
    finally:
        with _native_stderr_silenced():
            prof.__exit__(None, None, None)
    try:
        events = prof.profiler.kineto_results.events()
    except AttributeError:
        return None
    cpu = torch.autograd.DeviceType.CPU
    mem = sorted((e for e in events if e.name() == "[memory]" and e.device_type() == cpu),
                 key=lambda e: e.start_ns())
    running = peak = 0
    for e in mem:
        running += e.nbytes()
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide the lines the profiler's C++ side prints on start and stop (file descriptor 2).

    Process-wide while it lasts (milliseconds; about a second the first time, while the
    profiler initialises), so it wraps only the profiler's start and stop, never a step.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# --------------------------------------------------------------------------------------
# Helpers


def _config(name: str | ModelConfig, preset: str | None, config: dict[str, Any]) -> ModelConfig:
    if isinstance(name, ModelConfig):
        return name
    return config_for(name, preset, **config)


def _compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The tensor dtype of a benchmark setting; ``amp`` is the dtype autocast computes in."""
    if dtype == "amp":
        return autocast_dtype(device, True)
    return {"float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[dtype]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """This thread uses ``n`` intra-op threads inside the block; no other thread changes.

    ``torch.set_num_threads`` sets the calling thread's count and also the default that
    threads started later take (a training job started meanwhile would keep ``n`` for its
    whole run); a short-lived helper thread puts that default back at once.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    _restore_default_threads(before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _restore_default_threads(count: int) -> None:
    helper = threading.Thread(target=torch.set_num_threads, args=(count,),
                              name="cnncompare-threads-default")
    helper.start()
    helper.join()


def _check_cancel(cancel: Cancel | None) -> None:
    if cancel_check(cancel)():
        raise BenchmarkCancelled("benchmark cancelled")


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _sub_progress(progress: Progress | None, index: int, total: int) -> Progress | None:
    """Map one job's 0..1 onto its slice of the whole run."""
    if progress is None:
        return None

    def sub(fraction: float, message: str) -> None:
        progress((index + fraction) / total,
                 N_("[{index}/{total}] {message}", index=index + 1, total=total, message=message))

    return sub


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _row_path(cfg: ModelConfig, batch_size: int, settings: BenchSettings,
              device: torch.device) -> Path | None:
    key = {"config": cfg.key(), "batch": batch_size, "settings": settings.cache_fields(),
           "device": device_name(device), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "schema": SCHEMA}
    return _cache_file(f"{cfg.name}-b{batch_size}-{stable_hash(key, 20)}.json")


def _cache_file(name: str) -> Path | None:
    """A file in the bench cache, or None where the folder cannot be made (read-only)."""
    try:
        return paths.cache_dir("bench") / name
    except OSError:
        return None


def _read_row(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    row = read_json(path)
    if not isinstance(row, dict):
        return None
    if "model" in row:
        row["cached"] = True
        row["status"] = "measured"
    return row


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()
             if k != "cached"}
    with contextlib.suppress(OSError):  # a read-only home: measured again next time
        write_json(path, clean)
