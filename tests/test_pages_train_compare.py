"""Train and Compare pages (AppTest): empty home, a run trained through the button, CSV."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnncompare import ui
from cnncompare.store import ResultsStore
from tests.conftest import REPO
from tests.data_fixtures import (
    FakeDownloader,
    make_cifar_root,
    make_idx_root,
    make_image_folder,
)


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


def test_train_page_lists_the_default_study_as_new():
    """3 models x 3 seeds (the quick preset's default), one row per (model, seed)."""
    at = page("train.py").run()
    assert not at.exception
    status = at.dataframe[0].value
    assert list(status["model"]) == ["lenet"] * 3 + ["alexnet"] * 3 + ["resnet18"] * 3
    assert list(status["seed"]) == [0, 1, 2] * 3
    assert set(status["state"]) == {"new"} and status["run_id"].is_unique
    assert status["precision"].isin(["float32", "bfloat16", "float16"]).all()
    assert at.button(key="train").label == "Train 9 runs"
    widget(at.radio, "Preset").set_value("full").run()
    assert widget(at.number_input, "Seeds").value == 1  # the full preset: one seed
    # the page's defaults are the command line's: the same keys as `train --model lenet`
    from cnncompare.train_config import TrainConfig

    assert status["run_id"].iloc[0] == TrainConfig("lenet").key()


def test_a_missing_dataset_is_a_clear_message_not_a_traceback(tmp_path):
    at = page("train.py").run()
    at.selectbox[0].set_value("mnist").run()
    widget(at.text_input, "Data root").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert at.error and "MNIST" in at.error[0].value
    assert "--data-root" not in at.error[0].value  # the page's own fields are named


def test_download_if_missing_lets_the_plan_and_the_train_button_show(cnncompare_home):
    """Ticking "Download if missing" no longer stops the page at the missing-data message:
    the plan (with the keys the download will give) and the Train button appear."""
    root = cnncompare_home / "datasets"
    root.mkdir(parents=True)  # an empty folder inside the results home (an allowed root)
    at = page("train.py").run()
    at.selectbox[0].set_value("mnist").run()
    widget(at.text_input, "Data root").set_value(str(root)).run()
    assert at.error and "Download if missing" in at.error[0].value
    widget(at.checkbox, "Download if missing").check().run()
    assert not at.exception and not at.error
    assert any("will be downloaded" in i.value for i in at.info)
    status = at.dataframe[0].value
    assert len(status) == 9 and set(status["state"]) == {"new"}
    assert at.button(key="train").label == "Train 9 runs"


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
    widget(at.number_input, "Seeds").set_value(2)
    widget(at.number_input, "Train images").set_value(300)
    widget(at.number_input, "Test images").set_value(100).run()
    assert at.button(key="train").label == "Train 2 runs"
    at.button(key="train").click().run()
    assert not at.exception

    job = ui.job_manager().latest()
    assert job is not None and job.join(240)
    snap = job.snapshot()
    assert snap.state == "done", snap
    assert [(h["label"], h["epoch"]) for h in snap.history] == [
        ("lenet · seed 0", 1), ("lenet · seed 0", 2), ("lenet · seed 1", 1),
        ("lenet · seed 1", 2)]

    stored = ResultsStore().runs()
    assert list(stored["model"]) == ["lenet"] * 2 and set(stored["status"]) == {"finished"}
    assert sorted(stored["seed"]) == [0, 1]
    at.run()
    assert at.dataframe[0].value["state"].tolist() == ["stored"] * 2
    assert any("Every chosen run is stored" in s.value for s in at.success)

    cmp = page("compare.py").run()
    assert not cmp.exception
    table = cmp.dataframe[0].value
    assert table["n_seeds"].tolist() == [2]
    assert sorted(table["run_ids"][0].split(",")) == sorted(stored["run_id"])
    assert table["params"][0] == 61_706 and table["macs"][0] > 0
    csv = pd.read_csv(io.BytesIO(captured_downloads["cnncompare-digits-groups.csv"]))
    assert list(csv.columns) == list(table.columns)
    assert csv["test_acc_mean"].tolist() == pytest.approx(table["test_acc_mean"].tolist())
    assert csv["test_acc_mean"][0] == pytest.approx(stored["test_acc"].mean())
    # the charts are there: 2 curves, Pareto, bars, confusion, per class
    assert len(cmp.get("plotly_chart")) >= 6


def _figure(element) -> dict:
    return json.loads(element.proto.spec)


@pytest.fixture
def study_home(cnncompare_home):
    """lenet x 3 seeds, alexnet x 2 seeds and lenet5 x 1 seed, three epochs each, tiny."""
    from cnncompare.training import TrainConfig, train_or_load

    for model, seeds in (("lenet", 3), ("alexnet", 2), ("lenet5", 1)):
        for seed in range(seeds):
            r = train_or_load(TrainConfig(model, epochs=3, seed=seed, train_size=300,
                                          test_size=60), device="cpu")
            assert r.status == "finished"
    return cnncompare_home


def test_compare_shows_a_multi_seed_study_with_bands_intervals_and_its_csv(
        study_home, captured_downloads):
    at = page("compare.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table.set_index("group")["n_seeds"].to_dict() == {"lenet": 3, "alexnet": 2,
                                                             "lenet5": 1}
    groups = table.set_index("group")
    assert groups.loc["lenet", "test_acc_ci_low"] <= groups.loc["lenet", "test_acc_mean"] \
        <= groups.loc["lenet", "test_acc_ci_high"]
    assert pd.isna(groups.loc["lenet5", "test_acc_ci_low"])  # one seed: no interval
    # the CSV is exactly the table shown, with the columns equal across the runs hidden
    csv = pd.read_csv(io.BytesIO(captured_downloads["cnncompare-digits-groups.csv"]))
    assert list(csv.columns) == list(table.columns)
    assert csv["group"].tolist() == table["group"].tolist()
    assert csv["test_acc_mean"].tolist() == pytest.approx(table["test_acc_mean"].tolist())
    assert "epochs" not in table.columns and "dataset" not in table.columns  # all equal
    at.toggle(key="hide-equal").set_value(False).run()
    full = at.dataframe[0].value
    assert {"epochs", "dataset", "batch_size"} <= set(full.columns)
    csv = pd.read_csv(io.BytesIO(captured_downloads["cnncompare-digits-groups.csv"]))
    assert list(csv.columns) == list(full.columns)

    figures = [_figure(c) for c in at.get("plotly_chart")]
    curves = figures[0]["data"]
    bands = [t["name"] for t in curves if t.get("fill") == "toself"]
    assert bands == ["lenet band", "alexnet band"]  # none for the single seed
    assert any(t["name"] == "lenet5 (one seed)" for t in curves)
    bars = next(f for f in figures if "selected epoch" in f["layout"]["title"]["text"])
    (bar,) = bars["data"]
    assert bar["x"] == ["lenet", "alexnet", "lenet5 (1 seed)"]
    errors = bar["error_y"]["array"]
    assert errors[0] > 0 and errors[1] > 0 and errors[2] == 0
    scatter = next(f for f in figures if "against MACs" in f["layout"]["title"]["text"])
    assert any(t.get("error_y") for t in scatter["data"] if t["mode"] == "markers+text")
    assert any("Welch's t-test" in i.value for i in at.info)


def test_compare_groups_by_another_factor(cnncompare_home):
    from cnncompare.training import TrainConfig, train_or_load

    for opt in ("adam", "sgd"):
        for seed in (0, 1):
            train_or_load(TrainConfig("lenet", epochs=1, seed=seed, optimizer=opt,
                                      train_size=120, test_size=50), device="cpu")
    at = page("compare.py").run()
    widget(at.selectbox, "Compare by").set_value("optimizer").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["group"].tolist() == ["adam", "sgd"] and table["n_seeds"].tolist() == [2, 2]
    assert table["optimizer"].tolist() == ["adam", "sgd"]


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


@pytest.mark.parametrize("dataset,make", [
    ("mnist", lambda root: make_idx_root(root, "MNIST")),
    ("fashion-mnist", lambda root: make_idx_root(root, "FashionMNIST")),
    ("cifar10", lambda root: make_cifar_root(root)),
    ("imagefolder", lambda root: make_image_folder(root)),
])
def test_a_data_root_in_the_app_works_for_every_dataset(cnncompare_home, dataset, make):
    root = make(cnncompare_home / "data" / dataset)
    at = page("train.py").run()
    at.selectbox[0].set_value(dataset).run()
    widget(at.text_input, "Data root").set_value(str(root)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    status = at.dataframe[0].value
    assert len(status) == 9 and set(status["state"]) == {"new"}


def test_download_if_missing_trains_end_to_end(cnncompare_home, monkeypatch):
    """The page plans the runs, the job downloads (a stand-in for torchvision's
    downloader: no network here) and trains them, and the page then finds them stored."""
    from torchvision.datasets import utils as tv_utils

    fake = FakeDownloader()
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    root = cnncompare_home / "downloads"  # not there yet: the download creates it
    at = page("train.py").run()
    at.multiselect[0].set_value(["lenet"]).run()
    at.selectbox[0].set_value("mnist").run()
    widget(at.text_input, "Data root").set_value(str(root)).run()
    widget(at.checkbox, "Download if missing").check()
    widget(at.number_input, "Epochs").set_value(1)
    widget(at.number_input, "Seeds").set_value(1)
    widget(at.number_input, "Train images").set_value(50)
    widget(at.number_input, "Test images").set_value(30).run()
    assert not at.exception and not at.error and fake.calls == []  # nothing fetched yet
    at.button(key="train").click().run()
    job = ui.job_manager().latest()
    assert job is not None and job.join(240) and job.snapshot().state == "done"
    assert len(fake.calls) == 4  # the four IDX archives
    at.run()
    assert at.dataframe[0].value["state"].tolist() == ["stored"]
    assert not any("will be downloaded" in i.value for i in at.info)  # it is there now
