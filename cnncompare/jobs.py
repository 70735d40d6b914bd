"""Training jobs that outlive a page: a background thread per job, progress to poll.

The Train page must survive a reload and a click on another widget while training runs,
so training does not run in the page's script. A :class:`JobManager` (one per server,
held by ``st.cache_resource``) starts a :class:`TrainJob` thread that trains a list of
configurations one after another; the page polls :meth:`TrainJob.snapshot` to draw the
progress bars and the live curve, and :meth:`TrainJob.cancel` stops it after the batch in
flight. Finished epochs are already in the results store, so nothing is lost.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TrainFn = Callable[..., Any]


@dataclass
class ItemState:
    """The progress of one configuration inside a job."""

    label: str
    model: str
    run_id: str
    status: str = "queued"  # queued | running | done | cached | cancelled | failed
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    test_acc: float | None = None
    error: str | None = None


@dataclass
class JobState:
    job_id: str
    items: list[ItemState]
    state: str = "running"  # running | done | cancelled | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1]: finished epochs plus the epoch in flight."""
        total = sum(max(i.epochs, 1) for i in self.items)
        done = 0.0
        for i in self.items:
            if i.status in ("done", "cached"):
                done += max(i.epochs, 1)
            elif i.epochs:
                within = i.batch / i.batches if i.batches else 0.0
                done += min(i.epoch - 1 + within, i.epochs) if i.epoch else 0.0
        return min(done / total, 1.0) if total else 1.0


class TrainJob:
    """Trains ``configs`` in order on a daemon thread; thread-safe snapshots of progress."""

    def __init__(self, configs: Sequence[Any], labels: Sequence[str], train_fn: TrainFn,
                 **train_kwargs: Any):
        self._configs = list(configs)
        self._train_fn = train_fn
        self._kwargs = train_kwargs
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.state = JobState(
            job_id=uuid.uuid4().hex[:12],
            items=[ItemState(label=lab, model=c.model, run_id=c.key(train_kwargs.get("data_root")))
                   for c, lab in zip(configs, labels, strict=True)],
        )
        self._thread = threading.Thread(target=self._run, name=f"train-{self.state.job_id}",
                                        daemon=True)

    @property
    def job_id(self) -> str:
        return self.state.job_id

    def start(self) -> TrainJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop after the batch in flight; finished epochs stay stored."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> JobState:
        """A consistent copy of the job's state, safe to read from another thread."""
        with self._lock:
            return copy.deepcopy(self.state)

    def _on_progress(self, index: int, event: dict[str, Any]) -> None:
        with self._lock:
            item = self.state.items[index]
            item.epochs = int(event.get("epochs", item.epochs) or 0)
            item.epoch = int(event.get("epoch", item.epoch) or 0)
            item.batch = int(event.get("batch", item.batch) or 0)
            item.batches = int(event.get("batches", item.batches) or 0)
            if event.get("kind") == "epoch":
                item.test_acc = event.get("test_acc", item.test_acc)
                row = {k: v for k, v in event.items() if k not in ("kind", "batch", "batches")}
                row.update(label=item.label, model=item.model, run_id=item.run_id)
                self.state.history.append(row)

    def _run(self) -> None:
        final = "done"
        for index, cfg in enumerate(self._configs):
            with self._lock:
                item = self.state.items[index]
                if self._cancel.is_set():
                    item.status, final = "cancelled", "cancelled"
                    continue
                item.status, item.epochs = "running", int(getattr(cfg, "epochs", 0) or 0)
            try:
                result = self._train_fn(
                    cfg, progress=lambda ev, i=index: self._on_progress(i, ev),
                    cancel=self._cancel, **self._kwargs)
            except Exception as exc:  # shown on the page; the next model still trains
                with self._lock:
                    item.status, item.error = "failed", f"{type(exc).__name__}: {exc}"
                    final = "failed"
                traceback.print_exc()
                continue
            with self._lock:
                status = getattr(result, "status", "done")
                if getattr(result, "cached", False):
                    status = "cached"
                item.status = status if status in ("done", "cached", "cancelled") else "done"
                item.test_acc = getattr(result, "test_acc", item.test_acc)
                if item.status == "cancelled":
                    final = "cancelled"
        with self._lock:
            if self._cancel.is_set() and final == "done":
                final = "cancelled"
            self.state.state, self.state.finished = final, time.time()


class JobManager:
    """The server's training jobs. At most one runs at a time, so two sessions asking for
    training share the CPU fairly: a second request while one runs is refused with a
    clear message (the page then shows the running job instead)."""

    def __init__(self, train_fn: TrainFn | None = None):
        self._train_fn = train_fn
        self._jobs: dict[str, TrainJob] = {}
        self._lock = threading.Lock()

    def _fn(self) -> TrainFn:
        if self._train_fn is None:
            from cnncompare.training import train_or_load  # torch loads on first use only

            self._train_fn = train_or_load
        return self._train_fn

    def active(self) -> TrainJob | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.running), None)

    def latest(self) -> TrainJob | None:
        with self._lock:
            return next(reversed(self._jobs.values()), None) if self._jobs else None

    def get(self, job_id: str) -> TrainJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, configs: Sequence[Any], labels: Sequence[str] | None = None,
              **train_kwargs: Any) -> TrainJob:
        if not configs:
            raise ValueError("Nothing to train: every chosen run is already stored.")
        with self._lock:
            if any(j.running for j in self._jobs.values()):
                raise RuntimeError("A training job is already running; wait for it or cancel it.")
            labels = list(labels) if labels is not None else [c.model for c in configs]
            job = TrainJob(configs, labels, self._fn(), **train_kwargs)
            self._jobs[job.job_id] = job
            return job.start()
