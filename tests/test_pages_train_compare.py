"""Train and Compare pages (AppTest): empty home, a run trained through the button, CSV."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnncompare import ui
from cnncompare.store import ResultsStore
from tests.conftest import REPO


def page(name: str) -> AppTest:
    """The app, opened on page ``name`` (so that navigation and page links work)."""
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=300).switch_page(
        f"views/{name}")


def widget(elements, label: str):
    return next(w for w in elements if w.label.startswith(label))


def test_compare_on_empty_home_says_what_to_do():
    at = page("compare.py").run()
    assert not at.exception
    assert "No stored runs yet" in at.info[0].value
    assert len(at.dataframe) == 0


def test_train_page_lists_the_default_runs_as_new():
    at = page("train.py").run()
    assert not at.exception
    status = at.dataframe[0].value
    assert list(status["model"]) == ["lenet", "alexnet", "resnet18"]
    assert set(status["state"]) == {"new"}
    assert at.button(key="train").label == "Train 3 runs"


def test_a_missing_dataset_is_a_clear_message_not_a_traceback(tmp_path):
    at = page("train.py").run()
    at.selectbox[0].set_value("mnist").run()
    widget(at.text_input, "Data root").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert at.error and "MNIST" in at.error[0].value


@pytest.fixture
def captured_downloads(monkeypatch):
    """What the pages hand to st.download_button (AppTest keeps no media files)."""
    seen: dict[str, bytes] = {}

    def fake_download_button(label, data, file_name=None, **kw):
        seen[file_name] = data
        return False

    monkeypatch.setattr(st, "download_button", fake_download_button)
    return seen


def test_train_through_the_button_then_compare_and_export(captured_downloads):
    at = page("train.py").run()
    at.multiselect[0].set_value(["lenet"]).run()
    widget(at.number_input, "Epochs").set_value(2)
    widget(at.number_input, "Train images").set_value(300)
    widget(at.number_input, "Test images").set_value(100).run()
    assert at.button(key="train").label == "Train 1 run"
    at.button(key="train").click().run()
    assert not at.exception

    job = ui.job_manager().latest()
    assert job is not None and job.join(240)
    snap = job.snapshot()
    assert snap.state == "done", snap
    assert [h["epoch"] for h in snap.history] == [1, 2]

    stored = ResultsStore().runs()
    assert list(stored["model"]) == ["lenet"] and stored["status"][0] == "finished"
    at.run()
    assert at.dataframe[0].value["state"].tolist() == ["stored"]
    assert any("Every chosen run is stored" in s.value for s in at.success)

    cmp = page("compare.py").run()
    assert not cmp.exception
    table = cmp.dataframe[0].value
    assert table["run_id"].tolist() == stored["run_id"].tolist()
    assert table["params"][0] == 61_706 and table["macs"][0] > 0
    csv = pd.read_csv(io.BytesIO(captured_downloads["cnncompare-digits-runs.csv"]))
    assert csv["run_id"].tolist() == table["run_id"].tolist()
    assert list(csv.columns) == list(table.columns)
    assert csv["test_acc"].tolist() == pytest.approx(table["test_acc"].tolist())
    # the charts are there: curves, Pareto, bars, confusion
    assert len(cmp.get("plotly_chart")) >= 6


VIEWS = ["overview", "architectures", "profile_bench", "train", "compare", "classify"]


@pytest.fixture(scope="module")
def home_with_a_run(tmp_path_factory):
    """A results home holding one small finished LeNet run, trained once per module."""
    from cnncompare.training import TrainConfig, train_or_load

    home = tmp_path_factory.mktemp("home-with-run")
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNCOMPARE_HOME", str(home))
    result = train_or_load(TrainConfig(model="lenet", epochs=1, train_size=200, test_size=100))
    mp.undo()
    assert result.status == "finished"
    return home


@pytest.mark.parametrize("view", VIEWS)
def test_every_page_renders_on_an_empty_home(view):
    at = page(f"{view}.py").run()
    assert not at.exception, at.exception


@pytest.mark.parametrize("view", VIEWS)
def test_every_page_renders_on_a_home_with_runs(view, home_with_a_run, monkeypatch):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(home_with_a_run))
    at = page(f"{view}.py").run()
    assert not at.exception, at.exception
    if view == "overview":
        assert at.metric[1].value == "1"  # stored runs
