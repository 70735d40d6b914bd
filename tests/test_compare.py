"""The Pareto front and run labels used by the Compare page."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cnncompare.compare import pareto_front, pareto_frontier_line, run_labels


def _frame(points):
    return pd.DataFrame(points, columns=["model", "macs", "test_acc"])


def test_front_keeps_only_undominated_runs():
    df = _frame([
        ("a", 1e6, 0.90),   # cheapest: on the front
        ("b", 2e6, 0.95),   # better and dearer: on the front
        ("c", 3e6, 0.93),   # dearer than b and worse: dominated
        ("d", 5e6, 0.99),   # best: on the front
        ("e", 1e6, 0.85),   # as cheap as a but worse: dominated
    ])
    assert list(df["model"][pareto_front(df)]) == ["a", "b", "d"]


def test_ties_are_both_kept_and_nan_is_never_on_front():
    df = _frame([("a", 1e6, 0.9), ("b", 1e6, 0.9), ("c", np.nan, 0.99)])
    assert list(pareto_front(df)) == [True, True, False]


def test_front_brute_force_agreement():
    rng = np.random.default_rng(0)
    df = _frame([(str(i), float(c), float(s)) for i, (c, s) in
                 enumerate(zip(rng.integers(1, 20, 60), rng.random(60).round(2), strict=True))])
    mask = pareto_front(df)
    for i, row in df.iterrows():
        dominated = any((o.macs <= row.macs and o.test_acc >= row.test_acc)
                        and (o.macs < row.macs or o.test_acc > row.test_acc)
                        for _, o in df.iterrows())
        assert mask[i] == (not dominated)
    line = pareto_frontier_line(df)
    assert line["macs"].is_monotonic_increasing
    assert line["test_acc"].is_monotonic_increasing


def test_run_labels_are_unique_and_readable():
    runs = pd.DataFrame({"model": ["lenet", "resnet18", "resnet18", "vgg11"],
                         "width": [1.0, 0.25, 0.25, 1.0],
                         "run_id": ["aaaaaa11", "bbbbbb22", "cccccc33", "dddddd44"]})
    labels = run_labels(runs)
    assert labels.is_unique
    assert labels[0] == "lenet" and labels[3] == "vgg11"
    assert labels[1] == "resnet18 w0.25 · bbbbbb"


def test_learning_curves_mark_whole_epochs_and_colour_by_model():
    from cnncompare import plots

    e = pd.DataFrame({"label": ["a", "a", "b"], "model": ["lenet", "lenet", "resnet18"],
                      "epoch": [1, 2, 1], "test_acc": [0.5, 0.7, 0.6]})
    fig = plots.learning_curves(e)
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.data[0].line.color == plots.model_color("lenet") != fig.data[1].line.color


def test_results_table_reads_each_run_once(monkeypatch):
    """One records() query for the whole table; no per-run reads."""
    from cnncompare.compare import RESULT_COLUMNS, results_table
    from cnncompare.store import ResultsStore
    from cnncompare.training import TrainConfig, train_or_load

    runs = [train_or_load(TrainConfig(m, epochs=1, train_size=100, test_size=50), device="cpu")
            for m in ("lenet", "lenet5")]
    store = ResultsStore()
    calls = {"records": 0, "run": 0}
    records, run = store.records, store.run

    def counted_records(*a, **k):
        calls["records"] += 1
        return records(*a, **k)

    def counted_run(*a, **k):
        calls["run"] += 1
        return run(*a, **k)

    monkeypatch.setattr(store, "records", counted_records)
    monkeypatch.setattr(store, "run", counted_run)
    table = results_table(store, [r.run_id for r in runs], bench="none")
    assert calls == {"records": 1, "run": 0}
    assert list(table.columns) == RESULT_COLUMNS
    assert sorted(table["model"]) == ["lenet", "lenet5"]
    assert (table["params"] == 61706).all() and table["latency_ms"].isna().all()
    assert table.set_index("run_id").loc[runs[0].run_id, "test_acc"] == runs[0].test_acc
    assert results_table(store, [], bench="none").empty


def test_hide_constant_columns_keeps_what_differs_and_the_key_columns():
    from cnncompare.compare import hide_constant_columns

    frame = pd.DataFrame({"group": ["a", "b"], "n_seeds": [3, 3], "lr": [1e-3, 1e-3],
                          "width": [0.25, 1.0], "note": [None, None], "test_acc_mean": [.9, .8]})
    shown = hide_constant_columns(frame)
    assert list(shown.columns) == ["group", "n_seeds", "width", "test_acc_mean"]
    assert list(hide_constant_columns(frame.iloc[:1]).columns) == list(frame.columns)


def test_group_table_puts_the_factor_after_the_group_once():
    from cnncompare.compare import GROUP_COLUMNS, group_table
    from tests.test_studies import FIXTURE

    runs = FIXTURE.assign(macs=416520.0, flops=833040.0, latency_ms=np.nan,
                          peak_mem_mb=np.nan, mem_method="", input="1x28x28")
    table = group_table(runs, "optimizer")
    assert list(table.columns[:3]) == ["group", "optimizer", "model"]
    assert list(table.columns).count("optimizer") == 1
    assert len(table.columns) == len(GROUP_COLUMNS)
    assert table["n_seeds"].tolist() == [3, 2, 1] and table["pareto"].dtype == bool
    assert list(group_table(runs).columns) == GROUP_COLUMNS
