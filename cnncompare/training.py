"""The trainer: one configuration in, a stored, comparable run out, never trained twice.

:func:`train_or_load` is the one entry point. It resolves a
:class:`~cnncompare.train_config.TrainConfig` to its canonical form and key (the precision
the device trains in included), returns a finished run from the store at once, resumes an
unfinished one from its last finished epoch, or trains from scratch, and it makes two
processes asking for the same configuration train it once (a file lock per run).

Every epoch is evaluated on the validation split (held out of the training images) and
on the test split, and both are stored. The accuracy a run reports is the test accuracy
at the epoch with the best validation accuracy (``selected_epoch``); that epoch's weights
are kept beside the last epoch's, so the stored model is the one whose accuracy is shown.
The last epoch's test accuracy stays beside it (``final_test_acc``).

The loop is built for small data on a CPU: the whole dataset sits in memory as one
normalised tensor on the device; batches are taken by indexing it with a seeded
permutation (no ``DataLoader``, no per-sample decoding) and, with ``augment``, transformed
as a batch on the device (:mod:`cnncompare.augment`); gradients are reset with
``set_to_none``; evaluation runs under ``torch.inference_mode`` in large batches;
convolutions run in channels-last layout; the optimizers are the fused ones; the learning
rate follows its schedule step by step. How the network runs (device, mixed precision,
layout) is :mod:`cnncompare.runtime`'s choice. Evaluation is always float32, so a stored
accuracy is what the stored weights give.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from filelock import Timeout
from torch import nn

from cnncompare import data as datasets
from cnncompare.augment import augment_batch, augmentation_seed
from cnncompare.checkpoints import checkpoint_problem
from cnncompare.devices import synchronize
from cnncompare.runtime import (
    Cancel,
    Cancelled,
    Runtime,
    cancel_check,
    loss_and_logits,
    make_runtime,
    optimizer_step,
)
from cnncompare.store import (
    ResultsStore,
    RunRecord,
    StoreError,
    StoreWarning,
    file_sha256,
    select_epoch,
)
from cnncompare.train_config import (  # noqa: F401 - re-exported for `from training import`
    OPTIMIZERS,
    SCHEDULERS,
    TRAINER_VERSION,
    ResolvedRun,
    TrainConfig,
    checked_device,
)

WARMUP_FRACTION = 0.2
"""The warm-up lasts the first epoch, at most this fraction of all steps."""
DECAY_FRACTION = 0.3
"""``warmup_stable_decay`` decays linearly to 0 over this last fraction of the steps."""

SGD_MOMENTUM = 0.9
TEST_HOLD_ENV = "CNNCOMPARE_TEST_HOLD_FILE"
"""Test hook: after each stored epoch but the last, the trainer waits while the file this
variable names exists (or until cancelled), so a test can kill, interrupt or race a run at
a known point."""

Progress = Callable[[dict[str, Any]], None]


@dataclass
class RunResult:
    """What :func:`train_or_load` hands back: the stored record and how this call went.

    ``status`` is ``"finished"`` or ``"cancelled"`` (finished epochs kept, resumable).
    ``seconds`` is how long this call took; ``train_seconds`` the run's training time over
    all its epochs (also for a cached run). ``test_acc`` is the test accuracy at
    ``selected_epoch`` (best validation accuracy); ``final_test_acc`` the last epoch's.
    """

    record: RunRecord
    config: TrainConfig
    status: str
    cached: bool
    seconds: float
    resumed_from: int = 0

    run_id = property(lambda self: self.record.run_id)
    epochs_done = property(lambda self: self.record.epochs_done)
    epochs = property(lambda self: self.record.epochs)
    test_acc = property(lambda self: self.record.test_acc)
    test_loss = property(lambda self: self.record.test_loss)
    val_acc = property(lambda self: self.record.val_acc)
    selected_epoch = property(lambda self: self.record.selected_epoch)
    final_test_acc = property(lambda self: self.record.final_test_acc)
    precision = property(lambda self: self.record.precision)
    train_acc = property(lambda self: self.record.train_acc)
    train_loss = property(lambda self: self.record.train_loss)
    data_meta = property(lambda self: self.record.data_meta)
    model_config = property(lambda self: self.record.model_config)
    class_names = property(lambda self: self.record.class_names)
    confusion = property(lambda self: self.record.confusion)
    per_class_acc = property(lambda self: self.record.per_class_acc)
    params = property(lambda self: self.record.params)
    device = property(lambda self: self.record.device)

    @property
    def train_seconds(self) -> float:
        return float(self.record.seconds or 0.0)

    @property
    def history(self) -> pd.DataFrame:
        """One row per finished epoch; ``wall_time`` is the cumulative seconds."""
        history = pd.DataFrame(list(self.record.history))
        if len(history):
            history["wall_time"] = history["seconds"].cumsum()
        return history

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready summary (what the CLI prints)."""
        r, s = self.record, self.record.settings
        return {
            "run_id": r.run_id,
            "model": self.config.model,
            "dataset": self.config.dataset,
            "status": self.status,
            "cached": self.cached,
            "epochs_done": r.epochs_done,
            "epochs": r.epochs,
            "test_acc": r.test_acc,
            "selected_epoch": r.selected_epoch,
            "val_acc": r.val_acc,
            "final_test_acc": r.final_test_acc,
            "test_loss": r.test_loss,
            "train_acc": r.train_acc,
            "train_loss": r.train_loss,
            "seconds": round(self.seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "params": r.params,
            "input": f"{s.get('in_channels')}x{s.get('input_size')}x{s.get('input_size')}",
            "width": s.get("width"),
            "train_size": s.get("train_size"),
            "val_size": s.get("val_size"),
            "test_size": s.get("test_size"),
            "seed": s.get("seed"),
            "augment": s.get("augment"),
            "precision": r.precision,
            "device": r.device,
            "resumed_from": self.resumed_from,
        }


@dataclass
class _Session:
    """One call of :func:`train_or_load`: the run, where it is stored, how it runs, and
    whom to tell."""

    resolved: ResolvedRun
    store: ResultsStore
    runtime: Runtime
    notify: _Notifier
    cancelled: Callable[[], bool]
    started: float

    @property
    def run_id(self) -> str:
        return self.resolved.run_id

    @property
    def config(self) -> TrainConfig:
        return self.resolved.config

    def result(self, record: RunRecord, *, status: str, cached: bool,
               resumed_from: int = 0) -> RunResult:
        result = RunResult(record, self.config, status, cached,
                           time.perf_counter() - self.started, resumed_from)
        self.notify.done(result)
        return result

    def stored(self) -> RunRecord | None:
        """The finished, intact record of this run, if the store has one."""
        return _forwarding_warnings(self.notify, self.run_id,
                                    lambda: self.store.finished(self.run_id))

    def cancelled_result(self) -> RunResult:
        try:
            record = self.store.run(self.run_id)
        except ValueError:
            record = RunRecord(self.run_id, self.config.model, self.config.dataset,
                               "unfinished", 0, self.config.epochs,
                               model_config=self.resolved.model_config.as_dict())
        return self.result(record, status="cancelled", cached=False)


# ---------------------------------------------------------------------------------------
# Entry point


def train_or_load(
    cfg: TrainConfig,
    *,
    device: str | torch.device = "auto",
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    store: ResultsStore | None = None,
    amp: bool | str | None = None,
    channels_last: bool | str = "auto",
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> RunResult:
    """Return the stored run of ``cfg``, resuming or training it as needed.

    ``progress`` receives dicts with ``kind`` (``"status"``, ``"batch"``, ``"epoch"``,
    ``"done"``), ``run_id``, ``epoch``, ``epochs``, ``batch``, ``batches`` and, per epoch,
    the metrics. ``cancel`` (a ``threading.Event`` or a callable returning True) stops at
    the next batch: the result then has ``status == "cancelled"`` and the finished epochs
    stay stored, to be resumed by the next call.

    The precision is ``cfg.amp`` resolved on ``device`` and is part of the run's key (a
    float32 request never returns a stored bf16 run); ``amp`` (``"auto"``, ``"on"``,
    ``"off"`` or a bool), when given, replaces ``cfg.amp``. ``channels_last``: see
    :func:`cnncompare.runtime.make_runtime`; like the device, it is not part of the key
    (the stored ``device`` column says what was used). ``allowed_roots``: the folders a
    data root must lie in (``None``: any; the app passes its own).
    """
    started = time.perf_counter()
    if amp is not None:
        cfg = dataclasses.replace(cfg, amp=amp)
    dev = checked_device(device)  # a bad device is an error even when the run is cached
    rt = make_runtime(dev, {"auto": "auto", "on": True, "off": False}[cfg.amp], channels_last)
    resolved = cfg.resolve(data_root, download, device=dev, allowed_roots=allowed_roots)
    session = _Session(resolved, store or ResultsStore(), rt, _Notifier(progress),
                       cancel_check(cancel), started)

    hit = session.stored()
    if hit is not None:
        return session.result(hit, status="finished", cached=True)

    session.store.ensure_writable()  # before the lock: its file must be created
    lock = session.store.lock(session.run_id)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        session.notify.status(session.run_id,
                              "Another process is training this configuration; waiting for it.")
        try:
            lock.acquire(timeout=-1, cancel_check=session.cancelled)
        except Timeout:
            return session.cancelled_result()
    try:
        hit = session.stored()
        if hit is not None:
            return session.result(hit, status="finished", cached=True)
        _note_legacy_run(session)
        check_memory(session.resolved, rt.device)
        return _train(session)
    finally:
        lock.release()


MEMORY_HEADROOM = 0.8
"""A training run may plan to use at most this share of the memory free on its device."""


def check_memory(resolved: ResolvedRun, device: str | torch.device = "auto") -> float | None:
    """The memory one training step of ``resolved`` is estimated to need (decimal MB):
    the parameters three times over (weights, gradients, optimizer state) and one batch's
    activations, from the model's profile (:mod:`cnncompare.profiling`, cached on disk),
    plus the dataset held in memory as float32. ``ValueError`` when it exceeds
    :data:`MEMORY_HEADROOM` of the memory free on ``device``; ``None`` where the profile or
    the free memory is unknown (then nothing is refused)."""
    # profiling and benchmark load fvcore: imported only when a run is about to train
    from cnncompare import benchmark, profiling

    dev = checked_device(device)
    free = benchmark.free_memory_mb(dev)
    try:
        summary = profiling.cost_summary(resolved.model_config)
    except (RuntimeError, ValueError, TypeError, KeyError):
        return None
    spec = resolved.data
    data_mb = ((spec.train_size + spec.test_size) * spec.in_channels * spec.input_size ** 2
               * 4 / 1e6)
    need = benchmark.estimate_memory_mb(summary, resolved.config.batch_size, "train") + data_mb
    if free is not None and need > MEMORY_HEADROOM * free:
        cfg = resolved.config
        raise ValueError(
            f"Training {cfg.model} ({resolved.model_config.label()}) at batch size "
            f"{cfg.batch_size} needs about {need:,.0f} MB (its parameters three times and one "
            f"batch's activations, estimated from its profile, plus the data), more than "
            f"{MEMORY_HEADROOM:.0%} of the {free:,.0f} MB free on {dev.type}. Choose a "
            f"smaller batch size, input size or width.")
    return need


def _note_legacy_run(s: _Session) -> None:
    """Say so when the store holds this configuration as trained by an earlier version
    (before validation splits): that run is kept and listed as it was, and this one is
    trained anew because its reported epoch is now chosen on validation."""
    if s.store.has(s.run_id):
        return
    for old in s.resolved.legacy_run_ids():
        if s.store.has(old):
            s.notify.status(s.run_id, (
                f"The store holds run {old} of this configuration, trained by an earlier "
                f"version without a validation split. It is kept as it was; this run "
                f"({s.resolved.precision}) is trained anew so that its reported epoch is "
                f"chosen on validation."), level="warning")
            return


def _forwarding_warnings(notify: _Notifier, run_id: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; pass any StoreWarning it raises to the progress callback, and re-warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        value = fn()
    for w in caught:
        notify.status(run_id, str(w.message), level="warning")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


class _Notifier:
    """Builds the progress events; a no-op without a callback."""

    def __init__(self, callback: Progress | None):
        self.callback = callback

    def __bool__(self) -> bool:
        return self.callback is not None

    def emit(self, event: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(event)

    def status(self, run_id: str, message: str, level: str = "info", epoch: int = 0,
               epochs: int = 0) -> None:
        self.emit({"kind": "status", "run_id": run_id, "level": level, "message": message,
                   "epoch": epoch, "epochs": epochs, "batch": 0, "batches": 0})

    def done(self, r: RunResult) -> None:
        self.emit({"kind": "done", "run_id": r.run_id, "status": r.status, "cached": r.cached,
                   "epoch": r.epochs_done, "epochs": r.epochs, "batch": 0, "batches": 0,
                   "test_acc": r.test_acc, "selected_epoch": r.selected_epoch,
                   "seconds": r.seconds, "train_seconds": r.train_seconds})


# ---------------------------------------------------------------------------------------
# Building blocks


def build_optimizer(cfg: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """SGD with momentum 0.9, Adam or AdamW, with the config's lr and weight decay.

    On CPU and CUDA the fused implementations are used: one kernel per parameter instead
    of several (on a CPU, Adam's step for LeNet takes about 160 us instead of 370 us).
    """
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=SGD_MOMENTUM,
                               weight_decay=cfg.weight_decay, **fused)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def build_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int = 1):
    """The learning-rate schedule, stepped once per batch (None for ``constant``).

    ``warmup_stable_decay`` (the default recipe): a linear warm-up over the first epoch
    (at most :data:`WARMUP_FRACTION` of all steps) from lr/warm-up steps to lr, the peak
    lr held, then a linear decay towards 0 over the last :data:`DECAY_FRACTION` of the
    steps. The warm-up keeps Adam's first large steps from throwing a freshly initialised
    deep network off (ResNet-34's last epoch fell to 0.73 under a constant lr); the hold
    gives the networks that learn slowly (no batch norm: NiN, VGG, LeNet-5) as much of the
    peak lr as a constant schedule; the decay makes the last epochs take small steps, so
    the final epoch stays close to the best one. ``warmup_cosine``: the same warm-up, then
    a cosine decay over the rest; ``cosine``: a cosine decay without warm-up; ``step``:
    x0.1 at 1/2 and 3/4 of training.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "constant":
        return None
    if cfg.scheduler == "step":
        marks = sorted({max(1, cfg.epochs // 2), max(1, (3 * cfg.epochs) // 4)})
        marks = [m * steps_per_epoch for m in marks]
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: 0.1 ** sum(t >= m for m in marks))
    warmup = 0
    if cfg.scheduler in ("warmup_cosine", "warmup_stable_decay"):
        warmup = max(1, min(steps_per_epoch, int(WARMUP_FRACTION * total)))
    decay = max(1, int(DECAY_FRACTION * total))

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if cfg.scheduler == "warmup_stable_decay":
            return min(1.0, (total - t) / decay)
        return 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _eval_batch(batch_size: int, sample_numel: int) -> int:
    """A larger batch for evaluation, bounded so activations stay modest."""
    return max(batch_size, min(1024, (1 << 22) // max(1, sample_numel)))


PRENORMALIZE_BYTES = 1 << 30
"""Datasets whose float32 copy fits in this many bytes are normalised once, up front;
larger ones stay uint8 on the device and each batch is normalised as it is taken."""


def _prepare(x: torch.Tensor, data: datasets.TensorData, rt: Runtime) -> torch.Tensor:
    x = x.to(rt.device)
    if x.numel() * 4 <= PRENORMALIZE_BYTES:
        x = data.normalize(x)
    return rt.place_input(x)


def _take(x: torch.Tensor, idx: torch.Tensor, data: datasets.TensorData) -> torch.Tensor:
    """The rows ``idx`` of a prepared tensor, as model input."""
    xb = x[idx]  # advanced indexing keeps the channels-last layout
    return data.normalize(xb) if xb.dtype == torch.uint8 else xb


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             batch_size: int, rt: Runtime, normalize: Callable[[torch.Tensor], torch.Tensor]
             ) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and confusion matrix (rows: true class) on ``x, y``;
    uint8 inputs go through ``normalize`` first.

    Always in float32, also when training used mixed precision: the stored accuracy is
    then exactly what the stored weights give when they are loaded and used later."""
    model.eval()
    loss_sum = torch.zeros((), device=rt.device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=rt.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        if xb.dtype == torch.uint8:
            xb = normalize(xb)
        logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        pred = logits.argmax(1)
        confusion += torch.bincount(yb * num_classes + pred, minlength=num_classes ** 2)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = max(1, len(y))
    return float(loss_sum) / n, float(confusion.diagonal().sum()) / n, confusion


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of one epoch: depends on (seed, epoch) only, so a resumed run
    sees the same batches as an uninterrupted one."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch bounds over ``n`` samples; a last batch of a single sample is dropped (batch
    norm cannot train on one value per channel). The order changes every epoch, so every
    sample is still seen."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


def _hold_for_tests(cancelled: Callable[[], bool]) -> None:
    """The test hook (see :data:`TEST_HOLD_ENV`); a cancel request ends the wait."""
    path = os.environ.get(TEST_HOLD_ENV)
    while path and os.path.exists(path) and not cancelled():
        time.sleep(0.05)


def _per_class(confusion: torch.Tensor) -> list[float | None]:
    totals = confusion.sum(1)
    return [float(confusion[i, i]) / float(t) if t else None for i, t in enumerate(totals)]


# ---------------------------------------------------------------------------------------
# Training


@dataclass
class _Trainee:
    """The network being trained and everything whose state a checkpoint keeps.

    ``selected`` is the epoch of best validation accuracy so far: its number, weights (a
    copy on the CPU) and test confusion matrix.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    history: list[dict[str, Any]]
    selected: dict[str, Any] | None = None

    def state(self, s: _Session, epoch: int) -> dict[str, Any]:
        return {
            "format": 2, "run_id": s.run_id, "epoch": epoch,
            "canonical": json.loads(json.dumps(s.resolved.canonical)),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": _rng_state(s.runtime.device), "history": [dict(h) for h in self.history],
            "selected": self.selected,
        }

    def restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        self.history = [dict(h) for h in state["history"]]
        self.selected = state.get("selected")

    def keep_if_best(self, epoch: int, confusion: torch.Tensor) -> None:
        """Remember this epoch's weights and confusion if it is the selected epoch now."""
        best = select_epoch(self.history)
        if best is not None and int(best["epoch"]) == epoch:
            weights = {k: v.detach().to("cpu", copy=True)
                       for k, v in self.model.state_dict().items()}
            self.selected = {"epoch": epoch, "model": weights,
                             "confusion": confusion.tolist()}


def _fresh_trainee(s: _Session, steps: int) -> _Trainee:
    """The network, optimizer and schedule of a run at epoch 0: seeded, so two calls give
    the same initial weights (a run that starts over equals one that never stopped)."""
    cfg, rt = s.config, s.runtime
    torch.manual_seed(cfg.seed)
    model = rt.place(s.resolved.model_config.build())
    opt = build_optimizer(cfg, model.parameters(), rt.device)
    return _Trainee(model, opt, build_scheduler(cfg, opt, steps), rt.grad_scaler(), [])


def _train(s: _Session) -> RunResult:
    cfg, run_id, rt = s.config, s.run_id, s.runtime
    data = datasets.load_spec(s.resolved.data, s.resolved.source)
    fork_devices = [rt.device.index or 0] if rt.device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        steps = len(_batches(len(data.y_train), cfg.batch_size))
        trainee = _fresh_trainee(s, steps)
        fields = {
            "model": cfg.model, "dataset": cfg.dataset, "epochs": cfg.epochs,
            "params": sum(p.numel() for p in trainee.model.parameters()),
            "device": rt.describe(), "precision": s.resolved.precision,
            "config": cfg.as_dict(), "settings": s.resolved.settings,
            "canonical": s.resolved.canonical,
            "model_config": s.resolved.model_config.as_dict(), "data_meta": data.meta.as_dict(),
            "versions": {"torch": torch.__version__, "trainer": TRAINER_VERSION},
        }
        problems: list[str] = []
        state = _forwarding_warnings(s.notify, run_id, lambda: s.store.read_checkpoint(
            run_id, problems=problems))
        state = _usable_checkpoint(state, s, trainee, steps, problems)
        if state is not None:
            try:
                trainee.restore(state, rt.device)
            except Exception as exc:  # noqa: BLE001 - what the checks above did not foresee
                _set_checkpoint_aside(s, f"it does not load ({type(exc).__name__}: "
                                         f"{str(exc).strip().splitlines()[0][:200]})")
                state, trainee = None, _fresh_trainee(s, steps)
        if state is not None:
            s.store.resume(run_id, trainee.history, fields)
            done = len(trainee.history)
            if done < cfg.epochs:
                msg = f"Resuming from epoch {done + 1} of {cfg.epochs}."
            else:
                msg = f"All {cfg.epochs} epochs are in the checkpoint; closing the run."
            s.notify.status(run_id, msg, epoch=done, epochs=cfg.epochs)
        else:
            s.store.begin(run_id, fields)
        resumed_from = len(trainee.history)
        try:
            _loop(s, trainee, data)
        except BaseException as exc:
            # Finished epochs stay (the run resumes from them); a run with none is forgotten.
            # The store may be what failed (a full disk): then the first error is the one
            # reported.
            with contextlib.suppress(StoreError):
                if trainee.history:
                    s.store.set_status(run_id, "unfinished")
                else:
                    s.store.discard(run_id)
            if isinstance(exc, Cancelled):
                return s.cancelled_result()
            raise
    return s.result(s.store.run(run_id), status="finished", cached=False,
                    resumed_from=resumed_from)


def _set_checkpoint_aside(s: _Session, problem: str) -> None:
    """Keep an unusable checkpoint as ``ID.pt.bad-<time>`` and say so, once."""
    aside = s.store.set_aside_checkpoint(s.run_id)
    kept = f"it was kept as {aside}" if aside is not None else "it was removed"
    msg = (f"The checkpoint of run {s.run_id} cannot be used: {problem}. {kept[0].upper()}"
           f"{kept[1:]} and the run starts over from epoch 1.")
    s.notify.status(s.run_id, msg, level="warning")
    warnings.warn(msg, StoreWarning, stacklevel=3)


def _usable_checkpoint(state: Any, s: _Session, trainee: _Trainee, steps: int,
                       problems: Sequence[str] = ()) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None``.

    A checkpoint is used only when it belongs to this exact configuration and everything it
    holds fits the freshly built ``trainee``
    (:func:`cnncompare.checkpoints.checkpoint_problem`). An unusable one (unreadable:
    ``problems`` from the store) is set aside as ``ID.pt.bad-<time>`` with one message, and
    the run starts over: a checkpoint is the only copy of the weights, optimizer and RNG
    state (the stored epoch rows are metrics only), and a run that starts over with its seed
    gives the same result as one that never stopped."""
    problem = problems[0] if problems else None
    if state is not None:
        problem = checkpoint_problem(
            state, canonical=s.resolved.canonical, epochs=s.config.epochs,
            num_classes=s.resolved.model_config.num_classes, model=trainee.model,
            optimizer=trainee.optimizer, scheduler=trainee.scheduler, steps=steps)
    if problem is None:
        return state
    if state is not None or s.store.checkpoint_path(s.run_id).exists():
        _set_checkpoint_aside(s, problem)
    return None


def _selected_fields(t: _Trainee) -> dict[str, Any]:
    """The row fields that describe the selected epoch (its test confusion matrix)."""
    confusion = t.selected["confusion"] if t.selected else None
    if confusion is None:
        return {}
    return {"confusion": confusion, "per_class_acc": _per_class(torch.tensor(confusion))}


def _loop(s: _Session, t: _Trainee, data: datasets.TensorData) -> None:
    cfg, run_id, rt, notify = s.config, s.run_id, s.runtime, s.notify
    meta, model, history = data.meta, t.model, t.history
    x_train, y_train = _prepare(data.x_train, data, rt), data.y_train.to(rt.device)
    x_val, y_val = _prepare(data.x_val, data, rt), data.y_val.to(rt.device)
    x_test, y_test = _prepare(data.x_test, data, rt), data.y_test.to(rt.device)
    n = len(y_train)
    bounds = _batches(n, cfg.batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_bs = _eval_batch(cfg.batch_size, x_train[0].numel())
    natural = meta.ink == datasets.NATURAL

    def metrics(x: torch.Tensor, y: torch.Tensor):
        return evaluate(model, x, y, meta.num_classes, eval_bs, rt, data.normalize)

    for epoch in range(len(history) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = t.optimizer.param_groups[0]["lr"]  # the epoch's first step's
        model.train()
        order = _epoch_order(n, cfg.seed, epoch).to(rt.device)
        augment_rng = torch.Generator().manual_seed(augmentation_seed(cfg.seed, epoch))
        loss_sum = torch.zeros((), device=rt.device)
        correct = torch.zeros((), device=rt.device, dtype=torch.int64)
        seen = 0
        for b, (lo, hi) in enumerate(bounds, start=1):
            if s.cancelled():
                raise Cancelled
            idx = order[lo:hi]
            xb, yb = _take(x_train, idx, data), y_train[idx]
            if cfg.augment:
                xb = augment_batch(xb, natural, augment_rng)
            with rt.autocast():
                loss, logits = loss_and_logits(model(xb), yb, criterion)
            t.optimizer.zero_grad(set_to_none=True)
            optimizer_step(loss, t.optimizer, t.scaler)
            if t.scheduler is not None:
                t.scheduler.step()
            with torch.no_grad():
                loss_sum += loss.detach().float() * (hi - lo)
                correct += (logits.argmax(1) == yb).sum()
            seen += hi - lo
            if notify:
                notify.emit({"kind": "batch", "run_id": run_id, "epoch": epoch,
                             "epochs": cfg.epochs, "batch": b, "batches": len(bounds),
                             "loss": float(loss_sum) / seen, "acc": int(correct) / seen})
        synchronize(rt.device)
        train_time = time.perf_counter() - t0
        val_loss, val_acc, _ = metrics(x_val, y_val)
        test_loss, test_acc, confusion = metrics(x_test, y_test)
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch, "train_loss": float(loss_sum) / seen,
               "train_acc": int(correct) / seen, "val_loss": val_loss, "val_acc": val_acc,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds,
               "images_per_s": seen / train_time if train_time else None, "lr": lr}
        history.append(rec)
        t.keep_if_best(epoch, confusion)
        digest = s.store.write_checkpoint(run_id, t.state(s, epoch))
        finished = epoch == cfg.epochs
        s.store.record_epoch(run_id, history, {
            **_selected_fields(t), "checkpoint_sha256": digest,
            **({"status": "finished"} if finished else {})})
        wall = sum(h["seconds"] for h in history)
        best = select_epoch(history)
        notify.emit({"kind": "epoch", "run_id": run_id, "epochs": cfg.epochs,
                     "batch": len(bounds), "batches": len(bounds), "wall_time": wall,
                     "selected_epoch": best["epoch"] if best else None,
                     "selected_test_acc": best["test_acc"] if best else None, **rec})
        if not finished:
            _hold_for_tests(s.cancelled)
    if len(history) == cfg.epochs and s.store.run(run_id).status != "finished":
        # Resumed from a checkpoint of the last epoch whose row was never completed (the
        # process died between the two writes): close the run from the checkpoint.
        s.store.record_epoch(run_id, history, {
            **_selected_fields(t),
            "checkpoint_sha256": file_sha256(s.store.checkpoint_path(run_id)),
            "status": "finished"})
