"""Training jobs that outlive a page: a background thread per job, progress to poll.

The Train page must survive a reload and a click on another widget while training runs,
so training does not run in the page's script. A :class:`JobManager` (one per server,
held by ``st.cache_resource``) starts a :class:`TrainJob` thread that trains a study's
missing runs through :func:`cnncompare.studies.run_grid` (in this process, one after
another, unless another executor is given); the page polls :meth:`TrainJob.snapshot` to draw the
progress bars and the live curve, and :meth:`TrainJob.cancel` stops it after the batch in
flight. Finished epochs are already in the results store, so nothing is lost.

Only the session that started a job may cancel it (others see it running); the job's
progress only moves forward and comes with an estimate of the time left, from the speed
measured so far.

Background work that can wait (the Overview's cost count and the warm-up after it) calls
:func:`wait_while_training` between its steps: while a job trains, it takes neither a
core nor the GIL from the training thread.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TrainFn = Callable[..., Any]

KEEP_FINISHED = 4
"""Finished jobs a server keeps in memory, so a reloaded page can still show its outcome."""

LOCAL_CANCEL_ENV = "CNNCOMPARE_LOCAL_CANCELS_ANY"
"""Set to 1 to let a visitor at the server's own machine cancel any session's job."""

_training = threading.Condition()
_training_threads = 0  # TrainJob threads of this process that have not finished yet


def training_running() -> bool:
    """Whether a :class:`TrainJob` of this process is training now."""
    with _training:
        return _training_threads > 0


def wait_while_training(timeout: float | None = None) -> bool:
    """Block while a :class:`TrainJob` of this process trains.

    Background work that can wait calls this between its steps, so that it takes neither a
    core nor the GIL from a training thread (a Python-heavy thread beside it slows every
    step: the training thread waits for the GIL between its operators). Returns True
    once no job trains, False when ``timeout`` seconds passed first.
    """
    with _training:
        return _training.wait_for(lambda: _training_threads == 0, timeout)


def _count_training(change: int) -> None:
    global _training_threads
    with _training:
        _training_threads += change
        _training.notify_all()


@dataclass
class ItemState:
    """The progress of one configuration inside a job.

    ``weight`` is the relative cost of one of its epochs (the caller's estimate, e.g.
    training FLOPs x images; 1.0 when unknown): the job's bar and time left weigh the
    networks by it, so a slow network's epoch moves the bar more than a fast one's.
    """

    label: str
    model: str
    run_id: str
    epochs: int = 0
    weight: float = 1.0
    status: str = "queued"  # queued | running | done | cached | cancelled | failed
    epoch: int = 0
    batch: int = 0
    batches: int = 0
    test_acc: float | None = None
    error: str | None = None
    started: float | None = None  # time.monotonic() when training began
    spent: float = 0.0  # seconds it trained, once it has stopped
    done_epochs: float = 0.0  # finished epochs plus the part of the one in flight

    @property
    def complete(self) -> bool:
        return self.status in ("done", "cached", "failed")

    @property
    def fraction(self) -> float:
        """This item's own progress in [0, 1] (never backwards)."""
        if self.complete:
            return 1.0
        return min(self.done_epochs / self.epochs, 1.0) if self.epochs else 0.0

    def seconds_left(self, now: float) -> float | None:
        """Time left at this item's measured speed; None before its first batch."""
        if self.status != "running" or self.started is None or self.done_epochs <= 0:
            return None
        rate = self.done_epochs / max(now - self.started, 1e-9)  # epochs per second
        return max(self.epochs - self.done_epochs, 0.0) / rate


@dataclass
class JobState:
    job_id: str
    items: list[ItemState]
    owner: str | None = None  # the session that started the job
    state: str = "running"  # running | done | cancelled | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    fraction: float = 0.0  # the job's progress in [0, 1]; only ever grows
    seconds_left: float | None = None  # None until a speed has been measured

    def update(self, now: float) -> None:
        """Recompute :attr:`fraction` (forward only) and :attr:`seconds_left`.

        The fraction is the weighted share of epochs done, every item's epochs known from
        the start (so the bar never drops when the next network starts). Time left is the
        running item's own estimate plus the queued items' weighted epochs at the
        speed measured so far in this job (cached runs take no time and do not count).
        """
        total = sum(i.epochs * i.weight for i in self.items)
        done = sum(i.fraction * i.epochs * i.weight for i in self.items)
        if total:
            self.fraction = max(self.fraction, min(done / total, 1.0))
        elif all(i.complete for i in self.items):
            self.fraction = 1.0
        trained = [i for i in self.items if i.started is not None and i.done_epochs > 0]
        work = sum(i.done_epochs * i.weight for i in trained)
        spent = sum(now - i.started for i in trained if i.status == "running")
        spent += sum(i.spent for i in trained if i.status != "running")
        if self.state != "running":
            self.seconds_left = 0.0 if self.state == "done" else None
            return
        if work <= 0:
            self.seconds_left = None
            return
        per_unit = spent / work
        left = 0.0
        for i in self.items:
            if i.status == "running":
                own = i.seconds_left(now)
                left += own if own is not None else i.epochs * i.weight * per_unit
            elif i.status == "queued":
                left += i.epochs * i.weight * per_unit
        # Runs that train at once (the Ray executor) share the time left between them.
        self.seconds_left = left / max(1, sum(i.status == "running" for i in self.items))


