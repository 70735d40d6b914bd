"""What takes CPU from a training job in the app: background work waits, no full GC per rerun."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import tomllib

from cnncompare import jobs
from tests.test_jobs import FakeConfig, FakeTrainer

REPO = Path(__file__).resolve().parents[1]


def test_training_running_is_true_exactly_while_a_job_trains():
    trainer = FakeTrainer()
    trainer.gate.clear()
    job = jobs.JobManager(trainer).start([FakeConfig("lenet", epochs=1)])
    assert jobs.training_running()
    assert not jobs.wait_while_training(timeout=0)  # still training: the wait gives up
    trainer.gate.set()
    assert jobs.wait_while_training(timeout=10)
    assert job.join(10) and not jobs.training_running()
    assert job.snapshot().state == "done"


def test_training_running_ends_when_the_job_fails():
    job = jobs.JobManager(FakeTrainer(fail_on="lenet")).start([FakeConfig("lenet")])
    assert job.join(10)
    assert job.snapshot().state == "failed" and not jobs.training_running()


def test_cost_count_waits_while_a_job_trains_then_finishes():
    from cnncompare import profiling

    trainer = FakeTrainer()
    trainer.gate.clear()
    job = jobs.JobManager(trainer).start([FakeConfig("lenet", epochs=1)])
    warmed = []
    costs = profiling.BackgroundCosts([profiling.as_config("lenet")],
                                      then=lambda: warmed.append(jobs.training_running()))
    assert costs.wait_paused(timeout=30)  # waits before counting its first network
    assert costs.paused() and costs.results() == {} and not costs.done() and warmed == []
    trainer.gate.set()
    assert job.join(10)
    assert costs.join(timeout=60)
    assert costs.results() == {"lenet": profiling.forward_costs("lenet")}
    assert costs.pauses == 1 and not costs.paused()
    assert warmed == [False]  # the warm-up ran after the job, not beside it


def test_cost_count_does_not_wait_without_a_job():
    from cnncompare import profiling

    costs = profiling.BackgroundCosts([profiling.as_config("lenet")], then=lambda: None)
    assert costs.join(timeout=60)
    assert costs.pauses == 0 and costs.errors() == {} and list(costs.results()) == ["lenet"]


def _full_collections_when_a_script_run_ends(post_script_gc: bool) -> int:
    """Generation-2 collections while Streamlit's own ScriptRunner closes a script run
    (the step every rerun of a page or a fragment ends with; AppTest's runner skips it)."""
    import threading
    from types import SimpleNamespace

    from streamlit import config
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner, ScriptRunnerEvent

    seen = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    runner = SimpleNamespace(_join_wake_lock=threading.Lock(), _join_wake_coordinator=None,
                             on_event=SimpleNamespace(send=lambda *a, **k: None))
    ctx = SimpleNamespace(has_script_started=False)  # nothing of a real session to clean
    before = config.get_option("runner.postScriptGC")
    config.set_option("runner.postScriptGC", post_script_gc)
    automatic = gc.isenabled()
    gc.disable()  # only explicit collections count
    gc.callbacks.append(count)
    try:
        ScriptRunner._on_script_finished(runner, ctx,
                                         ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS,
                                         True, None)
    finally:
        gc.callbacks.remove(count)
        if automatic:
            gc.enable()
        config.set_option("runner.postScriptGC", before)
    return len(seen)


def test_the_project_config_turns_off_streamlits_full_gc_after_each_run():
    """Every rerun of the Train page's progress (every few seconds while a job runs) would
    otherwise hold the GIL for a full collection, stalling the training thread."""
    import subprocess
    import sys

    # Read as `streamlit run` reads it: the .streamlit/config.toml of the working folder.
    read = subprocess.run(
        [sys.executable, "-c", "from streamlit import config; "
         "config.get_config_options(force_reparse=True); "
         "print(config.get_option('runner.postScriptGC'))"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "False"
    assert tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())[
        "runner"]["postScriptGC"] is False
    assert _full_collections_when_a_script_run_ends(False) == 0
    # Streamlit's default collects once per run: the check above can fail.
    assert _full_collections_when_a_script_run_ends(True) == 1


@pytest.fixture(autouse=True)
def _no_job_left_training():
    yield
    assert jobs.wait_while_training(timeout=10), "a test left a job training"
