"""The Architectures page's explanations (AppTest): receptive-field columns, the card's
depth, notes and pitfalls, the diagrams, the field-by-depth chart, the effective field."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

PAGE = str(REPO / "views" / "architectures.py")


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    from tests.trained_lenet import quick_lenet

    return quick_lenet(tmp_path_factory.getbasetemp())


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_layer_table_card_diagrams_and_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(tmp_path / "empty"))
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    main = at.dataframe[0].value
    assert {"rf", "rf_jump", "rf_start"} <= set(main.columns)
    last_conv = main[main["layer"] == "layer4.1.conv2"].iloc[0]
    assert (last_conv["rf"], last_conv["rf_jump"], last_conv["rf_start"]) == (109, 8, -54)
    text = " ".join(m.value for m in at.markdown)
    assert "**Depth:** 18 weighted layers" in text
    assert any(e.label == "Common pitfalls when you write it yourself" for e in at.expander)
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    diagrams = [c for c in _charts(at) if "output: " in c["data"][0].get("hovertemplate", "")]
    assert [c["layout"]["title"]["text"] for c in diagrams] == [
        "resnet18 3x32x32 w0.25", "densenet121 3x32x32 w0.25"]  # two diagrams side by side
    assert any(t.startswith("Receptive field of one unit against depth") for t in titles)
    assert any("No trained run yet" in i.value for i in at.info)
    # Opening a block redraws its diagram with the block's insides.
    at.multiselect(key="diagram-right-open").set_value(
        ["features.denseblock1.denselayer1-6"]).run()
    assert not at.exception
    right = [c for c in _charts(at) if "densenet121" in c["layout"]["title"]["text"]][0]
    texts = [a.get("text", "") for a in right["layout"]["annotations"]]
    assert sum("denselayer" in t and "×" not in t for t in texts) == 6


def test_size_notes_and_a_bad_size(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(tmp_path / "empty"))
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    at.selectbox(key="arch-model").set_value("vgg16").run()
    at.radio(key="arch-config").set_value("custom").run()
    at.number_input(key="arch-size").set_value(28).run()
    assert not at.exception
    assert any("run on a 1 x 1 map" in i.value for i in at.info)
    at.number_input(key="arch-size").set_value(2).run()
    assert not at.exception
    assert any("needs an input of at least" in e.value for e in at.error)


def test_effective_field_of_a_trained_run(lenet_run, monkeypatch):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(lenet_run[0]))
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    assert at.selectbox(key="arch-erf-run").value == lenet_run[1]
    assert not any(c.value.startswith("Unit (") for c in at.caption)  # on request only
    at.toggle(key="arch-erf-show").set_value(True).run()
    assert not at.exception
    captions = [c.value for c in at.caption if c.value.startswith("Unit (2, 2) of pool2")]
    assert len(captions) == 2 and "theoretical field 16 px" in captions[0]
    erf = [c for c in _charts(at) if "test images" in c["layout"]["title"]["text"]]
    assert [c["layout"]["title"]["text"].split(":")[0] for c in erf] == [
        "Trained", "At initialisation"]
    square = erf[0]["layout"]["shapes"][0]
    assert (square["x0"], square["x1"]) == (5.5, 21.5)
