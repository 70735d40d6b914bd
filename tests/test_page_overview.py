"""The app shell and the Overview page render (Streamlit's AppTest)."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from cnncompare import count_params, list_models, ui
from tests.conftest import REPO


def test_app_opens_on_overview(cnncompare_home):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
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
