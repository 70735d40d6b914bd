"""Studies: seeds parsing, the grid, aggregation over seeds, grouping by any factor, the
Pareto front on means, the words about what can be told apart, and the ``study`` command."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from cnncompare import studies
from cnncompare.cli import main
from cnncompare.studies import (
    STUDY_COLUMNS,
    curve_bands,
    group_runs,
    pareto_on_means,
    parse_seeds,
    parse_values,
    separability,
    study_configs,
    summarize,
    t_interval,
)

# Student's t quantiles t(0.975, df) from the printed tables: df 1 and 2.
T_1, T_2 = 12.7062, 4.3027


def test_t_interval_with_three_two_and_one_seed():
    three = t_interval([0.90, 0.92, 0.94])
    assert (three.n, three.mean, three.std) == (3, pytest.approx(0.92), pytest.approx(0.02))
    half = T_2 * 0.02 / math.sqrt(3)
    assert (three.low, three.high) == (pytest.approx(0.92 - half, abs=1e-4),
                                       pytest.approx(0.92 + half, abs=1e-4))
    two = t_interval([0.90, 0.94])
    std = math.sqrt(2 * 0.02 ** 2)  # sample std of two values 0.04 apart
    assert two.std == pytest.approx(std)
    assert two.high - two.mean == pytest.approx(T_1 * std / math.sqrt(2), abs=1e-4)
    one = t_interval([0.97])
    assert one.n == 1 and one.mean == 0.97
    assert math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.high)  # no interval
    assert t_interval([0.5, None, float("nan")]).n == 1


def test_parse_seeds_and_values():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds(2) == [0, 1]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("7,") == [7]
    for bad in ("0", "-1,2", "1,1", "a", "1,b", str(studies.MAX_SEEDS + 1)):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    assert parse_values("optimizer", "adam, SGD") == ["adam", "sgd"]
    assert parse_values("augment", "on,off") == [True, False]
    assert parse_values("lr", "0.01,1e-3") == [0.01, 0.001]
    with pytest.raises(ValueError, match="bad value 'rmsprop' of optimizer"):
        parse_values("optimizer", "adam,rmsprop")
    with pytest.raises(ValueError, match="factor must be one of"):
        parse_values("dropout", "0.1")


def test_study_configs_are_models_x_values_x_seeds():
    cfgs = study_configs(["lenet", "alexnet"], [0, 1], epochs=2)
    assert [(c.model, c.seed) for c in cfgs] == [("lenet", 0), ("lenet", 1), ("alexnet", 0),
                                                 ("alexnet", 1)]
    assert all(c.epochs == 2 and c.width is None for c in cfgs)
    by_opt = study_configs(["lenet"], [0, 1, 2], factor="optimizer", values=["adam", "sgd"],
                           optimizer="adamw")
    assert [(c.optimizer, c.seed) for c in by_opt] == [
        ("adam", 0), ("adam", 1), ("adam", 2), ("sgd", 0), ("sgd", 1), ("sgd", 2)]
    with pytest.raises(ValueError, match="give the values of learning rate"):
        study_configs(["lenet"], [0], factor="lr")
    with pytest.raises(ValueError, match="at most 1,000 are allowed"):
        study_configs(["lenet"] * 20, list(range(60)))


def _runs(rows) -> pd.DataFrame:
    """A frame like ``ResultsStore.runs()`` from (model, optimizer, seed, test_acc, final)."""
    out = []
    for i, (model, opt, seed, acc, final) in enumerate(rows):
        out.append({"run_id": f"r{i}", "model": model, "dataset": "digits",
                    "status": "finished", "epochs": 10, "batch_size": 32, "lr": 1e-3,
                    "optimizer": opt, "scheduler": "warmup_stable_decay",
                    "weight_decay": 0.0, "label_smoothing": 0.0, "augment": False,
                    "train_size": 1437, "val_size": 144, "test_size": 360, "input_size": 28,
                    "in_channels": 1, "width": 1.0, "model_kwargs": "{}",
                    "precision": "float32", "seed": seed, "test_acc": acc,
                    "final_test_acc": final, "val_acc": acc - 0.01, "selected_epoch": 9,
                    "seconds": 2.0 + seed, "params": 61706})
    return pd.DataFrame(out)


FIXTURE = _runs([
    ("lenet", "adam", 0, 0.90, 0.89), ("lenet", "adam", 1, 0.92, 0.92),
    ("lenet", "adam", 2, 0.94, 0.90),
    ("lenet", "sgd", 0, 0.70, 0.70), ("lenet", "sgd", 1, 0.74, 0.73),
    ("resnet18", "adam", 0, 0.99, 0.99),
])


def test_grouping_by_a_factor_other_than_the_model():
    grouped = group_runs(FIXTURE, factor="optimizer")
    assert grouped.groupby("group")["run_id"].count().to_dict() == {
        "adam · lenet": 3, "sgd · lenet": 2, "adam · resnet18": 1}
    summary = summarize(FIXTURE, factor="optimizer").set_index("group")
    assert list(summarize(FIXTURE, "optimizer").columns[:3]) == ["group", "model", "n_seeds"]
    adam, sgd, res = (summary.loc[g] for g in ("adam · lenet", "sgd · lenet",
                                                "adam · resnet18"))
    assert (adam["n_seeds"], adam["optimizer"]) == (3, "adam")
    assert adam["test_acc_mean"] == pytest.approx(0.92)
    assert adam["test_acc_std"] == pytest.approx(0.02)
    assert adam["final_test_acc_mean"] == pytest.approx(0.9033, abs=1e-4)
    assert adam["largest_gap"] == pytest.approx(0.04)  # seed 2: 0.94 selected, 0.90 final
    assert adam["seeds"] == "0,1,2" and adam["seconds_mean"] == pytest.approx(3.0)
    assert sgd["n_seeds"] == 2 and sgd["test_acc_ci_high"] - sgd["test_acc_mean"] == \
        pytest.approx(T_1 * sgd["test_acc_std"] / math.sqrt(2), abs=1e-4)
    assert res["n_seeds"] == 1 and math.isnan(res["test_acc_ci_low"])
    # by model (the default), the same runs give the same three groups, labelled by model
    by_model = summarize(FIXTURE).set_index("group")
    assert sorted(by_model.index) == ["lenet · adam", "lenet · sgd", "resnet18 · adam"]
    # an unfinished run never enters the statistics
    partial = pd.concat([FIXTURE, _runs([("resnet18", "adam", 1, 0.2, 0.2)]).assign(
        run_id="p", status="unfinished")])
    assert summarize(partial).set_index("group").loc["resnet18 · adam", "n_seeds"] == 1


def test_study_table_has_the_commands_columns():
    table = studies.study_table(summarize(FIXTURE, "optimizer"), "optimizer")
    cols = list(STUDY_COLUMNS)
    cols.insert(1, "optimizer")
    assert list(table.columns) == cols
    assert list(studies.study_table(summarize(FIXTURE)).columns) == STUDY_COLUMNS


def test_pareto_on_means_marks_groups_within_noise_of_the_front():
    summary = pd.DataFrame({
        "group": ["cheap", "mid", "big", "noisy", "single"],
        "n_seeds": [3, 3, 3, 3, 1],
        "macs": [1e6, 2e6, 4e6, 3e6, 5e6],
        "test_acc_mean": [0.90, 0.95, 0.98, 0.93, 0.97],
        "test_acc_ci_low": [0.89, 0.94, 0.97, 0.88, np.nan],
        "test_acc_ci_high": [0.91, 0.96, 0.99, 0.955, np.nan],
    })
    out = pareto_on_means(summary).set_index("group")
    assert out["pareto"].to_dict() == {"cheap": True, "mid": True, "big": True,
                                       "noisy": False, "single": False}
    # noisy (3e6 MACs) reaches 0.955 >= 0.95, the best front mean at no more cost; the
    # single seed has no interval, so it is never "within noise"
    assert out["within_noise"].to_dict() == {"cheap": False, "mid": False, "big": False,
                                             "noisy": True, "single": False}


def test_separability_says_what_can_and_cannot_be_told_apart():
    text = separability(summarize(FIXTURE, "optimizer"))
    assert text == ("At 2\u20133 seeds per group, Welch's t-test (5% level) tells every pair "
                    "compared apart: adam · lenet > sgd · lenet. These groups have a single "
                    "seed, so they have no interval and no difference involving them can be "
                    "tested: adam · resnet18.")
    mixed = summarize(pd.concat([FIXTURE, _runs([("lenet", "adamw", s, acc, acc) for s, acc in
                                                 enumerate((0.91, 0.95, 0.92))])
                                 .assign(run_id=lambda f: "w" + f["run_id"])]), "optimizer")
    text = separability(mixed)
    assert "tells apart adamw · lenet > sgd · lenet, adam · lenet > sgd · lenet, but it " \
           "cannot tell apart adamw · lenet and adam · lenet." in text
    close = summarize(_runs([("a", "adam", s, acc, acc) for s, acc in
                             enumerate((0.90, 0.95, 0.92))]
                            + [("b", "adam", s, acc, acc) for s, acc in
                               enumerate((0.91, 0.93, 0.96))]))
    assert "cannot tell any of these groups apart" in separability(close)


def test_curve_bands_use_std_for_three_minmax_for_two_and_none_for_one():
    epochs = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e", "f"], "epoch": [1] * 6,
        "val_acc": [0.5, 0.6, 0.7, 0.2, 0.4, 0.9], "wall_time": [1.0] * 6})
    groups = pd.DataFrame({"run_id": list("abcdef"), "group": list("xxxyyz"),
                           "model": ["lenet"] * 6})
    bands = curve_bands(epochs, groups, "val_acc").set_index("group")
    assert bands.loc["x", "mean"] == pytest.approx(0.6)
    assert bands.loc["x", "high"] - bands.loc["x", "mean"] == pytest.approx(0.1)  # one std
    assert (bands.loc["y", "low"], bands.loc["y", "high"]) == (0.2, 0.4)  # min-max of two
    assert bands.loc["z", "n"] == 1 and math.isnan(bands.loc["z", "low"])


def test_run_grid_reports_each_run_and_keeps_going_after_a_failure():
    calls = []

    def fake_train(cfg, **kw):
        calls.append((cfg.model, cfg.seed, kw["device"]))
        if cfg.seed == 1:
            raise RuntimeError("boom")
        return f"result-{cfg.model}-{cfg.seed}"

    events = []
    cfgs = study_configs(["lenet"], [0, 1, 2])
    out = studies.run_grid(cfgs, executor=studies.LocalExecutor(fake_train),
                           options=studies.TrainOptions(device="cpu"),
                           progress=lambda i, e: events.append((i, e["kind"])))
    assert out[0] == "result-lenet-0" and isinstance(out[1], RuntimeError)
    assert out[2] == "result-lenet-2" and [c[2] for c in calls] == ["cpu"] * 3
    assert events == [(0, "start"), (0, "result"), (1, "start"), (1, "failed"),
                      (2, "start"), (2, "result")]


STUDY = ["study", "--models", "lenet,lenet5", "--seeds", "2", "--epochs", "1",
         "--train-size", "150", "--test-size", "60", "--device", "cpu"]


def test_study_command_prints_one_row_per_model_with_intervals(capsys):
    code = main([*STUDY, "--format", "csv"])
    out, err = capsys.readouterr()
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == STUDY_COLUMNS
    assert table["model"].tolist() == ["lenet", "lenet5"] and (table["n_seeds"] == 2).all()
    assert (table["test_acc_ci_low"] <= table["test_acc_mean"]).all()
    assert (table["test_acc_mean"] <= table["test_acc_ci_high"]).all()
    assert (table["params"] == 61706).all() and (table["macs"] > 0).all()
    assert (table["selected_epoch_median"] == 1).all()
    assert err.count("epoch 1/1") == 4  # four runs trained
    # again: everything is stored, nothing trains, the same numbers come back
    code = main([*STUDY, "--format", "csv"])
    out2, err2 = capsys.readouterr()
    assert code == 0 and "epoch 1/1" not in err2 and err2.count("stored:") == 4
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out2)), table)


def test_study_command_compares_another_factor(capsys):
    code = main(["study", "--models", "lenet", "--seeds", "0,1", "--factor", "optimizer",
                 "--values", "adam,sgd", "--epochs", "1", "--train-size", "150",
                 "--test-size", "60", "--device", "cpu", "--format", "csv"])
    out, err = capsys.readouterr()
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns[:3]) == ["model", "optimizer", "n_seeds"]
    assert table["optimizer"].tolist() == ["adam", "sgd"] and (table["n_seeds"] == 2).all()


@pytest.mark.parametrize("args,fragment", [
    (["--models", "lenet", "--seeds", "0"], "number of seeds must be from 1"),
    (["--models", "lenet", "--factor", "lr"], "--factor lr needs --values"),
    (["--models", "lenet", "--values", "1,2"], "--values needs --factor"),
    (["--models", "lenet", "--factor", "optimizer", "--values", "adam,nope"],
     "bad value 'nope' of optimizer"),
    (["--models", "lenet,nope"], "Unknown model 'nope'"),
    (["--models", "lenet", "--epochs", "0"], "epochs must be a positive integer"),
])
def test_study_command_bad_arguments_give_one_error_line(capsys, args, fragment):
    code = main(["study", *args, "--device", "cpu"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith("error: ") and fragment in lines[0], lines
