"""cnncompare.benchmark: timing rows, measured memory, progress, cancel, the cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cnncompare import benchmark as B
from cnncompare import paths, profiling
from cnncompare.registry import config_for, preset_config

FAST = B.BenchSettings(device="cpu", warmup=1, iters=3, min_iters=3, max_seconds=5.0)


def test_rows_have_positive_timings_and_context():
    frame = B.benchmark_models(["lenet"], [1, 4], FAST, preset="small")
    assert list(frame.columns) == B.RESULT_COLUMNS
    assert list(frame["batch_size"]) == [1, 4]
    assert (frame["median_ms"] > 0).all()
    assert (frame["p90_ms"] >= frame["median_ms"]).all()
    assert (frame["min_ms"] <= frame["median_ms"]).all()
    assert (frame["iters"] == 3).all()
    assert np.allclose(frame["throughput"], frame["batch_size"] / (frame["median_ms"] / 1e3))
    row = frame.iloc[0]
    assert (row["device"], row["dtype"], row["mode"]) == ("cpu", "float32", "infer")
    assert row["threads"] == torch.get_num_threads()
    assert row["torch"] == torch.__version__
    assert "CPU" in row["device_name"]
    assert row["config_key"] == preset_config("lenet", "small").key()
    # Achieved GFLOP/s is the counted FLOPs at the measured rate, set against the peak.
    flops = profiling.cost_summary(preset_config("lenet", "small"))["flops"]
    assert row["flops_per_image"] == flops
    assert row["achieved_gflops"] == pytest.approx(flops * row["throughput"] / 1e9)
    assert row["peak_share"] == pytest.approx(row["achieved_gflops"] / row["peak_gflops"])
    assert not frame["cached"].any()


def test_cpu_peak_memory_is_measured():
    frame = B.benchmark_models(["lenet"], [8], FAST, preset="small")
    train = B.benchmark_models(["lenet"], [8], B.BenchSettings(**{**FAST.__dict__,
                                                                   "mode": "train"}),
                               preset="small")
    param_mb = profiling.cost_summary(preset_config("lenet", "small"))["param_mb"]
    infer_mb, train_mb = frame["peak_mem_mb"].iloc[0], train["peak_mem_mb"].iloc[0]
    assert frame["mem_method"].iloc[0] == "torch.profiler CPU allocator events"
    assert infer_mb > param_mb
    # Training holds weights, gradients and momentum at least.
    assert train_mb > 3 * param_mb
    assert train_mb > infer_mb


def test_cpu_step_peak_sees_a_known_allocation():
    def step():
        a = torch.ones(1_000_000)  # 4,000,000 bytes
        b = a * 2  # another 4,000,000 while a is alive
        del a, b

    peak = B._cpu_step_peak(step)
    assert 8_000_000 <= peak < 8_100_000


def test_progress_runs_from_zero_to_one():
    seen = []
    B.benchmark_models(["lenet"], [1, 2], FAST, preset="small",
                       progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert any("[2/2]" in m for _, m in seen)
    assert any("timed step 3/3" in m for _, m in seen)


def test_cancel_stops_the_run_and_caches_nothing():
    stop = threading.Event()

    def progress(fraction, message):
        if "timed step 1/" in message:
            stop.set()

    with pytest.raises(B.BenchmarkCancelled):
        B.benchmark_models(["lenet"], [1], FAST, preset="small", progress=progress, cancel=stop)
    assert B.benchmark_models(["lenet"], [1], FAST, preset="small", only_cached=True).empty
    with pytest.raises(B.BenchmarkCancelled):
        B.benchmark_models(["lenet"], [1], FAST, preset="small", cancel=lambda: True)


def test_second_run_comes_from_the_cache(monkeypatch):
    first = B.benchmark_models(["lenet"], [1, 2], FAST, preset="small")

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(B, "benchmark_one", no_measuring)
    again = B.benchmark_models(["lenet"], [1, 2], FAST, preset="small")
    assert again["cached"].all()
    assert list(again["median_ms"]) == list(first["median_ms"])
    only = B.benchmark_models(["lenet"], [1, 2, 4], FAST, preset="small", only_cached=True)
    assert list(only["batch_size"]) == [1, 2]
    # Other settings are another key: nothing cached for them.
    other = B.BenchSettings(**{**FAST.__dict__, "iters": 4})
    assert B.benchmark_models(["lenet"], [1], other, preset="small", only_cached=True).empty
    assert len(list(paths.cache_dir("bench").glob("lenet-*.json"))) == 2
    assert B.clear_cache() >= 2


def test_uncached_run_measures_again(monkeypatch):
    B.benchmark_models(["lenet"], [1], FAST, preset="small")
    calls = []
    real = B.benchmark_one
    monkeypatch.setattr(B, "benchmark_one", lambda *a, **k: calls.append(1) or real(*a, **k))
    fresh = B.benchmark_models(["lenet"], [1], FAST, preset="small", cache=False)
    assert calls == [1]
    # The fresh measurement replaced the cached row.
    stored = B.benchmark_models(["lenet"], [1], FAST, preset="small", only_cached=True)
    assert stored["median_ms"].iloc[0] == fresh["median_ms"].iloc[0]


@pytest.mark.parametrize("sizes", [[0], [-1], [1, 0], [], ["8"], [True]])
def test_bad_batch_sizes(sizes):
    with pytest.raises(ValueError, match="batch size"):
        B.benchmark_models(["lenet"], sizes, FAST)


@pytest.mark.parametrize("field,value,match", [
    ("mode", "fly", "mode"), ("dtype", "int8", "dtype"), ("iters", 0, "iters"),
    ("warmup", -1, "warmup"), ("max_seconds", 0, "max_seconds"), ("threads", 0, "threads"),
])
def test_bad_settings(field, value, match):
    with pytest.raises(ValueError, match=match):
        B.BenchSettings(**{field: value})


def test_batch_norm_cannot_train_on_one_value():
    # resnet18 at 8x8: a 1x1 map before its last batch norms.
    cfg = config_for("resnet18", input_size=8, width=0.125)
    with pytest.raises(ValueError, match="batch size of 2 or more"):
        B.benchmark_one(cfg, 1, B.BenchSettings(**{**FAST.__dict__, "mode": "train"}))


def test_max_seconds_caps_the_timing():
    settings = B.BenchSettings(device="cpu", warmup=0, iters=1000, min_iters=3,
                               max_seconds=0.05, measure_memory=False)
    frame = B.benchmark_models(["lenet"], [1], settings, preset="small")
    assert 3 <= frame["iters"].iloc[0] < 1000
    assert frame["mem_method"].iloc[0] == "not measured"


def test_machine_peak_is_positive_and_cached(monkeypatch):
    peak = B.machine_peak("cpu", n=128, iters=3, cache=False)
    assert peak["n"] == 128 and peak["gflops"] >= peak["gflops_median"] > 0
    assert peak["gflops"] == pytest.approx(2 * 128**3 / (peak["best_ms"] / 1e3) / 1e9)
    assert list(paths.cache_dir("bench").glob("peak-*.json"))
    monkeypatch.setattr(B, "_PEAKS", {})  # a new process: the disk still has it
    assert B.machine_peak("cpu", n=128, iters=3) == peak


def test_estimate():
    s = {"param_mb": 10.0, "activation_mb": 2.0}
    assert B.estimate_memory_mb(s, 4, "infer") == 18.0
    assert B.estimate_memory_mb(s, 4, "train") == 38.0


def test_amp_runs_on_cpu():
    settings = B.BenchSettings(**{**FAST.__dict__, "dtype": "amp", "measure_memory": False})
    frame = B.benchmark_models(["lenet"], [2], settings, preset="small")
    assert frame["median_ms"].iloc[0] > 0 and frame["dtype"].iloc[0] == "amp"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rows_use_the_allocator_peak():
    settings = B.BenchSettings(device="cuda", warmup=1, iters=3)
    frame = B.benchmark_models(["resnet18"], [1, 8], settings, preset="small")
    assert (frame["device"] == "cuda").all()
    assert frame["mem_method"].iloc[0].startswith("cuda allocator peak")
    assert (frame["peak_mem_mb"] > 0).all()
    train = B.benchmark_models(["resnet18"], [8], B.BenchSettings(
        device="cuda", warmup=1, iters=3, mode="train", dtype="amp"), preset="small")
    assert train["peak_mem_mb"].iloc[0] > frame["peak_mem_mb"].iloc[1]


@pytest.mark.parametrize("cuda_bf16", [True, False])
def test_amp_benchmark_times_the_precision_training_uses(monkeypatch, cuda_bf16):
    from cnncompare import runtime
    from cnncompare.registry import resolve_config

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    cuda = torch.device("cuda")
    want = torch.bfloat16 if cuda_bf16 else torch.float16
    assert runtime.autocast_dtype(cuda, "auto") == runtime.autocast_dtype(cuda, True) == want
    assert B._compute_dtype("amp", cuda) == want  # the matmul peak and the step's tensors
    cpu = torch.device("cpu")
    trained = runtime.make_runtime(cpu, amp=True).amp_dtype
    cfg = resolve_config("lenet")
    runner = B._StepRunner(cfg.build(), cfg, 2, B.BenchSettings(device="cpu", dtype="amp",
                                                                mode="train"), cpu)
    assert runner.runtime.amp_dtype == trained == torch.bfloat16
    assert not runner.scaler.is_enabled()  # bf16 needs no gradient scaler
    runner.step()
