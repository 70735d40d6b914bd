"""Latency, throughput and memory of a network on this machine, and the machine's peak.

The loop follows timm's benchmark script: build the model once, run a few warm-up steps,
then time single steps, each ended by a device synchronisation, until ``iters`` steps or
``max_seconds`` have passed (never fewer than ``min_iters``). A step is

* ``infer``: one forward pass under ``torch.inference_mode()``;
* ``train``: forward, cross-entropy loss, backward and one SGD (momentum 0.9) update.

Each result row gives the median and 90th-percentile step time in ms, throughput in
images/s (batch size / median), and beside them the device, its name, thread count,
dtype, batch size and torch version.

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

:func:`machine_peak` times a large square matmul on the same device and dtype (the
fastest of several runs); every row's ``achieved_gflops`` (torch FLOPs per image x
images/s) is set against it (``peak_share``).

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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnncompare import paths, profiling
from cnncompare.cache import read_json, stable_hash, write_json
from cnncompare.checks import positive_int
from cnncompare.devices import device_name, resolve_device, synchronize
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
SCHEMA = 3

Progress = Callable[[float, str], None]
"""``progress(fraction_done, message)``; the fraction runs from 0 to 1 over a whole job."""

RESULT_COLUMNS = [
    "model", "config", "config_key", "mode", "device", "device_name", "dtype", "batch_size",
    "threads", "torch", "iters", "median_ms", "p90_ms", "mean_ms", "min_ms", "throughput",
    "peak_mem_mb", "mem_method", "est_mem_mb", "flops_per_image", "achieved_gflops",
    "peak_gflops", "peak_share", "cached",
]
"""The columns of :func:`benchmark_models`."""


_PEAKS: dict[str, dict[str, Any]] = {}
"""Machine peaks measured by this process (a machine's peak does not change while it runs)."""


class BenchmarkCancelled(Cancelled, RuntimeError):
    """Raised inside a benchmark when its ``cancel`` says stop."""


@dataclass(frozen=True)
class BenchSettings:
    """How to benchmark: the mode, the device and dtype, and how long to time."""

    mode: str = "infer"
    device: str = "auto"
    dtype: str = "float32"
    warmup: int = 3
    iters: int = 20
    min_iters: int = 3
    max_seconds: float = 10.0
    measure_memory: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for what, least in (("warmup", 0), ("iters", 1), ("min_iters", 1)):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{what} must be an integer of at least {least}, got {value!r}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")

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
    **config: Any,
) -> pd.DataFrame:
    """One row per model and batch size (columns: :data:`RESULT_COLUMNS`).

    ``names`` are model names (configured by ``preset`` and ``config`` as in
    :func:`cnncompare.profiling.profile_models`) or :class:`ModelConfig` objects.
    With ``cache`` a row measured before with the same key is reused (``cached`` is True);
    without it every row is measured again. Either way a fresh row replaces the cached one.
    With ``only_cached`` nothing is measured and the rows not in the cache are left out.
    Raises :class:`BenchmarkCancelled` when ``cancel`` says stop.
    """
    settings = settings or BenchSettings()
    sizes = check_batch_sizes(batch_sizes)
    cfgs = [_config(n, preset, config) for n in names]
    device = resolve_device(settings.device)
    jobs = [(cfg, b) for cfg in cfgs for b in sizes]
    rows = []
    with _threads(settings.threads):
        peak = None
        for i, (cfg, b) in enumerate(jobs):
            key_path = _row_path(cfg, b, settings, device)
            row = _read_row(key_path) if (cache or only_cached) else None
            if row is None and not only_cached:
                _check_cancel(cancel)
                if peak is None:
                    _report(progress, i / len(jobs), "timing the machine's peak (matmul)")
                    peak = machine_peak(settings.device, settings.dtype, cache=cache)
                sub = _sub_progress(progress, i, len(jobs))
                row = benchmark_one(cfg, b, settings, progress=sub, cancel=cancel,
                                    peak_gflops=peak["gflops"])
                _write_json(key_path, row)  # the latest measurement, for the next reader
                row = dict(row, cached=False)
            if row is not None:
                rows.append(row)
    _report(progress, 1.0, "done")
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


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
    label = f"{cfg.name} · batch {batch_size}"
    _report(progress, 0.0, f"{label}: building")
    torch.manual_seed(0)
    model = cfg.build().to(device)
    runner = _StepRunner(model, cfg, batch_size, settings, device)
    try:
        times = time_steps(runner.step, device, settings, progress=progress, cancel=cancel,
                           label=label)
        if settings.measure_memory:
            _report(progress, 0.97, f"{label}: measuring peak memory")
            peak_mb, method = runner.measure_peak_memory()
        else:
            peak_mb, method = math.nan, "not measured"
    except (RuntimeError, ValueError) as exc:
        if "Expected more than 1 value per channel" in str(exc):
            raise ValueError(
                f"{cfg.name} cannot train with batch size {batch_size}: batch normalisation "
                "needs more than one value per channel; use a batch size of 2 or more."
            ) from None
        raise
    finally:
        del runner, model
        _free(device)
    summary = profiling.cost_summary(cfg)
    flops = summary["train_flops"] if settings.mode == "train" else summary["flops"]
    median = float(np.median(times))
    throughput = batch_size / (median / 1e3)
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
        "iters": len(times),
        "median_ms": median,
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(np.mean(times)),
        "min_ms": float(np.min(times)),
        "throughput": throughput,
        "peak_mem_mb": peak_mb,
        "mem_method": method,
        "est_mem_mb": estimate_memory_mb(summary, batch_size, settings.mode),
        "flops_per_image": flops,
        "achieved_gflops": achieved,
        "peak_gflops": peak_gflops if peak_gflops is not None else math.nan,
        "peak_share": achieved / peak_gflops if peak_gflops else math.nan,
    }


