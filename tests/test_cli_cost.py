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
