"""Studies on Ray: a real local Ray cluster (2 CPUs, started once for this module and shut
down after it) trains a study's grid with the driver's store as the only store.

Checked here: the same run ids, accuracies, epochs and weights as the local executor;
runs already stored are not sent; a run that fails on its worker is reported and the others
are stored; a run stopped after epoch 1 resumes at epoch 2 on a worker from the checkpoint
the driver ships; the ``study`` command on Ray, then answered from the store locally; and,
without Ray, one error line saying how to install it. Ray starts in about 10 s here; the
module takes about a minute on 2 shared cores, most of it Ray's worker processes importing
torch.
"""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from cnncompare import ui
from cnncompare.cli import main
from cnncompare.executors import (
    INSTALL_HINT,
    RAY_ADDRESS_ENV,
    GridTally,
    RayExecutor,
    make_executor,
    ray_installed,
)
from cnncompare.store import ResultsStore
from cnncompare.studies import LocalExecutor, TrainOptions, run_grid, study_configs
from cnncompare.train_config import TrainConfig
from tests.conftest import REPO

needs_ray = pytest.mark.skipif(
    not ray_installed(), reason="Ray is not installed: pip install -r requirements-ray.txt")

TINY = {"epochs": 2, "train_size": 200, "test_size": 100}
"""Digits, 180 training images (20 held out for validation), 100 test images, 2 epochs."""


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray with 2 CPUs for this module; its workers keep their caches in a home of
    their own (they never see the driver's store)."""
    import ray

    worker_home = tmp_path_factory.mktemp("ray-worker-home")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"CNNCOMPARE_HOME": str(worker_home)}})
    try:
        yield ray
    finally:
        ray.shutdown()


def _grid():
    return study_configs(["lenet", "lenet5"], [0, 1], **TINY)


