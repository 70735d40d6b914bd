"""``python -m cnncompare train|runs|export``: JSON summary, cache, listings, clear errors."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from cnncompare.cli import CliError, main
from cnncompare.cli_train import parse_model_args

TRAIN = ["train", "--model", "lenet", "--epochs", "2", "--train-size", "200", "--test-size",
         "100", "--device", "cpu"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_json_and_a_second_call_is_cached(capsys):
    code, out, err = _run(capsys, [*TRAIN, "--format", "json"])
    assert code == 0
    first = json.loads(out)
    assert {"run_id", "test_acc", "seconds", "cached"} <= set(first)
    assert first["cached"] is False and first["status"] == "finished"
    assert 0.3 < first["test_acc"] <= 1.0 and first["epochs_done"] == 2
    assert [ln.split()[1] for ln in err.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]

    code, out, err = _run(capsys, [*TRAIN, "--format", "json"])
    again = json.loads(out)
    assert code == 0 and again["cached"] is True and "epoch 1/2" not in err
    assert (again["run_id"], again["test_acc"]) == (first["run_id"], first["test_acc"])
    assert again["seconds"] < first["seconds"]

    code, out, _ = _run(capsys, ["runs", "--format", "csv"])
    runs = pd.read_csv(io.StringIO(out))
    assert code == 0 and runs["run_id"].tolist() == [first["run_id"]]
    assert runs["test_acc"].iloc[0] == pytest.approx(first["test_acc"])
    assert {"val_acc", "selected_epoch", "final_test_acc", "precision"} <= set(runs.columns)
    row = runs.iloc[0]
    assert row["selected_epoch"] == first["selected_epoch"] in (1, 2)
    assert row["final_test_acc"] == pytest.approx(first["final_test_acc"])
    assert row["precision"] == first["precision"] and "best_test_acc" not in runs.columns
    code, out, _ = _run(capsys, ["runs", "--format", "table"])
    assert code == 0 and first["run_id"] in out and "finished" in out


def test_export_joins_runs_and_model_cost(capsys, tmp_path):
    pytest.importorskip("cnncompare.profiling")
    from cnncompare.profiling import cost_summary  # noqa: F401 - the function export calls

    _run(capsys, [*TRAIN, "--format", "json"])
    target = tmp_path / "results.csv"
    code, _, err = _run(capsys, ["export", "--out", str(target)])
    assert code == 0 and "wrote 1 run" in err
    frame = pd.read_csv(target)
    assert {"run_id", "model", "test_acc", "params", "macs", "flops"} <= set(frame.columns)
    row = frame.iloc[0]
    assert row.params == 61706 and row.macs > 100_000 and row.flops == 2 * row.macs


@pytest.mark.parametrize("args,fragment", [
    (["--model", "lenett"], "Unknown model 'lenett'"),
    (["--model", "lenet", "--batch-size", "0"], "batch_size must be a positive integer"),
    (["--model", "lenet", "--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["--model", "lenet", "--dataset", "mnist", "--data-root", "{tmp}"], "MNIST not found"),
    (["--model", "vgg11", "--input-size", "8"], "needs an input of at least"),
    (["--model", "lenet", "--model-arg", "oops"], "KEY=VALUE"),
    (["--model", "lenet", "--device", "tpu"], "Unknown device 'tpu'"),
    (["--model", "lenet", "--device", "cpu:abc"], "Unknown device 'cpu:abc'"),
    (["--model", "lenet", "--epochs", "1000000000"], "epochs must be at most 1,000"),
    (["--model", "lenet", "--batch-size", "10000000"], "batch_size must be at most 8,192"),
    (["--model", "lenet", "--seed", "99999999999"], "seed must be an integer from 0"),
    (["--model", "lenet", "--input-size", "100000"], "GiB in memory"),
    (["--model", "lenet", "--width", "1e9"], "width must be a number in (0, 4]"),
    (["--model", "lenet", "--train-size", "100", "--val-size", "100"],
     "val_size (100) must be smaller"),
    (["--model", "googlenet", "--model-arg", "num_classes=3"], "'num_classes' is set by"),
    (["--model", "googlenet", "--model-arg", "input_size=3"], "'input_size' is set by"),
    (["--model", "googlenet", "--model-arg", "colour=1"], "does not accept the model arg"),
    (["--model", "googlenet", "--model-arg", "aux_logits=[1"], "not a literal value"),
    (["--model", "googlenet", "--model-arg", "aux_logits={}"], "must be true, false, a num"),
    (["--model", "lenet", "--lr", "nan"], "lr must be a number"),
])
def test_bad_arguments_give_one_error_line_and_status_2(capsys, tmp_path, args, fragment):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = _run(capsys, ["train", *args, "--format", "json"])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


def test_model_args_are_parsed_as_plain_values():
    assert parse_model_args(["aux_logits=true", "dropout=0.5", 'name="x"']) == {
        "aux_logits": True, "dropout": 0.5, "name": "x"}
    for bad in (["name=x"], ["a=1", "a=2"], ["=1"]):
        with pytest.raises(CliError):
            parse_model_args(bad)


def test_train_defaults_are_the_train_pages():
    """A run started from the README with no options is the one the Train page plans."""
    from cnncompare.cli import build_parser
    from cnncompare.train_config import TrainConfig

    args = build_parser("train").parse_args(["train", "--model", "lenet"])
    page = TrainConfig("lenet")  # the page builds its configs from these defaults too
    assert (args.epochs, args.batch_size, args.lr, args.optimizer, args.scheduler,
            args.amp, args.augment) == (page.epochs, page.batch_size, page.lr,
                                        page.optimizer, page.scheduler, page.amp,
                                        page.augment)
    assert (args.epochs, args.batch_size) == (10, 32)
