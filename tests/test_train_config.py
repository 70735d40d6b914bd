"""The Train page's plan (plan_runs, run_status) and the store rows it reads."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from cnncompare.store import FRAME_COLUMNS, SETTINGS_COLUMNS, ResultsStore
from cnncompare.train_config import STATUS_COLUMNS, TrainConfig, plan_runs, run_status

HYPER = dict(dataset="digits", epochs=2, train_size=100, test_size=50)


def _fields(cfg: TrainConfig) -> dict:
    """The row fields a trainer writes when it begins a run (no training needed here)."""
    r = cfg.resolve()
    return {"model": cfg.model, "dataset": cfg.dataset, "epochs": cfg.epochs,
            "config": cfg.as_dict(), "settings": r.settings, "canonical": r.canonical,
            "model_config": r.model_config.as_dict(), "data_meta": {}}


def _epoch(n: int, acc: float) -> dict:
    return {"epoch": n, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0,
            "test_acc": acc, "seconds": 0.1, "images_per_s": 100.0, "lr": 1e-3}


def test_plan_runs_quick_leaves_the_width_to_each_model_and_full_trains_width_one():
    quick = plan_runs(["lenet", "resnet18"], preset="quick", **HYPER)
    assert [c.model for c in quick] == ["lenet", "resnet18"]
    assert all(c.width is None for c in quick)
    assert quick[1].resolve().model_config.width == 0.25  # resnet18's small configuration
    full = plan_runs(["resnet18"], preset="full", **HYPER)
    assert full[0].width == 1.0 and full[0].resolve().model_config.width == 1.0
    assert all(c.epochs == 2 and c.train_size == 100 for c in quick + full)
    with pytest.raises(ValueError, match="preset must be one of quick, full"):
        plan_runs(["lenet"], preset="huge")


def test_plan_runs_with_seeds_is_model_major():
    cfgs = plan_runs(["lenet", "alexnet"], seeds=[0, 1, 2], **HYPER)
    assert [(c.model, c.seed) for c in cfgs] == [(m, s) for m in ("lenet", "alexnet")
                                                 for s in (0, 1, 2)]
    assert len({c.key() for c in cfgs}) == 6


def test_run_status_shows_a_study_per_model_and_seed_with_its_factor():
    from cnncompare.studies import study_configs

    cfgs = study_configs(["lenet"], [0, 1], factor="optimizer", values=["adam", "sgd"],
                         **HYPER)
    frame = run_status(cfgs, ResultsStore(), factor="optimizer", device="cpu")
    assert list(frame.columns) == ["model", "optimizer", *STATUS_COLUMNS[1:]]
    assert frame[["optimizer", "seed"]].values.tolist() == [["adam", 0], ["adam", 1],
                                                            ["sgd", 0], ["sgd", 1]]
    assert frame["run_id"].is_unique and set(frame["state"]) == {"new"}


def test_run_status_plans_a_dataset_that_will_be_downloaded(tmp_path):
    """With download ticked, a missing MNIST resolves to the official download's keys
    instead of stopping the plan; without it, the plan is a clear error."""
    from cnncompare.data import DatasetNotFoundError

    cfgs = plan_runs(["lenet"], seeds=[0, 1], dataset="mnist", epochs=2)
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError):
        run_status(cfgs, ResultsStore(), root)
    frame = run_status(cfgs, ResultsStore(), root, download=True)
    assert frame["state"].tolist() == ["new", "new"] and frame["run_id"].is_unique
    assert frame["run_id"].tolist() == [c.key(root, True) for c in cfgs]


def test_run_status_reads_new_partial_stored_and_training():
    store = ResultsStore()
    new, partial, stored, busy = plan_runs(["lenet", "lenet5", "alexnet", "nin"], **HYPER)
    for cfg in (partial, stored, busy):
        store.begin(cfg.key(), _fields(cfg))
    store.record_epoch(partial.key(), [_epoch(1, 0.5)])
    store.set_status(partial.key(), "unfinished")
    store.record_epoch(stored.key(), [_epoch(1, 0.6), _epoch(2, 0.75)], {"status": "finished"})
    lock = store.lock(busy.key())
    lock.acquire()
    try:
        frame = run_status([new, partial, stored, busy], store)
    finally:
        lock.release()
    assert list(frame.columns) == STATUS_COLUMNS
    assert frame["state"].tolist() == ["new", "partial", "stored", "training now"]
    assert frame["epochs_done"].tolist() == [0, 1, 2, 0]
    assert frame["test_acc"].iloc[2] == 0.75 and pd.isna(frame["test_acc"].iloc[0])
    assert frame["run_id"].tolist() == [c.key() for c in (new, partial, stored, busy)]
    # a running row whose trainer holds no lock is an unfinished one: it resumes
    assert run_status([busy], store)["state"].tolist() == ["new"]


def test_listing_reads_the_settings_the_trainer_wrote():
    store = ResultsStore()
    cfg = TrainConfig("resnet18", width=0.5, lr=0.01, **HYPER)
    store.begin(cfg.key(), _fields(cfg))
    row = store.runs().iloc[0]
    assert list(store.runs().columns) == list(FRAME_COLUMNS)
    assert (row["width"], row["lr"], row["train_size"], row["input_size"]) == (0.5, 0.01, 100, 28)
    assert json.loads(row["model_kwargs"]) == {}


def test_a_store_written_before_settings_is_migrated_once(tmp_path):
    """A results.sqlite of the first version (no settings column) opens, and its rows get
    their settings from the payload they stored, exactly once."""
    home = tmp_path / "old"
    store = ResultsStore(home)
    cfg = TrainConfig("lenet", **HYPER)
    store.begin(cfg.key(), _fields(cfg))
    want = store.runs()[list(SETTINGS_COLUMNS)].iloc[0].to_dict()
    with sqlite3.connect(store.db_path) as conn:  # make it look like the old format
        conn.execute("ALTER TABLE runs DROP COLUMN settings")
        conn.execute("PRAGMA user_version = 0")
    migrated = ResultsStore(home)
    assert migrated.runs()[list(SETTINGS_COLUMNS)].iloc[0].to_dict() == want
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        conn.execute("UPDATE runs SET settings = '{\"lr\": 9}'")
    assert ResultsStore(home).runs()["lr"].iloc[0] == 9  # not migrated a second time
