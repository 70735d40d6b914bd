"""Background training jobs: progress snapshots, cancel, failures, one job at a time."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from cnncompare.jobs import JobManager


@dataclass(frozen=True)
class FakeConfig:
    model: str
    epochs: int = 3

    def key(self, data_root=None) -> str:
        return f"key-{self.model}"


@dataclass
class FakeResult:
    run_id: str
    test_acc: float
    status: str = "done"
    cached: bool = False


class FakeTrainer:
    """Reports batches and epochs like the real trainer; can be held at a gate."""

    def __init__(self, batches: int = 4, fail_on: str | None = None):
        self.batches = batches
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[str] = []

    def __call__(self, cfg, *, progress, cancel, **kw):
        self.calls.append(cfg.model)
        if cfg.model == self.fail_on:
            raise ValueError("boom")
        for epoch in range(1, cfg.epochs + 1):
            for b in range(1, self.batches + 1):
                self.gate.wait(5)
                if cancel.is_set():
                    return FakeResult(cfg.key(), 0.0, status="cancelled")
                progress({"kind": "batch", "epoch": epoch, "epochs": cfg.epochs, "batch": b,
                          "batches": self.batches})
            progress({"kind": "epoch", "epoch": epoch, "epochs": cfg.epochs,
                      "test_acc": 0.5 + 0.1 * epoch, "batch": self.batches,
                      "batches": self.batches})
        return FakeResult(cfg.key(), 0.5 + 0.1 * cfg.epochs)


def test_job_trains_every_config_and_records_history():
    trainer = FakeTrainer()
    job = JobManager(trainer).start([FakeConfig("lenet"), FakeConfig("vgg11", epochs=2)])
    assert job.join(10)
    snap = job.snapshot()
    assert snap.state == "done" and snap.fraction == 1.0
    assert [i.status for i in snap.items] == ["done", "done"]
    assert [(h["model"], h["epoch"]) for h in snap.history] == [
        ("lenet", 1), ("lenet", 2), ("lenet", 3), ("vgg11", 1), ("vgg11", 2)]
    assert snap.items[0].test_acc == pytest.approx(0.8)


def test_progress_fraction_moves_and_cancel_stops_after_the_batch():
    trainer = FakeTrainer()
    trainer.gate.clear()
    manager = JobManager(trainer)
    job = manager.start([FakeConfig("lenet"), FakeConfig("alexnet")])
    assert job.snapshot().fraction == 0.0
    assert manager.active() is job
    with pytest.raises(RuntimeError, match="already running"):
        manager.start([FakeConfig("nin")])
    job.cancel()
    trainer.gate.set()
    assert job.join(10)
    snap = job.snapshot()
    assert snap.state == "cancelled"
    assert [i.status for i in snap.items] == ["cancelled", "cancelled"]
    assert trainer.calls == ["lenet"]  # the second model never started
    assert manager.active() is None and manager.latest() is job


def test_a_failing_model_is_reported_and_the_rest_still_train():
    trainer = FakeTrainer(fail_on="alexnet")
    job = JobManager(trainer).start([FakeConfig("alexnet"), FakeConfig("lenet", epochs=1)])
    assert job.join(10)
    snap = job.snapshot()
    assert snap.state == "failed"
    assert snap.items[0].status == "failed" and "boom" in snap.items[0].error
    assert snap.items[1].status == "done"


def test_nothing_to_train_is_a_clear_error():
    with pytest.raises(ValueError, match="already stored"):
        JobManager(FakeTrainer()).start([])