class TrainJob:
    """Trains ``configs`` on a daemon thread through a study executor
    (:func:`cnncompare.studies.run_grid`; by default in this process, one run after
    another); thread-safe snapshots of progress.

    ``weights`` (one per config) are the relative costs of one epoch, see
    :class:`ItemState`; ``owner`` names the session that started the job (see
    :meth:`may_cancel`); ``run_ids`` (one per config) are the keys the caller already
    computed (else each config's ``key`` is asked). ``options`` (device, data root,
    download, allowed roots) say how and where they train.
    """

    def __init__(self, configs: Sequence[Any], labels: Sequence[str], train_fn: TrainFn | None,
                 *, weights: Sequence[float] | None = None, owner: str | None = None,
                 run_ids: Sequence[str] | None = None, executor: Any = None,
                 **options: Any):
        from cnncompare.studies import LocalExecutor, TrainOptions

        self._configs = list(configs)
        self._executor = executor or LocalExecutor(train_fn)
        if options.get("allowed_roots") is not None:
            options["allowed_roots"] = tuple(str(r) for r in options["allowed_roots"])
        self._options = TrainOptions(**options)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        weights = list(weights) if weights is not None else [1.0] * len(self._configs)
        if run_ids is None:
            run_ids = [c.key(self._options.data_root, self._options.download,
                             device=self._options.device,
                             allowed_roots=self._options.allowed_roots)
                       for c in self._configs]
        self.state = JobState(
            job_id=uuid.uuid4().hex[:12], owner=owner,
            items=[ItemState(label=lab, model=c.model, run_id=rid,
                             epochs=int(getattr(c, "epochs", 0) or 0),
                             weight=float(w) if w and w > 0 else 1.0)
                   for c, lab, w, rid in zip(self._configs, labels, weights, run_ids,
                                             strict=True)],
        )
        self._thread = threading.Thread(target=self._run, name=f"train-{self.state.job_id}",
                                        daemon=True)

    @property
    def job_id(self) -> str:
        return self.state.job_id

    @property
    def owner(self) -> str | None:
        return self.state.owner

    def start(self) -> TrainJob:
        _count_training(+1)  # before the thread runs: training_running() is True at once
        try:
            self._thread.start()
        except BaseException:
            _count_training(-1)
            raise
        return self

    def may_cancel(self, session: str | None, local: bool = False) -> bool:
        """Whether ``session`` may stop this job: the session that started it may; so may
        a visitor at the server's own machine (``local``) when the server was started with
        ``CNNCOMPARE_LOCAL_CANCELS_ANY=1``."""
        if self.owner is None or session == self.owner:
            return True
        return local and os.environ.get(LOCAL_CANCEL_ENV) == "1"

    def cancel(self, session: str | None = None, local: bool = False) -> bool:
        """Ask the job to stop after the batch in flight (finished epochs stay stored).

        Returns False, and changes nothing, when ``session`` may not cancel it.
        """
        if not self.may_cancel(session, local):
            return False
        self._cancel.set()
        return True

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> JobState:
        """A consistent copy of the job's state, safe to read from another thread."""
        with self._lock:
            self.state.update(time.monotonic())
            return copy.deepcopy(self.state)

    def _on_progress(self, index: int, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind in ("start", "failed", "result"):
            self._on_item(index, event)
            return
        with self._lock:
            item = self.state.items[index]
            item.epochs = int(event.get("epochs") or item.epochs)
            item.epoch = int(event.get("epoch", item.epoch) or 0)
            item.batch = int(event.get("batch", item.batch) or 0)
            item.batches = int(event.get("batches", item.batches) or 0)
            if item.epoch and event.get("kind") in ("batch", "epoch"):
                within = item.batch / item.batches if item.batches else 0.0
                item.done_epochs = max(item.done_epochs, item.epoch - 1 + within)
            elif event.get("kind") == "status" and item.epoch:  # resuming: epochs already done
                item.done_epochs = max(item.done_epochs, float(item.epoch))
            if event.get("kind") == "epoch":
                item.test_acc = event.get("test_acc", item.test_acc)
                row = {k: v for k, v in event.items() if k not in ("kind", "batch", "batches")}
                row.update(label=item.label, model=item.model, run_id=item.run_id)
                self.state.history.append(row)
            self.state.update(time.monotonic())

    def _on_item(self, index: int, event: dict[str, Any]) -> None:
        """A run starts, fails or hands back its result (the executor's own events)."""
        with self._lock:
            item = self.state.items[index]
            kind = event["kind"]
            if kind == "start":
                item.status, item.started = "running", time.monotonic()
            elif kind == "failed":
                error = event.get("error")  # a marked Text stays one: translated when shown
                item.error = error if isinstance(error, str) else str(error)
                self._finish_item(item, "failed")
            else:
                result = event.get("result")
                status = getattr(result, "status", "done")
                if getattr(result, "cached", False):
                    status = "cached"
                    item.started = None  # took no training time: not a speed sample
                item.test_acc = getattr(result, "test_acc", item.test_acc)
                self._finish_item(item, status if status in ("cached", "cancelled") else "done")
            self.state.update(time.monotonic())

    def _finish_item(self, item: ItemState, status: str) -> None:
        item.status = status
        if item.started is not None:
            item.spent = time.monotonic() - item.started
        self.state.update(time.monotonic())

    def _run(self) -> None:
        try:
            self._train()
        finally:
            _count_training(-1)

    def _train(self) -> None:
        from cnncompare.studies import run_grid

        try:
            run_grid(self._configs, executor=self._executor, options=self._options,
                     progress=self._on_progress, cancel=self._cancel)
        except Exception as exc:  # noqa: BLE001 - shown on the page, never lost in a thread
            traceback.print_exc()
            with self._lock:
                for item in self.state.items:
                    if not item.complete:
                        item.error = f"{type(exc).__name__}: {exc}"
                        self._finish_item(item, "failed")
        with self._lock:
            for item in self.state.items:
                if item.status in ("queued", "running"):  # never started: cancelled first
                    self._finish_item(item, "cancelled")
            states = {i.status for i in self.state.items}
            if "failed" in states:
                final = "failed"
            elif self._cancel.is_set() or "cancelled" in states:
                final = "cancelled"
            else:
                final = "done"
            self.state.state, self.state.finished = final, time.time()
            self.state.update(time.monotonic())


class JobManager:
    """The server's training jobs. At most one runs at a time, so two sessions asking for
    training share the CPU fairly: a second request while one runs is refused with a
    clear message (the page then shows the running job instead)."""

    def __init__(self, train_fn: TrainFn | None = None, keep_finished: int = KEEP_FINISHED):
        self._train_fn = train_fn
        self._jobs: dict[str, TrainJob] = {}
        self._lock = threading.Lock()
        self._keep = keep_finished

    def active(self) -> TrainJob | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.running), None)

    def latest(self) -> TrainJob | None:
        with self._lock:
            return next(reversed(self._jobs.values()), None) if self._jobs else None

    def get(self, job_id: str) -> TrainJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, configs: Sequence[Any], labels: Sequence[str] | None = None, *,
              weights: Sequence[float] | None = None, owner: str | None = None,
              **train_kwargs: Any) -> TrainJob:
        """Start training ``configs`` (a study's missing runs) for session ``owner``; see
        :class:`TrainJob` for the keyword arguments."""
        if not configs:
            raise ValueError("Nothing to train: every chosen run is already stored.")
        with self._lock:
            if any(j.running for j in self._jobs.values()):
                raise RuntimeError("A training job is already running; wait for it or cancel it.")
            labels = list(labels) if labels is not None else [c.model for c in configs]
            job = TrainJob(configs, labels, self._train_fn, weights=weights, owner=owner,
                           **train_kwargs)
            self._prune()
            self._jobs[job.job_id] = job
            return job.start()

    def _prune(self) -> None:
        """Forget all but the newest :data:`KEEP_FINISHED` finished jobs (their epochs are
        in the results store; only their progress snapshots go)."""
        finished = [k for k, j in self._jobs.items() if not j.running]
        for key in finished[:max(len(finished) - self._keep, 0)]:
            del self._jobs[key]