def time_steps(
    step: Callable[[], Any],
    device: torch.device,
    settings: BenchSettings,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    label: str = "",
) -> list[float]:
    """Warm up, then time ``step`` (ms each, synchronised) as :class:`BenchSettings` says."""
    for i in range(settings.warmup):
        _check_cancel(cancel)
        _report(progress, 0.05 + 0.15 * i / max(settings.warmup, 1),
                f"{label}: warm-up {i + 1}/{settings.warmup}")
        step()
    synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < settings.iters:
        _check_cancel(cancel)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
        _report(progress, 0.2 + 0.75 * len(times) / settings.iters,
                f"{label}: timed step {len(times)}/{settings.iters}")
        out_of_time = time.perf_counter() - started > settings.max_seconds
        if len(times) >= settings.min_iters and out_of_time:
            break
    return times


def estimate_memory_mb(summary: dict[str, Any], batch_size: int, mode: str) -> float:
    """Parameters (x3 when training: weights, gradients, momentum) + batch x activations."""
    copies = 3 if mode == "train" else 1
    return copies * summary["param_mb"] + batch_size * summary["activation_mb"]


def machine_peak(device: str | torch.device = "auto", dtype: str = "float32",
                 n: int | None = None, *, iters: int = 10, cache: bool = True) -> dict[str, Any]:
    """GFLOP/s of an ``n`` x ``n`` matmul (2 n^3 FLOPs) on ``device``: the best of ``iters``.

    A peak is what the machine can do, so the fastest run counts (``gflops``); the median
    run is reported too (``gflops_median``).

    ``n`` defaults to 2048 on the CPU and 4096 on a GPU. ``dtype="amp"`` times the dtype
    mixed-precision training uses on the device (bf16, or fp16 on a CUDA GPU without bf16).
    With ``cache`` a result is reused from this process's memory or the disk; without it
    the matmul is timed again.
    """
    dev = resolve_device(device)
    n = n or (2048 if dev.type == "cpu" else 4096)
    tdtype = _compute_dtype(dtype, dev)
    key = {"kind": "peak", "device": device_name(dev), "threads": torch.get_num_threads(),
           "dtype": str(tdtype), "n": n, "iters": iters, "torch": torch.__version__,
           "schema": SCHEMA}
    digest = stable_hash(key, 20)
    path = paths.cache_dir("bench") / f"peak-{digest}.json"
    if cache:
        hit = _PEAKS.get(digest) or _read_row(path)
        if hit is not None:
            if not path.exists():
                _write_json(path, hit)
            _PEAKS[digest] = hit
            return dict(hit)
    a = torch.randn(n, n, device=dev).to(tdtype)
    b = torch.randn(n, n, device=dev).to(tdtype)
    for _ in range(2):
        a @ b
    synchronize(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        a @ b
        synchronize(dev)
        times.append(time.perf_counter() - t0)
    best, median = min(times), float(np.median(times))
    result = {"device": dev.type, "device_name": device_name(dev), "dtype": str(tdtype),
              "n": n, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "best_ms": best * 1e3, "median_ms": median * 1e3,
              "gflops": 2 * n**3 / best / 1e9, "gflops_median": 2 * n**3 / median / 1e9}
    del a, b
    _PEAKS[digest] = result
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
            return (live + extra) / MB, "cuda allocator peak (max_memory_allocated)"
        if self.device.type == "cpu":
            extra = _cpu_step_peak(self.step)
            if extra is None:
                return math.nan, "not measured (profiler memory events unavailable)"
            return (live + extra) / MB, "torch.profiler CPU allocator events"
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
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        progress((index + fraction) / total, f"[{index + 1}/{total}] {message}")

    return sub


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _row_path(cfg: ModelConfig, batch_size: int, settings: BenchSettings, device: torch.device):
    key = {"config": cfg.key(), "batch": batch_size, "settings": settings.cache_fields(),
           "device": device_name(device), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "schema": SCHEMA}
    return paths.cache_dir("bench") / f"{cfg.name}-b{batch_size}-{stable_hash(key, 20)}.json"


def _read_row(path) -> dict[str, Any] | None:
    row = read_json(path)
    if not isinstance(row, dict):
        return None
    if "model" in row:
        row["cached"] = True
    return row


def _write_json(path, data: dict[str, Any]) -> None:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()
             if k != "cached"}
    write_json(path, clean)
