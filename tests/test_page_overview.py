"""The app shell and the Overview page render (Streamlit's AppTest)."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from cnncompare import count_params, list_models, ui
from tests.conftest import REPO


def _overview_loaded(cnncompare_home) -> AppTest:
    """The app opened on the Overview, run again once torch's side (device, zoo) is in."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert ui.overview_basics().wait(timeout=120) and ui.overview_basics().error is None
    return at.run()


def test_app_opens_on_overview(cnncompare_home):
    at = _overview_loaded(cnncompare_home)
    assert not at.exception
    assert at.title[0].value == "cnncompare"
    zoo = at.dataframe[0].value
    assert list(zoo["model"]) == list_models()
    assert zoo.set_index("model").loc["vgg16", "params"] == count_params("vgg16")
    shown = json.loads(at.dataframe[0].proto.columns)
    for column in ("params", "macs", "flops"):  # one column table for every page
        assert shown[column]["label"] == ui.cost_columns()[column]["label"]
        assert shown[column]["help"] == ui.cost_columns()[column]["help"]
    assert str(cnncompare_home) in " ".join(c.value for c in at.caption)


def test_overview_fills_in_macs_and_flops_counted_in_the_background(cnncompare_home):
    from cnncompare import paths, profiling

    at = _overview_loaded(cnncompare_home)
    assert not at.exception
    costs = ui.zoo_costs(str(paths.home()))
    assert costs.wait(timeout=120)
    # The warm-up after the count reads the cache too: done before the counters are read.
    assert costs.join(timeout=120)
    at.run()
    assert not at.exception
    zoo = at.dataframe[0].value.set_index("model")
    for name in ("lenet", "resnet18", "densenet121"):
        expected = profiling.forward_costs(name)
        assert zoo.loc[name, "macs"] == expected["macs"]
        assert zoo.loc[name, "flops"] == expected["flops"]
    assert zoo["macs"].notna().all() and zoo["flops"].notna().all()
    captions = " ".join(c.value for c in at.caption)
    assert f"MACs and FLOPs counted for all {len(list_models())} networks" in captions
    # The counts are on disk: a new server (a new BackgroundCosts) reads them, counts none.
    before = profiling.cache_stats()["forward_computed"]
    again = profiling.BackgroundCosts([profiling.as_config("resnet18")])
    assert again.wait(timeout=60) and again.errors() == {}
    assert profiling.cache_stats()["forward_computed"] == before


def test_background_costs_keeps_a_failure_beside_the_results():
    from cnncompare import profiling
    from cnncompare.registry import ModelConfig

    # Built without resolve_config's checks: too small for AlexNet's pooling.
    bad = ModelConfig(name="alexnet", num_classes=10, in_channels=1, input_size=8)
    costs = profiling.BackgroundCosts([bad, profiling.as_config("lenet")])
    assert costs.wait(timeout=60)
    assert costs.results() == {"lenet": profiling.forward_costs("lenet")}
    assert list(costs.errors()) == ["alexnet"] and costs.errors()["alexnet"]


def test_background_costs_runs_then_afterwards_and_keeps_its_failure():
    from cnncompare import profiling

    order = []

    def then():
        order.append(("then", costs.done()))
        raise RuntimeError("warm-up broke")

    costs = profiling.BackgroundCosts([profiling.as_config("lenet")], then=then)
    assert costs.join(timeout=60)
    assert order == [("then", True)]  # after every count was in
    assert costs.then_error == "RuntimeError: warm-up broke"
    assert costs.errors() == {}


def test_prefetch_leaves_the_pages_first_analyses_on_disk():
    from cnncompare import profiling
    from cnncompare.registry import preset_config

    ui.prefetch_for_pages()
    before = profiling.cache_stats()
    for name in ui.PREFETCHED:
        profiling.analyze(preset_config(name, "small"))
    after = profiling.cache_stats()
    assert after["computed"] == before["computed"]
    assert after["disk_hits"] == before["disk_hits"] + len(ui.PREFETCHED)


def test_overview_draws_before_torch_side_is_loaded_then_fills_in(cnncompare_home,
                                                                   monkeypatch):
    """The first page does not wait for the zoo (torch's import, parameter counts): it
    draws the rest, says the zoo is loading, and shows the table once it is in."""
    import threading

    from cnncompare import registry

    gate = threading.Event()
    real = registry.zoo_frame

    def held_zoo_frame(*args, **kwargs):
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "zoo_frame", held_zoo_frame)
    ui.overview_basics.clear()  # a new server's loader
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
        assert not at.exception
        assert at.title[0].value == "cnncompare" and len(at.dataframe) == 0
        captions = " ".join(c.value for c in at.caption)
        assert "Loading the zoo" in captions and "PyTorch is loading" in captions
        assert not ui.overview_basics().done()
    finally:
        gate.set()
    assert ui.overview_basics().wait(timeout=120)
    at.run()
    assert not at.exception
    assert list(at.dataframe[0].value["model"]) == list_models()
    assert at.metric[0].value in ("CPU", "CUDA", "MPS")


def test_background_keeps_its_result_or_its_failure():
    from cnncompare.background import Background

    ok = Background(lambda: 42)
    assert ok.wait(timeout=10) and ok.result() == 42 and ok.error is None

    def broken() -> int:
        raise ValueError("no torch here")

    failed = Background(broken)
    assert failed.wait(timeout=10) and failed.done()
    assert failed.result() is None and failed.error == "ValueError: no torch here"
