"""`python -m cnncompare profile|bench`: parseable output, raw numbers, clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from cnncompare import profiling
from cnncompare.cli import main
from cnncompare.registry import config_for
from tests.conftest import REPO
from tests.cost_helpers import canonical_home

GOLDEN = REPO / "tests" / "golden"
PROFILE_COLUMNS = {"model", "params", "macs", "flops", "param_mb", "activation_mb"}
BENCH_COLUMNS = {"model", "device", "batch_size", "median_ms", "p90_ms", "throughput",
                 "peak_mem_mb"}


def _csv(capsys) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_profile_canonical_csv(capsys, monkeypatch):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(canonical_home()))
    assert main(["profile", "--models", "resnet18,alexnet", "--format", "csv"]) == 0
    frame = _csv(capsys).set_index("model")
    assert PROFILE_COLUMNS - {"model"} <= set(frame.columns)
    assert frame.loc["resnet18", "params"] == 11_689_512
    assert frame.loc["alexnet", "params"] == 61_100_840
    assert frame.loc["resnet18", "macs"] == pytest.approx(1.82e9, rel=0.01)
    assert frame.loc["resnet18", "flops"] == pytest.approx(3.63e9, rel=0.01)
    assert frame.loc["alexnet", "macs"] == pytest.approx(0.714e9, rel=0.01)
    for col in ("params", "macs", "flops"):
        assert pd.api.types.is_integer_dtype(frame[col])
    assert pd.api.types.is_float_dtype(frame["param_mb"])


def test_profile_json_with_config(capsys):
    args = ["profile", "--models", "lenet,alexnet", "--input-size", "32", "--in-channels", "1",
            "--num-classes", "10", "--width", "0.25", "--format", "json"]
    assert main(args) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in records] == ["lenet", "alexnet"]
    for r in records:
        assert PROFILE_COLUMNS <= set(r)
        assert r["input"] == "1x32x32" and r["width"] == 0.25
        assert isinstance(r["macs"], int) and isinstance(r["activation_mb"], float)
    expected = profiling.cost_summary(config_for(
        "alexnet", input_size=32, in_channels=1, num_classes=10, width=0.25))
    assert records[1]["macs"] == expected["macs"]


def test_profile_layers(capsys):
    assert main(["profile", "--model", "lenet", "--layers", "--format", "csv"]) == 0
    layers = _csv(capsys)
    assert {"model", "layer", "type", "kernel", "stride", "padding", "input_shape",
            "output_shape", "shape_arithmetic", "params", "macs"} <= set(layers.columns)
    assert layers["params"].sum() == 61_706
    conv1 = layers.set_index("layer").loc["conv1"]
    assert conv1["shape_arithmetic"] == "floor((28 + 2*2 - 5) / 1) + 1 = 28"


def test_profile_by_module_and_operator(capsys):
    assert main(["profile", "--models", "lenet", "--by-module", "--format", "csv"]) == 0
    modules = _csv(capsys)
    total = profiling.cost_summary(config_for("lenet"))["macs"]
    assert modules["macs"].sum() == total
    assert main(["profile", "--models", "lenet", "--by-operator", "--format", "csv"]) == 0
    ops = _csv(capsys)
    assert set(ops["counter"]) == {"fvcore MACs", "torch FLOPs"}


def test_printed_layer_table_matches_the_golden_file(capsys):
    """The exact text of ``profile --model lenet --layers`` (as torchinfo's tests do)."""
    assert main(["profile", "--model", "lenet", "--layers"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "lenet_layers.txt").read_text()


def test_bench_csv(capsys):
    args = ["bench", "--models", "lenet,alexnet", "--preset", "small", "--batch-sizes", "1,2",
            "--device", "cpu", "--iters", "3", "--warmup", "1", "--format", "csv"]
    assert main(args) == 0
    captured = capsys.readouterr()
    frame = pd.read_csv(io.StringIO(captured.out))
    assert BENCH_COLUMNS <= set(frame.columns)
    assert list(zip(frame["model"], frame["batch_size"], strict=True)) == [
        ("lenet", 1), ("lenet", 2), ("alexnet", 1), ("alexnet", 2)]
    assert (frame["median_ms"] > 0).all() and (frame["throughput"] > 0).all()
    assert (frame["peak_mem_mb"] > 0).all()
    assert (frame["device"] == "cpu").all()
    assert "[100%] done" in captured.err  # progress goes to stderr


def test_bench_train_mode(capsys):
    args = ["bench", "--models", "lenet", "--batch-sizes", "2", "--device", "cpu",
            "--mode", "train", "--iters", "3", "--warmup", "0", "--no-memory", "--format",
            "json"]
    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["mode"] == "train" and row["median_ms"] > 0 and row["peak_mem_mb"] is None


@pytest.mark.parametrize("args,message", [
    (["profile", "--models", "resnet19"], "Unknown model 'resnet19'"),
    (["profile", "--models", "lenet", "--input-size", "4"], "at least 12x12"),
    (["profile", "--models", "lenet", "--width", "0"], "width must be"),
    (["profile", "--models", ","], "comma-separated list"),
    (["bench", "--models", "lenet", "--batch-sizes", "0"], "batch size must be a positive"),
    (["bench", "--models", "lenet", "--batch-sizes", "1,x"], "bad batch size"),
    (["bench", "--models", "nosuch", "--batch-sizes", "1"], "Unknown model"),
    (["bench", "--models", "lenet", "--device", "tpu"], "Unknown device"),
    (["bench", "--models", "lenet", "--iters", "0"], "iters must be"),
])
def test_bad_arguments_give_one_error_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_module_entry_point_is_quiet():
    run = [sys.executable, "-m", "cnncompare", "profile", "--models", "lenet5", "--format",
           "csv"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("model,input,width,num_classes,params")
    assert proc.stderr == ""  # fvcore/TorchScript warnings stay silent


# --- Issue 12: every bad argument ends in one error line, exit status 2, before any work ---

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    assert not any("Traceback" in line for line in err)
    return errors[0]


@pytest.mark.parametrize("args,message", [
    (["bench", "--models", "lenet", "--threads", "1000000"], "threads must be an integer from 1"),
    (["bench", "--models", "lenet", "--threads", "-3"], "threads must be an integer from 1"),
    (["bench", "--models", "lenet", "--input-size", "100000"],
     "--input-size must be at most 4,096, got 100,000."),
    (["profile", "--models", "lenet", "--num-classes", "1000000000"],
     "--num-classes must be at most 1,000,000"),
    (["profile", "--models", "lenet", "--in-channels", "100000"],
     "--in-channels must be at most 1,024"),
    (["profile", "--models", "lenet", "--width", "nan"], "width must be a number"),
    (["profile", "--models", "lenet", "--depth", "0", "--by-module"], "--depth must be at least 1"),
    (["bench", "--models", "lenet", "--batch-sizes", "10000000"],
     "batch sizes must be at most 65,536"),
    (["bench", "--models", "vgg16", "--batch-sizes", "60000"],
     "at batch 60000 needs about"),
    (["bench", "--models", "lenet", "--device", "cpu:abc"], "Unknown device 'cpu:abc'"),
    (["bench", "--models", "lenet", "--max-seconds", "0"], "max_seconds must be more than 0"),
    (["bench", "--models", "lenet", "--max-seconds", "nan"], "max_seconds must be more than 0"),
    (["bench", "--models", "lenet", "--max-seconds", "1e9"], "at most 3600"),
    (["bench", "--models", "lenet", "--iters", "1000000000"], "iters at most 100000"),
    (["bench", "--models", "lenet", "--warmup", "-1"], "warmup must be an integer"),
    (["bench", "--models", "lenet", "--target-spread", "0"], "target_spread must be"),
    (["bench", "--models", "vgg16", "--batch-sizes", "64", "--device", "cpu",
      "--max-seconds", "0.01"], "more than the time budget of 0.01 s"),
])
def test_out_of_range_arguments_are_refused_before_work(capsys, args, message):
    assert main(args) == 2
    assert message in _one_error_line(capsys)


def test_huge_thread_count_is_refused_in_a_real_process():
    run = [sys.executable, "-m", "cnncompare", "bench", "--models", "lenet", "--threads",
           "1000000", "--device", "cpu"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2  # not -11 (SIGSEGV)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: threads must be")


def test_float16_on_the_cpu_is_bounded_by_the_time_budget(capsys):
    import time

    start = time.perf_counter()
    code = main(["bench", "--models", "lenet", "--preset", "small", "--dtype", "float16",
                 "--device", "cpu", "--max-seconds", "2", "--no-memory", "--format", "csv"])
    assert time.perf_counter() - start < 60
    captured = capsys.readouterr()
    if code == 0:
        assert pd.read_csv(io.StringIO(captured.out))["median_ms"].iloc[0] > 0
    else:
        assert code == 2 and "time budget" in captured.err.splitlines()[-1]


def test_noisy_rows_are_flagged_on_stderr_and_in_the_csv(capsys, monkeypatch):
    from cnncompare import benchmark

    def noisy(timing, settings):
        timing = benchmark.Timing(times=[1.0, 3.0, 1.0, 3.0, 1.0], stopped="max steps")
        return real(timing, settings)

    real = benchmark.summarize_times
    monkeypatch.setattr(benchmark, "summarize_times", noisy)
    assert main(["bench", "--models", "lenet", "--device", "cpu", "--iters", "5",
                 "--no-memory", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    row = pd.read_csv(io.StringIO(captured.out)).iloc[0]
    assert bool(row["noisy"]) and row["spread"] == pytest.approx(2.0)
    assert row["note"].startswith("Too noisy to mean much")
    assert "warning: lenet at batch 1: Too noisy to mean much" in captured.err


@pytest.mark.parametrize("exc,message", [
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB\n"
                  "more detail"), "error: out of memory (DefaultCPUAllocator: can't allocate "
                                  "memory: you tried to allocate 1 GB)"),
    (MemoryError(), "error: out of memory: choose a smaller model, input or batch size."),
    (TypeError("bad thing\nsecond line"), "error: TypeError: bad thing (set CNNCOMPARE_DEBUG=1"),
])
def test_an_unexpected_failure_is_one_error_line(capsys, monkeypatch, exc, message):
    from cnncompare import cli_cost

    def boom(args):
        raise exc

    monkeypatch.setattr(cli_cost, "cmd_profile", boom)
    assert main(["profile", "--models", "lenet"]) == 2
    assert _one_error_line(capsys).startswith(message)
    monkeypatch.setenv("CNNCOMPARE_DEBUG", "1")
    with pytest.raises(type(exc)):
        main(["profile", "--models", "lenet"])
