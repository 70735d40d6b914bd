"""The app shell and the Overview page render (Streamlit's AppTest)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from cnncompare import list_models
from tests.conftest import REPO


def test_app_opens_on_overview(cnncompare_home):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "cnncompare"
    zoo = at.dataframe[0].value
    assert list(zoo["model"]) == list_models()
    assert str(cnncompare_home) in " ".join(c.value for c in at.caption)