def _train_locally(configs, store, **kwargs):
    """The local executor on one thread: a Ray task with 1 CPU trains on one thread too,
    and the same thread count gives the same floating-point sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_grid(configs, store=store, options=TrainOptions(device="cpu"), **kwargs)
    finally:
        torch.set_num_threads(threads)


def _events(into: list):
    return lambda index, event: into.append((index, event))


@needs_ray
def test_ray_trains_the_grid_exactly_as_the_local_executor(ray_cluster, tmp_path):
    configs = _grid()
    local_store = ResultsStore(tmp_path / "local")
    local = _train_locally(configs, local_store)

    store = ResultsStore(tmp_path / "driver")
    executor = make_executor("ray")
    events: list = []
    results = run_grid(configs, executor=executor, store=store,
                       options=TrainOptions(device="cpu"), progress=_events(events))

    ids = [r.run_id for r in local]
    assert [r.run_id for r in results] == ids and len(set(ids)) == 4
    assert executor.sent == ids  # every run sent once
    assert [r.test_acc for r in results] == [r.test_acc for r in local]
    assert [r.status for r in results] == ["finished"] * 4
    assert not any(r.cached for r in results)
    assert sorted(store.runs()["run_id"]) == sorted(ids)  # exactly those 4 runs
    for run_id in ids:
        mine, theirs = store.finished(run_id), local_store.finished(run_id)
        assert mine is not None and mine.epochs_done == 2
        assert (mine.selected_epoch, mine.val_acc, mine.final_test_acc, mine.precision) == (
            theirs.selected_epoch, theirs.val_acc, theirs.final_test_acc, theirs.precision)
        a, b = store.epochs([run_id]), local_store.epochs([run_id])
        assert a[["epoch", "train_loss", "val_acc", "test_acc", "test_loss"]].equals(
            b[["epoch", "train_loss", "val_acc", "test_acc", "test_loss"]])
        weights = store.read_checkpoint(run_id)["selected"]["model"]
        local_weights = local_store.read_checkpoint(run_id)["selected"]["model"]
        assert all(torch.equal(weights[k], local_weights[k]) for k in local_weights)
    kinds = [e["kind"] for _, e in events]
    assert kinds.count("start") == 4 and kinds.count("result") == 4
    assert kinds.count("epoch") == 8  # every epoch reported as it finished

    again = make_executor("ray")
    events.clear()
    second = run_grid(configs, executor=again, store=store,
                      options=TrainOptions(device="cpu"), progress=_events(events))
    assert again.sent == []  # stored runs are not sent
    assert all(r.cached for r in second)
    assert [r.test_acc for r in second] == [r.test_acc for r in local]
    assert [e["kind"] for _, e in events].count("epoch") == 0


@needs_ray
def test_a_run_that_fails_on_its_worker_is_reported_and_the_others_are_stored(
        ray_cluster, tmp_path):
    good = study_configs(["lenet"], [0, 1], **TINY)
    # 448 px at batch 8192: the worker's memory check refuses it (about 150 GB) when the
    # run is about to train, after the driver has sent it.
    bad = TrainConfig("lenet", input_size=448, batch_size=8192, **TINY)
    configs = [good[0], bad, good[1]]
    store = ResultsStore(tmp_path / "driver")
    executor = make_executor("ray")
    events: list = []
    results = run_grid(configs, executor=executor, store=store,
                       options=TrainOptions(device="cpu"), progress=_events(events))

    assert len(executor.sent) == 3
    assert isinstance(results[1], ValueError) and "needs about" in str(results[1])
    failed = [(i, e["error"]) for i, e in events if e["kind"] == "failed"]
    assert len(failed) == 1 and failed[0][0] == 1
    assert failed[0][1].startswith("ValueError: Training lenet")
    assert [results[0].status, results[2].status] == ["finished", "finished"]
    assert sorted(store.runs()["run_id"]) == sorted([results[0].run_id, results[2].run_id])
    assert all(store.finished(r.run_id) is not None for r in (results[0], results[2]))


@needs_ray
def test_a_run_stopped_after_epoch_1_resumes_at_epoch_2_on_a_worker(ray_cluster, tmp_path):
    cfg = study_configs(["lenet"], [0], **TINY)[0]
    reference = _train_locally([cfg], ResultsStore(tmp_path / "reference"))[0]

    store = ResultsStore(tmp_path / "driver")
    stop = threading.Event()

    def stop_after_epoch_1(index, event):
        if event["kind"] == "epoch" and event["epoch"] == 1:
            stop.set()

    stopped = _train_locally([cfg], store, progress=stop_after_epoch_1, cancel=stop)[0]
    assert stopped.status == "cancelled"
    assert store.run(stopped.run_id).epochs_done == 1
    assert store.read_checkpoint(stopped.run_id)["epoch"] == 1

    executor = make_executor("ray")
    events: list = []
    result = run_grid([cfg], executor=executor, store=store,
                      options=TrainOptions(device="cpu"), progress=_events(events))[0]
    assert executor.sent == [reference.run_id]
    assert result.status == "finished" and result.resumed_from == 1
    messages = [e.get("message", "") for _, e in events if e["kind"] == "status"]
    assert "Resuming from epoch 2 of 2." in messages
    assert [e["epoch"] for _, e in events if e["kind"] == "epoch"] == [2]  # only epoch 2 ran
    assert result.test_acc == reference.test_acc
    assert store.epochs([result.run_id])["test_acc"].tolist() == \
        ResultsStore(tmp_path / "reference").epochs([result.run_id])["test_acc"].tolist()
    assert store.read_checkpoint(result.run_id)["epoch"] == 2


@needs_ray
def test_study_command_on_ray_then_answered_from_the_store_locally(ray_cluster, capsys):
    args = ["study", "--models", "lenet,lenet5", "--seeds", "0,1", "--epochs", "2",
            "--train-size", "200", "--test-size", "100", "--device", "cpu"]
    assert main([*args, "--executor", "ray"]) == 0
    out, err = capsys.readouterr()
    assert "progress: 4 of 4 runs done (0 stored before), 0 running, 0 failed." in err
    assert len(out.strip().splitlines()) == 3  # a header and a row per model
    assert main([*args, "--executor", "local"]) == 0
    out_local, err = capsys.readouterr()
    assert err.count("stored: test accuracy") == 4  # nothing trained
    assert out_local == out


@needs_ray
def test_the_train_page_trains_a_study_on_a_local_ray(ray_cluster, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).switch_page(
        "views/train.py").run()
    at.multiselect[0].set_value(["lenet"]).run()
    for label, value in (("Epochs", 1), ("Seeds", 2), ("Train images", 200),
                         ("Test images", 100)):
        next(w for w in at.number_input if w.label.startswith(label)).set_value(value)
    next(c for c in at.checkbox if c.label == "Start a local Ray").check().run()
    at.button(key="train").click().run()
    assert not at.exception

    job = ui.job_manager().latest()
    assert job is not None and job.join(240)
    snap = job.snapshot()
    assert snap.state == "done", snap
    executor = job._executor
    assert isinstance(executor, RayExecutor)
    assert sorted(executor.sent) == sorted(i.run_id for i in snap.items)  # both on Ray
    stored = ResultsStore().runs()
    assert sorted(stored["seed"]) == [0, 1] and set(stored["status"]) == {"finished"}
    at.run()
    assert "2 runs trained, 0 found stored, 0 running and 0 failed." in [
        c.value for c in at.caption]


def test_asking_for_ray_where_it_is_missing_gives_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert not ray_installed()
    code = main(["study", "--executor", "ray", "--models", "lenet", "--seeds", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: The ray executor needs Ray")
    assert INSTALL_HINT in err
    assert "pip install 'cnncompare[ray]'" in err and "requirements-ray.txt" in err


def test_executor_names_and_resources_are_checked(capsys):
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="cpus per run must be a whole number"):
        make_executor("ray", cpus_per_run=0)
    with pytest.raises(ValueError, match="gpus per run must be a number from 0 to 64"):
        make_executor("ray", gpus_per_run=-1)
    code = main(["study", "--models", "lenet", "--seeds", "1", "--cpus-per-run", "2"])
    assert code == 2 and "need --executor ray" in capsys.readouterr().err


def test_grid_tally_counts_runs_and_estimates_the_time_left():
    class Result:
        def __init__(self, cached=False):
            self.status, self.cached = "finished", cached

    tally = GridTally(5)
    assert tally.update(0, {"kind": "start"}, now=0.0)
    assert tally.update(0, {"kind": "result", "result": Result(cached=True)}, now=0.0)
    assert tally.update(1, {"kind": "start"}, now=0.0)
    assert tally.update(2, {"kind": "start"}, now=0.0)
    assert not tally.update(1, {"kind": "epoch"}, now=5.0)  # counts unchanged
    assert tally.line() == "1 of 5 runs done (1 stored before), 2 running, 0 failed."
    assert tally.update(1, {"kind": "result", "result": Result()}, now=10.0)
    assert tally.update(2, {"kind": "failed", "error": "boom"}, now=10.0)
    # 2 runs left at 10 s each, 2 at once -> 10 s
    assert tally.seconds_left() == pytest.approx(10.0)
    assert tally.line().startswith("2 of 5 runs done (1 stored before), 0 running, 1 failed;")
    assert tally.line().endswith("left.")
