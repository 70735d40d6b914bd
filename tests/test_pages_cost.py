"""The Architectures and Profile & Benchmark pages render (Streamlit's AppTest)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from cnncompare import benchmark, count_params, profiling, ui
from tests.conftest import REPO

TIMEOUT = 120


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(REPO / "views" / f"{name}.py"), default_timeout=TIMEOUT)


def _downloads(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def _column_texts(table, column: str) -> tuple[str, str]:
    """The label and help text a shown table gives ``column``."""
    config = json.loads(table.proto.columns)[column]
    return config["label"], config.get("help", "")


def _expected_texts(column: str) -> tuple[str, str]:
    config = ui.cost_columns()[column]
    return config["label"], config["help"]


def test_architectures_page():
    at = _page("architectures").run()
    assert not at.exception
    assert at.title[0].value == "Architectures"
    # The main layer table and the two side-by-side tables, each downloadable.
    assert len(at.dataframe) == 3
    assert len(_downloads(at)) == 3
    main = at.dataframe[0].value
    assert {"layer", "shape_arithmetic", "params", "macs"} <= set(main.columns)
    assert main["params"].sum() == count_params("resnet18", input_size=32, width=0.25)
    assert "Residual shortcuts" in " ".join(m.value for m in at.markdown)
    assert any(m.label == "Parameters" for m in at.metric)
    # The activation figure says what it assumes; the cost columns come from ui's table.
    (activations,) = [m for m in at.metric if m.label == "Activations"]
    assert activations.proto.help == profiling.ACTIVATION_NOTE
    assert "float32" in activations.proto.help and "in-place" in activations.proto.help
    for column in ("params", "macs"):
        assert _column_texts(at.dataframe[0], column) == _expected_texts(column)

    at.selectbox(key="arch-model").set_value("lenet5").run()
    assert not at.exception
    assert at.dataframe[0].value["params"].sum() == 61_706


def test_architectures_page_reports_an_impossible_input():
    at = _page("architectures").run()
    at.radio(key="arch-config").set_value("custom").run()
    at.number_input(key="arch-size").set_value(2).run()
    assert not at.exception
    assert any("needs an input of at least" in e.value for e in at.error)


def test_profile_page_tables_and_downloads():
    at = _page("profile_bench").run()
    assert not at.exception
    assert at.title[0].value == "Profile & Benchmark"
    costs = at.dataframe[0].value
    assert list(costs["model"]) == ["lenet", "alexnet", "vgg11", "resnet18"]
    assert {"params", "macs", "flops", "param_mb", "activation_mb"} <= set(costs.columns)
    for column in ("params", "macs", "flops", "train_flops", "activation_mb"):
        assert _column_texts(at.dataframe[0], column) == _expected_texts(column)
    assert profiling.ACTIVATION_NOTE in [c.value for c in at.caption]
    # Costs, per-module and skipped-operator tables; no benchmark has run yet.
    assert len(at.dataframe) == 3
    assert len(_downloads(at)) == 3
    assert any("Run benchmark" in c.value for c in at.caption)


def test_profile_page_runs_a_benchmark_then_shows_it_from_cache(monkeypatch):
    calls = []
    real = benchmark.benchmark_one
    monkeypatch.setattr(benchmark, "benchmark_one",
                        lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    at = _page("profile_bench").run()
    at.multiselect(key="prof-models").set_value(["lenet", "alexnet"])
    at.multiselect(key="bench-batches").set_value([1, 2])
    at.number_input(key="bench-iters").set_value(3)
    at.number_input(key="bench-seconds").set_value(1.0)
    at.button(key="FormSubmitter:bench-form-Run benchmark").click().run()
    assert not at.exception
    assert sorted(calls) == ["alexnet", "alexnet", "lenet", "lenet"]
    bench = at.dataframe[-1].value
    assert list(zip(bench["model"], bench["batch_size"], strict=True)) == [
        ("lenet", 1), ("lenet", 2), ("alexnet", 1), ("alexnet", 2)]
    assert (bench["median_ms"] > 0).all()
    assert "dl-bench" in [b.key for b in at.get("download_button")]
    # The cost table gains the measured latency.
    assert at.dataframe[0].value["median_ms"].notna().all()

    # A fresh session shows the same rows from the disk cache, measuring nothing.
    again = _page("profile_bench")
    again.session_state["prof-models"] = ["lenet", "alexnet"]
    again.session_state["bench-batches"] = [1, 2]
    again.session_state["bench-iters"] = 3
    again.session_state["bench-seconds"] = 1.0
    again.run()
    assert not again.exception
    assert len(calls) == 4
    assert list(again.dataframe[-1].value["median_ms"]) == list(bench["median_ms"])


def test_profile_page_says_when_a_timing_is_not_to_be_trusted(monkeypatch):
    real = benchmark.summarize_times

    def noisy(timing, settings):  # every other step three times as long
        return real(benchmark.Timing(times=[1.0, 3.0] * 3, stopped="time budget"), settings)

    monkeypatch.setattr(benchmark, "summarize_times", noisy)
    at = _page("profile_bench").run()
    at.multiselect(key="prof-models").set_value(["lenet"])
    at.multiselect(key="bench-batches").set_value([1])
    at.number_input(key="bench-iters").set_value(3)
    at.number_input(key="bench-seconds").set_value(1.0)
    at.button(key="FormSubmitter:bench-form-Run benchmark").click().run()
    assert not at.exception
    bench = at.dataframe[-1].value
    assert {"p10_ms", "p90_ms", "spread", "noisy"} <= set(bench.columns)
    assert bool(bench["noisy"].iloc[0])
    warning = " ".join(w.value for w in at.warning)
    assert "Some timings should not be trusted" in warning
    assert "**lenet, batch 1**: Too noisy to mean much" in warning


def test_cost_charts_are_built_once_per_configuration():
    first = ui.cost_chart("bars", ("lenet", "alexnet"), "small", {})
    assert ui.cost_chart("bars", ("lenet", "alexnet"), "small", {}) is first
    assert {"lenet", "alexnet"} <= {x for trace in first.data for x in trace.x}
    modules = ui.cost_chart("modules", ("lenet",), "small", {}, 2)
    assert modules is not ui.cost_chart("modules", ("lenet",), "small", {}, 1)
    with pytest.raises(ValueError, match="kind must be one of bars, bubble, modules"):
        ui.cost_chart("pie", ("lenet",), "small", {})
