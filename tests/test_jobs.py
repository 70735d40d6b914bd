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

    def key(self, data_root=None, download=False, **kw) -> str:
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


class SteppedTrainer(FakeTrainer):
    """Waits at the gate before every batch and records the job's fraction after it."""

    def __init__(self, job_ref, **kw):
        super().__init__(**kw)
        self.job_ref = job_ref
        self.seen: list[float] = []

    def __call__(self, cfg, *, progress, cancel, **kw):
        def spy(event):
            progress(event)
            self.seen.append(self.job_ref[0].snapshot().fraction)

        return super().__call__(cfg, progress=spy, cancel=cancel, **kw)


def test_the_job_bar_only_moves_forward_and_counts_every_networks_epochs():
    ref: list = []
    trainer = SteppedTrainer(ref, batches=2)
    manager = JobManager(trainer)
    trainer.gate.clear()
    job = manager.start([FakeConfig("lenet", epochs=3), FakeConfig("vgg11", epochs=1)])
    ref.append(job)
    snap = job.snapshot()
    assert [i.epochs for i in snap.items] == [3, 1]  # known before the second one starts
    assert snap.fraction == 0.0 and snap.seconds_left is None  # no speed measured yet
    trainer.gate.set()
    assert job.join(10)
    assert trainer.seen == sorted(trainer.seen)  # never backwards
    # lenet's 3 epochs (2 batch events and 1 epoch event each) are 3 of the 4 epochs,
    # not "item 1 of 2 done"
    assert len(trainer.seen) == 3 * 3 + 3 and trainer.seen[8] == pytest.approx(0.75)
    final = job.snapshot()
    assert final.fraction == 1.0 and final.seconds_left == 0.0


def test_weights_move_the_bar_by_cost():
    ref: list = []
    trainer = SteppedTrainer(ref, batches=1)
    trainer.gate.clear()
    job = JobManager(trainer).start([FakeConfig("lenet", epochs=1), FakeConfig("vgg11", epochs=1)],
                                    weights=[1.0, 3.0])
    ref.append(job)
    trainer.gate.set()
    assert job.join(10)
    assert trainer.seen[1] == pytest.approx(0.25)  # lenet done: 1 of 4 weighted epochs


def test_time_left_is_estimated_once_a_batch_is_done(monkeypatch):
    from cnncompare import jobs

    clock = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    state = jobs.JobState("j", [jobs.ItemState("a", "lenet", "r1", epochs=2, weight=1.0),
                                jobs.ItemState("b", "vgg11", "r2", epochs=1, weight=2.0)])
    a = state.items[0]
    a.status, a.started, a.epoch = "running", 100.0, 1
    state.update(100.0)
    assert state.seconds_left is None
    a.done_epochs = 0.5  # half an epoch in 10 s
    state.update(110.0)
    # a: 1.5 epochs left at 0.05 epochs/s = 30 s; b: 2 weighted epochs at 20 s each = 40 s
    assert state.seconds_left == pytest.approx(70.0)
    assert state.fraction == pytest.approx(0.5 / 4)


def test_only_the_session_that_started_a_job_cancels_it(monkeypatch):
    trainer = FakeTrainer()
    trainer.gate.clear()
    job = JobManager(trainer).start([FakeConfig("lenet")], owner="alice")
    assert not job.may_cancel("bob") and job.cancel("bob") is False
    assert not job.cancel("bob", local=True)  # the local override is off by default
    monkeypatch.setenv("CNNCOMPARE_LOCAL_CANCELS_ANY", "1")
    assert job.may_cancel("bob", local=True) and not job.may_cancel("bob", local=False)
    assert job.cancel("alice") is True
    trainer.gate.set()
    assert job.join(10) and job.snapshot().state == "cancelled"


def test_finished_jobs_are_pruned_from_memory():
    manager = JobManager(FakeTrainer(batches=1), keep_finished=2)
    jobs = []
    for name in ("a", "b", "c", "d"):
        jobs.append(manager.start([FakeConfig(name, epochs=1)]))
        assert jobs[-1].join(10)
    kept = [j for j in jobs if manager.get(j.job_id) is not None]
    assert kept == jobs[1:]  # the two newest finished ones, and the one started last
    assert manager.latest() is jobs[-1]


def test_a_job_runs_its_configs_through_the_executor_it_is_given():
    """The job trains through a study executor (the seam a remote executor plugs into):
    it hands over every config with the job's options and reads the results back."""

    class RecordingExecutor:
        def __init__(self):
            self.seen = None

        def run(self, configs, *, store, options, progress, cancel):
            self.seen = ([c.model for c in configs], options.device, options.data_root)
            out = []
            for i, cfg in enumerate(configs):
                progress(i, {"kind": "start"})
                progress(i, {"kind": "epoch", "epoch": 1, "epochs": 1, "test_acc": 0.9,
                             "batch": 1, "batches": 1})
                result = FakeResult(cfg.key(), 0.9)
                progress(i, {"kind": "result", "result": result})
                out.append(result)
            return out

    executor = RecordingExecutor()
    job = JobManager().start([FakeConfig("lenet", epochs=1), FakeConfig("vgg11", epochs=1)],
                             executor=executor, device="cpu", data_root="/data")
    assert job.join(10)
    assert executor.seen == (["lenet", "vgg11"], "cpu", "/data")
    snap = job.snapshot()
    assert snap.state == "done" and [i.status for i in snap.items] == ["done", "done"]
    assert [i.test_acc for i in snap.items] == [0.9, 0.9] and snap.fraction == 1.0
