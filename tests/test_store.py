"""The results store: cache hits, resume after a kill, one training for two processes,
damaged checkpoints, rows and databases."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnncompare import data
from cnncompare.store import ResultsStore, StoreDamaged, StoreWarning
from cnncompare.training import TEST_HOLD_ENV, TrainConfig, train_or_load

REPO = Path(__file__).resolve().parents[1]
CFG = TrainConfig("lenet", epochs=3, train_size=300, test_size=120)
METRICS = ["train_loss", "train_acc", "test_loss", "test_acc"]


def _train(cfg=CFG, **kw):
    return train_or_load(cfg, device="cpu", **kw)


def test_a_stored_run_comes_back_identical_without_training():
    first = _train()
    events: list[dict] = []
    again = _train(progress=events.append)
    assert again.cached and not first.cached and again.status == "finished"
    assert [e["kind"] for e in events] == ["done"]  # no batch, no epoch: nothing trained
    assert (again.run_id, again.test_acc, again.train_seconds) == \
        (first.run_id, first.test_acc, first.train_seconds)
    pd.testing.assert_frame_equal(first.history, again.history)
    assert again.confusion == first.confusion


def test_the_store_describes_a_run_for_the_pages():
    r = _train()
    store = ResultsStore()
    runs = store.runs()
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row.run_id, row.model, row.dataset, row.status) == (r.run_id, "lenet", "digits",
                                                                "finished")
    assert (row.epochs_done, row.epochs, row.params, row.train_size) == (3, 3, 61706, 300)
    assert row.test_acc == r.test_acc and row.seconds == pytest.approx(r.train_seconds)
    assert store.runs(dataset="mnist").empty and len(store.runs(finished_only=True)) == 1

    rec = store.run(r.run_id)
    meta = rec.data_meta
    assert meta["class_names"] == list("0123456789") and meta["ink"] == data.LIGHT_ON_DARK
    assert {"dataset", "in_channels", "input_size", "mean", "std"} <= set(meta)
    assert TrainConfig.from_dict(rec.config) == CFG

    ep = store.epochs([r.run_id])
    assert ep["epoch"].tolist() == [1, 2, 3]
    assert ep["wall_time"].tolist() == pytest.approx(ep["seconds"].cumsum().tolist())
    assert {"images_per_s", "test_acc", "train_loss"} <= set(ep.columns)

    matrix, names = store.confusion(r.run_id)
    assert matrix.shape == (10, 10) and matrix.sum() == 120 and names == list("0123456789")
    assert np.trace(matrix) / 120 == pytest.approx(r.test_acc)

    # The stored weights reproduce the stored accuracy.
    model, record = store.load_model(r.run_id)
    assert not model.training and record.run_id == r.run_id
    d = data.load("digits", train_size=300, test_size=120)
    with torch.inference_mode():
        pred = model(d.normalize(d.x_test)).argmax(1)
    assert float((pred == d.y_test).float().mean()) == pytest.approx(r.test_acc)


def test_unknown_run_ids_are_clear_errors():
    store = ResultsStore()
    for call in (store.run, store.confusion, store.load_model, store.delete):
        with pytest.raises(ValueError, match="No stored run with id 'nope'"):
            call("nope")


def test_checkpoints_load_with_weights_only_and_writes_leave_no_temp_files():
    r = _train()
    store = ResultsStore()
    state = torch.load(store.checkpoint_path(r.run_id), weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3 and "optimizer" in state
    assert sorted(p.name for p in store.checkpoint_dir.iterdir()) == [f"{r.run_id}.pt"]


def test_a_corrupt_checkpoint_of_a_finished_run_is_reported_and_retrained():
    first = _train()
    store = ResultsStore()
    store.checkpoint_path(first.run_id).write_bytes(b"\x00garbage" * 10)
    with pytest.warns(StoreWarning, match="does not match the stored checksum"):
        again = _train()
    assert not again.cached and again.status == "finished" and again.resumed_from == 0
    pd.testing.assert_frame_equal(first.history[METRICS], again.history[METRICS])
    assert store.load_model(first.run_id)[0] is not None


def test_a_corrupt_checkpoint_of_an_unfinished_run_restarts_it():
    r = _train(cancel=_after_epochs(1))
    assert r.status == "cancelled" and r.epochs_done == 1
    ResultsStore().checkpoint_path(r.run_id).write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.warns(StoreWarning, match="unreadable"):
        again = _train()
    assert again.status == "finished" and again.resumed_from == 0 and again.epochs_done == 3


def test_load_model_reports_a_damaged_checkpoint():
    r = _train()
    store = ResultsStore()
    store.checkpoint_path(r.run_id).write_bytes(b"not a checkpoint")
    with pytest.warns(StoreWarning), pytest.raises(ValueError, match="missing or unreadable"):
        store.load_model(r.run_id)


def test_a_damaged_row_is_reported_and_retrained():
    first = _train()
    store = ResultsStore()
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE runs SET config = '{not json' WHERE run_id = ?", (first.run_id,))
    assert store.runs()["status"].tolist() == ["finished"]  # listing still works
    with pytest.warns(StoreWarning, match="row does not parse"):
        again = _train()
    assert not again.cached and again.test_acc == first.test_acc


def test_a_file_that_is_not_a_database_is_set_aside_by_a_writer_only(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    store = ResultsStore(home)  # opening moves nothing; reading reports and moves nothing
    with pytest.raises(StoreDamaged, match="file is not a database.*cnncompare repair"):
        store.runs()
    assert not any(p.name.startswith("results.sqlite.damaged-") for p in home.iterdir())
    with pytest.warns(StoreWarning, match="0 run"):
        store.recover()
    assert store.runs().empty
    assert any(p.name.startswith("results.sqlite.damaged-") for p in home.iterdir())


def _after_epochs(n: int):
    """A cancel callable that turns true once ``n`` epochs are stored."""
    store = ResultsStore()

    def cancel() -> bool:
        runs = store.runs()
        return bool(len(runs)) and int(runs["epochs_done"].max()) >= n

    return cancel


# -- real processes ----------------------------------------------------------------------

TRAIN_ARGS = ["--model", "lenet", "--epochs", "3", "--train-size", "300", "--test-size", "120",
              "--device", "cpu", "--format", "json"]


def _spawn(home: Path, hold: Path | None = None, args=TRAIN_ARGS) -> subprocess.Popen:
    """``python -m cnncompare train`` in a real process; with ``hold``, it pauses after each
    epoch while that file exists (the trainer's test hook)."""
    env = {**os.environ, "CNNCOMPARE_HOME": str(home), "PYTHONPATH": str(REPO)}
    if hold is not None:
        env[TEST_HOLD_ENV] = str(hold)
    return subprocess.Popen([sys.executable, "-m", "cnncompare", "train", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.1)


def _epochs_stored(store: ResultsStore) -> int:
    runs = store.runs()
    return int(runs["epochs_done"].iloc[0]) if len(runs) else 0


def _held_after_first_epoch(home, tmp_path):
    """A training subprocess paused after its first stored epoch (while ``hold`` exists)."""
    hold = tmp_path / "hold"
    hold.touch()
    proc = _spawn(home, hold)
    store = ResultsStore(home)
    _wait_for(lambda: _epochs_stored(store) >= 1, proc)
    return proc, hold, store


def test_a_killed_run_resumes_from_epoch_two(cnncompare_home, tmp_path):
    proc, _, store = _held_after_first_epoch(cnncompare_home, tmp_path)
    proc.kill()  # SIGKILL: no cleanup runs in the trainer
    proc.wait(timeout=30)
    row = store.runs().iloc[0]
    assert (row.status, row.epochs_done) == ("unfinished", 1)  # its lock died with it

    events: list[dict] = []
    resumed = _train(progress=events.append)
    assert resumed.resumed_from == 1 and resumed.status == "finished"
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [2, 3]
    assert any("Resuming from epoch 2" in e.get("message", "") for e in events)
    fresh = _train(store=ResultsStore(cnncompare_home / "fresh"))
    pd.testing.assert_frame_equal(resumed.history[METRICS], fresh.history[METRICS])


def test_two_processes_on_one_configuration_train_it_once(cnncompare_home, tmp_path):
    first, hold, store = _held_after_first_epoch(cnncompare_home, tmp_path)  # paused
    second = _spawn(cnncompare_home)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(second.stderr), daemon=True)
    reader.start()
    _wait_for(lambda: any("waiting" in ln for ln in lines), second)
    hold.unlink()  # let the first one finish
    out1, err1 = first.communicate(timeout=120)
    out2 = second.stdout.read()
    second.wait(timeout=120)
    reader.join(timeout=10)
    assert first.returncode == 0 and second.returncode == 0, (err1, lines)
    a, b = json.loads(out1), json.loads(out2)
    assert a["run_id"] == b["run_id"] and a["test_acc"] == b["test_acc"]
    assert (a["cached"], b["cached"]) == (False, True)
    epoch_lines = [ln for ln in err1.splitlines() + lines if ln.startswith("epoch ")]
    assert len(epoch_lines) == 3  # every epoch trained exactly once, all by the first
    assert len(store.runs()) == 1 and store.epochs(a["run_id"])["epoch"].tolist() == [1, 2, 3]


def test_ctrl_c_stops_cleanly_and_keeps_finished_epochs(cnncompare_home, tmp_path):
    proc, _, store = _held_after_first_epoch(cnncompare_home, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: 1 finished epoch" in err
    summary = json.loads(out)
    assert summary["status"] == "cancelled" and summary["epochs_done"] == 1
    assert store.runs()["status"].tolist() == ["unfinished"]


# -- a store written by the previous version -----------------------------------------------

_V1_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL,
    status TEXT NOT NULL, epochs_done INTEGER NOT NULL DEFAULT 0, epochs INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, best_test_acc REAL,
    seconds REAL NOT NULL DEFAULT 0, params INTEGER, device TEXT, config TEXT NOT NULL,
    settings TEXT, canonical TEXT NOT NULL, model_config TEXT NOT NULL, data_meta TEXT,
    confusion TEXT, per_class_acc TEXT, checkpoint_sha256 TEXT, versions TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE epochs (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, train_acc REAL,
    test_loss REAL, test_acc REAL, seconds REAL, images_per_s REAL, lr REAL,
    PRIMARY KEY (run_id, epoch));
PRAGMA user_version = 1;
"""


def _old_store(home: Path, cfg: TrainConfig) -> dict[str, str]:
    """A results home as the previous version left it: schema 1, a finished bf16 run of
    ``cfg`` under its old id (no validation metrics, a format-1 checkpoint) and an
    unfinished float32 run."""
    from cnncompare.store import file_sha256

    home.mkdir(parents=True)
    (home / "checkpoints").mkdir()
    r = cfg.resolve(device="cpu")
    old_id = r.legacy_run_ids()[0]
    canonical = {"trainer": 1, "model": r.model_config.as_dict(), "model_version": 1,
                 "data": r.data.as_dict(),
                 "hparams": {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr",
                                                          "optimizer", "scheduler",
                                                          "weight_decay", "label_smoothing",
                                                          "seed")}}
    settings = {"batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer,
                "scheduler": cfg.scheduler, "weight_decay": 0.0, "label_smoothing": 0.0,
                "seed": 0, "train_size": 200, "test_size": 100, "input_size": 28,
                "in_channels": 1, "width": 1.0, "model_kwargs": "{}"}
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "test_loss": 0.9 / e,
                "test_acc": acc, "seconds": 0.5, "images_per_s": 400.0, "lr": 1e-3}
               for e, acc in ((1, 0.62), (2, 0.81))]
    torch.manual_seed(0)
    weights = r.model_config.build().state_dict()
    ckpt = home / "checkpoints" / f"{old_id}.pt"
    torch.save({"format": 1, "run_id": old_id, "epoch": 2, "canonical": canonical,
                "model": weights, "history": history}, ckpt)
    confusion = [[10 if i == j else 0 for j in range(10)] for i in range(10)]
    with sqlite3.connect(home / "results.sqlite") as conn:
        conn.executescript(_V1_SCHEMA)
        for run_id, status, device, done in ((old_id, "finished", "cpu (2 threads), amp bfloat16",
                                              2), ("0ld0ld0ld0ld0ld0", "unfinished",
                                                   "cpu (2 threads)", 1)):
            conn.execute(
                "INSERT INTO runs (run_id, model, dataset, status, epochs_done, epochs, "
                "train_loss, train_acc, test_loss, test_acc, best_test_acc, seconds, params, "
                "device, config, settings, canonical, model_config, data_meta, confusion, "
                "checkpoint_sha256, created_at, updated_at) VALUES "
                "(?, 'lenet', 'digits', ?, ?, 2, 0.5, 0.5, ?, ?, 0.81, 1.0, 61706, ?, ?, ?, "
                "?, ?, ?, ?, ?, '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')",
                (run_id, status, done, history[done - 1]["test_loss"],
                 history[done - 1]["test_acc"], device, json.dumps(cfg.as_dict()),
                 json.dumps(settings), json.dumps(canonical),
                 json.dumps(r.model_config.as_dict()),
                 json.dumps({"class_names": list("0123456789")}), json.dumps(confusion),
                 file_sha256(ckpt) if run_id == old_id else None))
            for h in history[:done]:
                conn.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (run_id, h["epoch"], h["train_loss"], h["train_acc"],
                              h["test_loss"], h["test_acc"], h["seconds"],
                              h["images_per_s"], h["lr"]))
    return {"finished": old_id, "unfinished": "0ld0ld0ld0ld0ld0"}


def test_a_store_of_the_previous_version_is_migrated_once_and_nothing_is_lost(tmp_path):
    from cnncompare.store import SELECTED_LAST_EPOCH

    home = tmp_path / "old-home"
    cfg = TrainConfig("lenet", epochs=2, train_size=200, test_size=100, amp="on")
    ids = _old_store(home, cfg)
    store = ResultsStore(home)
    runs = store.runs().set_index("run_id")
    assert sorted(runs.index) == sorted(ids.values())
    old = runs.loc[ids["finished"]]
    # precision from the device text each run recorded
    assert old["precision"] == "bfloat16"
    assert runs.loc[ids["unfinished"], "precision"] == "float32"
    # no validation split: the run reports its last epoch, and says so
    assert old["test_acc"] == old["final_test_acc"] == 0.81
    assert pd.isna(old["selected_epoch"]) and pd.isna(old["val_acc"])
    assert old["selected_by"] == SELECTED_LAST_EPOCH
    assert (old["augment"], old["val_size"], old["lr"]) == (False, 20, cfg.lr)
    assert "best_test_acc" not in runs.columns
    ep = store.epochs(ids["finished"])
    assert ep["test_acc"].tolist() == [0.62, 0.81] and ep["val_acc"].isna().all()
    # readable: the record, its confusion matrix and its weights
    rec = store.finished(ids["finished"])
    assert rec is not None and rec.precision == "bfloat16" and rec.selected_epoch is None
    model, _ = store.load_model(ids["finished"])
    assert sum(p.numel() for p in model.parameters()) == 61706
    assert store.confusion(ids["finished"])[0].trace() == 100
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        conn.execute("UPDATE runs SET precision = 'float16' WHERE run_id = ?",
                     (ids["finished"],))
    assert ResultsStore(home).run(ids["finished"]).precision == "float16"  # migrated once

    # The same configuration now trains anew (with a validation split), saying so; the
    # old run stays as it was.
    events: list[dict] = []
    new = train_or_load(cfg, device="cpu", store=ResultsStore(home), progress=events.append)
    assert not new.cached and new.run_id not in ids.values() and new.selected_epoch
    notes = [e["message"] for e in events if e["kind"] == "status"]
    assert any(ids["finished"] in m and "earlier version" in m for m in notes), notes
    assert ResultsStore(home).run(ids["finished"]).test_acc == 0.81
    assert len(ResultsStore(home).runs()) == 3
