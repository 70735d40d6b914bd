"""cnncompare.benchmark: timing rows, measured memory, progress, cancel, the cache."""

from __future__ import annotations

import itertools
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
    assert 1 <= frame["iters"].iloc[0] < 1000
    assert frame["stopped"].iloc[0] in ("time budget", "steady")
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


# --- Timings people can trust -------------------------------------------------------------

def _timing(times, stopped="max steps"):
    return B.Timing(times=list(times), stopped=stopped)


def test_steady_steps_stop_at_min_iters(monkeypatch):
    class Clock:  # every step takes exactly 2 ms, whatever else the machine is doing
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(B, "time", clock)
    settings = B.BenchSettings(device="cpu", warmup=2, iters=50, min_iters=5,
                               max_seconds=30.0, target_spread=0.5)
    timing = B.time_steps(lambda: setattr(clock, "now", clock.now + 0.002),
                          torch.device("cpu"), settings)
    assert timing.stopped == "steady" and len(timing.times) == 5
    assert timing.times == pytest.approx([2.0] * 5)
    assert B.relative_spread(timing.times) == 0


def test_unsteady_steps_go_on_until_the_step_limit():
    import itertools
    import time

    pauses = itertools.cycle([0.0, 0.004])  # every other step 4 ms longer
    settings = B.BenchSettings(device="cpu", warmup=0, iters=12, min_iters=5,
                               max_seconds=30.0)
    timing = B.time_steps(lambda: time.sleep(next(pauses)), torch.device("cpu"), settings)
    assert timing.stopped == "max steps" and len(timing.times) == 12
    stats = B.summarize_times(timing, settings)
    assert stats["noisy"] and stats["spread"] > B.NOISY_SPREAD
    assert stats["note"].startswith("Too noisy to mean much")
    assert "12 steps, the most asked for" in stats["note"]


def test_the_time_budget_bounds_warm_up_and_timing(monkeypatch):
    class Clock:  # steps of 10 and 40 ms in turn (never steady), on a clock of our own
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock, pauses = Clock(), itertools.cycle([0.01, 0.04])
    monkeypatch.setattr(B, "time", clock)
    settings = B.BenchSettings(device="cpu", warmup=100, iters=1000, min_iters=5,
                               max_seconds=0.2)
    timing = B.time_steps(lambda: setattr(clock, "now", clock.now + next(pauses)),
                          torch.device("cpu"), settings)
    assert clock.now <= 0.2 + 0.04  # the budget, and at most one step past it
    assert timing.stopped == "time budget" and 1 <= len(timing.times) < 10


def test_summary_of_known_times():
    settings = B.BenchSettings()
    stats = B.summarize_times(_timing([10.0] * 9 + [11.0], "steady"), settings)
    assert stats["median_ms"] == 10.0 and stats["p10_ms"] == 10.0
    assert stats["p90_ms"] == pytest.approx(10.1)
    assert stats["spread"] == pytest.approx(0.01) and not stats["noisy"]
    assert stats["note"] == ""
    few = B.summarize_times(_timing([5.0, 6.0], "time budget"), settings)
    assert few["noisy"] and few["note"].startswith("Only 2 step(s) fit in the 10 s budget")


def _row(batch, median, **extra):
    row = dict.fromkeys(B.RESULT_COLUMNS)
    row.update(model="lenet", config_key="k", mode="infer", device="cpu", dtype="float32",
               threads=2, batch_size=batch, median_ms=median, note="", noisy=False)
    row.update(extra)
    return row


def test_a_larger_batch_faster_than_a_smaller_one_is_flagged():
    import pandas as pd

    frame = pd.DataFrame([_row(1, 2.0), _row(8, 1.5), _row(16, 3.0), _row(32, 2.5),
                          _row(1, 9.0, config_key="other")], columns=B.RESULT_COLUMNS)
    flagged = B.flag_batch_anomalies(frame)
    assert list(flagged["batch_anomaly"]) == [False, True, False, True, False]
    assert flagged.loc[1, "note"].startswith("Batch 8 took 1.5 ms a step, less than batch 1")
    assert "less than batch 16 (3 ms)" in flagged.loc[3, "note"]
    assert flagged.loc[0, "note"] == ""


def test_rows_carry_the_spread_and_why_timing_stopped():
    frame = B.benchmark_models(["lenet"], [1, 2], FAST, preset="small")
    assert (frame["p10_ms"] <= frame["median_ms"]).all()
    assert (frame["median_ms"] <= frame["p90_ms"]).all()
    spread = (frame["p90_ms"] - frame["p10_ms"]) / frame["median_ms"]
    assert np.allclose(frame["spread"], spread)
    assert set(frame["stopped"]) <= {"steady", "max steps", "time budget"}
    assert (frame["status"] == "measured").all()
    assert frame["noisy"].dtype == bool and frame["batch_anomaly"].dtype == bool
    assert (frame["load_per_core"] >= 0).all()


def test_memory_beyond_the_free_memory_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(B, "free_memory_mb", lambda device: 1.0)
    monkeypatch.setattr(B, "benchmark_one", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setattr(B, "machine_peak", lambda *a, **k: pytest.fail("timed the peak"))
    with pytest.raises(ValueError, match=r"vgg11 3x32x32 w0\.125 at batch 64 needs about "
                                         r"\d+ MB .* more than the 1 MB free"):
        B.benchmark_models(["vgg11"], [64], FAST, preset="small")


def test_a_step_longer_than_the_budget_is_refused(monkeypatch):
    slow = {"gflops": 0.001, "n": 256}
    monkeypatch.setattr(B, "machine_peak", lambda *a, **k: slow)
    monkeypatch.setattr(B, "benchmark_one", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ValueError, match=r"would take about [\d,]+ s per inference step in "
                                         r"float32 .* more than the time budget of 5 s"):
        B.benchmark_models(["resnet18"], [1], FAST, preset="small")


def test_machine_peak_stays_within_its_budget():
    import time

    start = time.perf_counter()
    peak = B.machine_peak("cpu", "float32", cache=False, max_seconds=0.3, iters=3)
    assert time.perf_counter() - start < 0.3 + 5.0  # a few sizes' runs past the budget at most
    assert peak["n"] in (256, 512, 1024, 2048) and peak["gflops"] > 0


def test_threads_change_this_thread_only():
    default = torch.get_num_threads()
    seen = {}

    def new_thread_count():
        result = []
        worker = threading.Thread(target=lambda: result.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        return result[0]

    with B._threads(1):
        seen["inside"] = torch.get_num_threads()
        seen["new thread"] = new_thread_count()  # e.g. a training job started meanwhile
    assert seen == {"inside": 1, "new thread": default}
    assert torch.get_num_threads() == default and new_thread_count() == default


def test_missing_rows_say_not_measured_yet():
    frame = B.benchmark_models(["lenet", "alexnet"], [1], FAST, preset="small",
                               only_cached=True, missing="row")
    assert list(frame["status"]) == [B.NOT_MEASURED] * 2
    assert frame["median_ms"].isna().all()
    assert B.latency_text(frame.iloc[0].to_dict()) == "not measured yet"
    measured = B.benchmark_models(["lenet"], [1], FAST, preset="small").iloc[0].to_dict()
    text = B.latency_text(measured)
    assert text.startswith(f"{measured['median_ms']:.3g} ms (p10–p90 ")


def test_a_home_that_cannot_be_written_still_benchmarks(cnncompare_home):
    cnncompare_home.mkdir(parents=True, exist_ok=True)
    (cnncompare_home / "cache").write_text("a file where the cache folder would go")
    frame = B.benchmark_models(["lenet"], [1], FAST, preset="small")
    assert frame["median_ms"].iloc[0] > 0 and not frame["cached"].iloc[0]
