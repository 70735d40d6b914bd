"""The trainer: one configuration in, a stored, comparable run out, never trained twice.

:func:`train_or_load` is the one entry point. It resolves a :class:`TrainConfig` to its
canonical form and key, returns a finished run from the store at once, resumes an
unfinished one from its last finished epoch, or trains from scratch, and it makes two
processes asking for the same configuration train it once (a file lock per run).

The loop is built for small data on a CPU: the whole dataset sits in memory as one
normalised tensor on the device; batches are taken by indexing it with a seeded
permutation (no ``DataLoader``, no per-sample decoding); gradients are reset with
``set_to_none``; evaluation runs under ``torch.inference_mode`` in large batches;
convolutions run in channels-last layout; the optimizers are the fused ones. Mixed
precision is on by default where the hardware computes it natively: on CUDA (bf16 where
the GPU has it, else fp16 with a gradient scaler) and on CPUs with AVX512-BF16 or AMX
(bf16 autocast). Elsewhere, and with ``amp=False``, training is float32 throughout.
Evaluation is always float32, so a stored accuracy is what the stored weights give.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cnncompare import data as datasets
from cnncompare.checks import positive_int
from cnncompare.devices import resolve_device, synchronize
from cnncompare.registry import ModelConfig, model_info, resolve_config
from cnncompare.store import ResultsStore, StoreWarning, file_sha256

TRAINER_VERSION = 1
"""Bump when a change to this module changes what a trained run means (it enters keys)."""

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "step", "cosine")
SGD_MOMENTUM = 0.9
AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as in the paper
TEST_HOLD_ENV = "CNNCOMPARE_TEST_HOLD_FILE"
"""Test hook: after each stored epoch but the last, the trainer waits while the file this
variable names exists (or until cancelled), so a test can kill, interrupt or race a run at
a known point."""

Progress = Callable[[dict[str, Any]], None]
Cancel = threading.Event | Callable[[], bool]


class TrainingCancelled(Exception):
    """Raised inside the loop when the cancel signal is seen; never leaves this module."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a trained run is (and nothing that does not).

    ``None`` means a default resolved from the model and the dataset: ``input_size`` and
    ``in_channels`` take the dataset's own (digits: 28 px, grey), raised to the model's
    recommended small input where the network needs more (VGG: 32 px); ``width`` takes the
    model's recommended small width (``model_info(name).small``); the sizes take
    :func:`cnncompare.data.default_sizes`. The device, the data's location and whether to
    download it are not part of a run's identity and are arguments of
    :func:`train_or_load`.
    """

    model: str
    dataset: str = "digits"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    scheduler: str = "constant"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    train_size: int | None = None
    test_size: int | None = None
    input_size: int | None = None
    in_channels: int | None = None
    width: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive_int(self.epochs, "epochs")
        positive_int(self.batch_size, "batch_size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not _is_number(self.lr) or not (0 < self.lr <= 10):
            raise ValueError(f"lr must be a number in (0, 10], got {self.lr!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not _is_number(self.label_smoothing) or not (0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, "
                             f"got {self.scheduler!r}")
        for name in ("train_size", "test_size", "input_size", "in_channels"):
            value = getattr(self, name)
            if value is not None:
                positive_int(value, name)
        if not isinstance(self.model_kwargs, dict):
            raise ValueError("model_kwargs must be a dict")
        json.dumps(self.model_kwargs)  # must be plain data: it goes into keys and rows

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def resolve(self, data_root: str | os.PathLike | None = None,
                download: bool = False) -> ResolvedRun:
        """The canonical configuration and key; checks that it can run (``ValueError``,
        or :class:`cnncompare.data.DatasetNotFoundError` when the data is missing)."""
        return _resolve(self, data_root, download)

    def key(self, data_root: str | os.PathLike | None = None) -> str:
        """The run id: a hash of the canonical configuration (model and its resolved
        arguments, model code version, data and sizes, hyperparameters, seed).

        ``data_root`` is needed only to find which data a torchvision dataset or an image
        folder holds; its path does not enter the key, its content's fingerprint does.
        """
        return self.resolve(data_root).run_id


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ResolvedRun:
    """A TrainConfig with every default filled in, and its key."""

    config: TrainConfig
    model_config: ModelConfig
    data: datasets.DataSpec
    source: datasets.Source
    canonical: dict[str, Any] = field(compare=False, hash=False)
    run_id: str = ""


def _resolve(cfg: TrainConfig, data_root, download: bool) -> ResolvedRun:
    info = model_info(cfg.model)  # unknown model: ValueError before any data is touched
    dinfo = datasets.dataset_info(cfg.dataset)
    small = info.small
    width = cfg.width if cfg.width is not None else float(small.get("width", 1.0))
    input_size = cfg.input_size
    if input_size is None:
        input_size = dinfo.input_size
        from cnncompare.registry import min_input_size

        if input_size < min_input_size(cfg.model, "small"):
            input_size = max(int(small["input_size"]), min_input_size(cfg.model, "small"))
    in_channels = cfg.in_channels if cfg.in_channels is not None else dinfo.in_channels
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if dinfo.class_names is not None:  # check the model before looking for files
        resolve_config(cfg.model, num_classes=len(dinfo.class_names), in_channels=in_channels,
                       input_size=input_size, width=width, **cfg.model_kwargs)
    spec, source = datasets.resolve(
        cfg.dataset, train_size=cfg.train_size, test_size=cfg.test_size, input_size=input_size,
        in_channels=in_channels, seed=cfg.seed, root=data_root, download=download)
    mc = resolve_config(cfg.model, num_classes=spec.num_classes, in_channels=in_channels,
                        input_size=input_size, width=width, **cfg.model_kwargs)
    canonical = {
        "trainer": TRAINER_VERSION,
        "model": mc.as_dict(),
        "model_version": info.version,
        "data": spec.as_dict(),
        "hparams": {k: getattr(cfg, k) for k in (
            "epochs", "batch_size", "lr", "optimizer", "scheduler", "weight_decay",
            "label_smoothing", "seed")},
    }
    blob = json.dumps(canonical, sort_keys=True, default=str)
    run_id = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return ResolvedRun(cfg, mc, spec, source, canonical, run_id)


@dataclass
class RunResult:
    """What :func:`train_or_load` hands back.

    ``status`` is ``"finished"`` or ``"cancelled"`` (finished epochs kept, resumable).
    ``seconds`` is how long this call took; ``train_seconds`` the run's training time over
    all its epochs (also for a cached run). Metrics are those of the last finished epoch.
    """

    run_id: str
    config: TrainConfig
    status: str
    cached: bool
    epochs_done: int
    epochs: int
    test_acc: float | None
    test_loss: float | None
    train_acc: float | None
    train_loss: float | None
    seconds: float
    train_seconds: float
    history: pd.DataFrame
    confusion: list[list[int]] | None
    per_class_acc: list[float] | None
    data_meta: dict[str, Any]
    model_config: dict[str, Any]
    params: int | None
    device: str | None
    resumed_from: int = 0

    @property
    def class_names(self) -> list[str]:
        return list(self.data_meta.get("class_names") or [])

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready summary (what the CLI prints)."""
        mc = self.model_config
        return {
            "run_id": self.run_id,
            "model": self.config.model,
            "dataset": self.config.dataset,
            "status": self.status,
            "cached": self.cached,
            "epochs_done": self.epochs_done,
            "epochs": self.epochs,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "train_acc": self.train_acc,
            "train_loss": self.train_loss,
            "seconds": round(self.seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "params": self.params,
            "input": f"{mc.get('in_channels')}x{mc.get('input_size')}x{mc.get('input_size')}",
            "width": mc.get("width"),
            "train_size": self.data_meta.get("train_size"),
            "test_size": self.data_meta.get("test_size"),
            "device": self.device,
            "resumed_from": self.resumed_from,
        }


def _result(record: dict[str, Any], cfg: TrainConfig, *, status: str, cached: bool,
            started: float, resumed_from: int = 0) -> RunResult:
    history = pd.DataFrame(record.get("history") or [])
    if len(history):
        history["wall_time"] = history["seconds"].cumsum()
    return RunResult(
        run_id=record["run_id"], config=cfg, status=status, cached=cached,
        epochs_done=int(record.get("epochs_done") or 0), epochs=int(record["epochs"]),
        test_acc=record.get("test_acc"), test_loss=record.get("test_loss"),
        train_acc=record.get("train_acc"), train_loss=record.get("train_loss"),
        seconds=time.perf_counter() - started, train_seconds=float(record.get("seconds") or 0),
        history=history, confusion=record.get("confusion"),
        per_class_acc=record.get("per_class_acc"), data_meta=record.get("data_meta") or {},
        model_config=record.get("model_config") or {}, params=record.get("params"),
        device=record.get("device"), resumed_from=resumed_from,
    )


def _empty_record(resolved: ResolvedRun) -> dict[str, Any]:
    return {"run_id": resolved.run_id, "epochs": resolved.config.epochs, "epochs_done": 0,
            "model_config": resolved.model_config.as_dict()}


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
    amp: bool | str = "auto",
    channels_last: bool | str = "auto",
) -> RunResult:
    """Return the stored run of ``cfg``, resuming or training it as needed.

    ``progress`` receives dicts with ``kind`` (``"status"``, ``"batch"``, ``"epoch"``,
    ``"done"``), ``run_id``, ``epoch``, ``epochs``, ``batch``, ``batches`` and, per epoch,
    the metrics. ``cancel`` (a ``threading.Event`` or a callable returning True) stops at
    the next batch: the result then has ``status == "cancelled"`` and the finished epochs
    stay stored, to be resumed by the next call.

    ``amp``: ``"auto"`` uses mixed precision where the hardware runs it natively (CUDA:
    bf16, or fp16 with a gradient scaler; a CPU with AVX512-BF16 or AMX: bf16), ``False``
    keeps everything in float32. ``channels_last``: ``"auto"`` (on for CPU and CUDA) or a
    bool. Neither enters the run's key, as the device does not; the stored ``device``
    column says what was used.
    """
    started = time.perf_counter()
    notify = _Notifier(progress)
    cancelled = _cancel_fn(cancel)
    rt = _runtime(device, amp, channels_last)  # a bad device is an error even when cached
    resolved = cfg.resolve(data_root, download)
    run_id = resolved.run_id
    store = store or ResultsStore()

    hit = _forwarding_warnings(notify, run_id, lambda: store.finished(run_id))
    if hit is not None:
        return _finish_cached(hit, cfg, notify, started)

    from filelock import Timeout

    lock = store.lock(run_id)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        notify.status(run_id, "Another process is training this configuration; waiting for it.")
        try:
            lock.acquire(timeout=-1, cancel_check=cancelled)
        except Timeout:
            return _cancelled_result(store, resolved, started, notify)
    try:
        hit = _forwarding_warnings(notify, run_id, lambda: store.finished(run_id))
        if hit is not None:
            return _finish_cached(hit, cfg, notify, started)
        return _train(resolved, store, rt=rt, notify=notify, cancelled=cancelled,
                      started=started)
    finally:
        lock.release()


def _finish_cached(record, cfg, notify, started) -> RunResult:
    result = _result(record, cfg, status="finished", cached=True, started=started)
    notify.done(result)
    return result


def _cancelled_result(store, resolved, started, notify) -> RunResult:
    try:
        record = store.run(resolved.run_id)
    except ValueError:
        record = _empty_record(resolved)
    result = _result(record, resolved.config, status="cancelled", cached=False,
                     started=started)
    notify.done(result)
    return result


def _forwarding_warnings(notify: _Notifier, run_id: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; pass any StoreWarning it raises to the progress callback, and re-warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        value = fn()
    for w in caught:
        notify.status(run_id, str(w.message), level="warning")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


def _cancel_fn(cancel: Cancel | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError("cancel must be a threading.Event or a callable returning bool")


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
                   "test_acc": r.test_acc, "seconds": r.seconds,
                   "train_seconds": r.train_seconds})


# ---------------------------------------------------------------------------------------
# The training loop


@dataclass
class _Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        text = self.device.type
        if self.device.type == "cpu":
            text = f"cpu ({torch.get_num_threads()} threads)"
        elif self.device.type == "cuda":
            text = f"cuda ({torch.cuda.get_device_name(self.device)})"
        if self.amp_dtype is not None:
            text += f", amp {str(self.amp_dtype).replace('torch.', '')}"
        return text


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), so that bf16
    autocast is faster rather than emulated and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private helpers: absent in some builds
        return False


def _runtime(device: str | torch.device, amp: bool | str, channels_last: bool | str) -> _Runtime:
    dev = resolve_device(device)
    if amp == "auto":
        use_amp = dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16())
    elif isinstance(amp, bool):
        use_amp = amp
    else:
        raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
    dtype = None
    if use_amp:
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif dev.type == "cpu":
            dtype = torch.bfloat16
        else:
            dtype = torch.float16
    if channels_last == "auto":
        cl = dev.type in ("cuda", "cpu")
    elif isinstance(channels_last, bool):
        cl = channels_last
    else:
        raise ValueError(f"channels_last must be 'auto', True or False, got {channels_last!r}")
    return _Runtime(dev, dtype, cl)


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


def build_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    """Stepped once per epoch: constant (None), step (x0.1 at 1/2 and 3/4), or cosine."""
    if cfg.scheduler == "constant":
        return None
    if cfg.scheduler == "step":
        milestones = sorted({max(1, cfg.epochs // 2), max(1, (3 * cfg.epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)


def _eval_batch(batch_size: int, sample_numel: int) -> int:
    """A larger batch for evaluation, bounded so activations stay modest."""
    return max(batch_size, min(1024, (1 << 22) // max(1, sample_numel)))


PRENORMALIZE_BYTES = 1 << 30
"""Datasets whose float32 copy fits in this many bytes are normalised once, up front;
larger ones stay uint8 on the device and each batch is normalised as it is taken."""


def _prepare(x: torch.Tensor, data: datasets.TensorData, rt: _Runtime) -> torch.Tensor:
    x = x.to(rt.device)
    if x.numel() * 4 <= PRENORMALIZE_BYTES:
        x = data.normalize(x)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _take(x: torch.Tensor, idx: torch.Tensor, data: datasets.TensorData) -> torch.Tensor:
    """The rows ``idx`` of a prepared tensor, as model input."""
    xb = x[idx]  # advanced indexing keeps the channels-last layout
    return data.normalize(xb) if xb.dtype == torch.uint8 else xb


def _loss(out, y: torch.Tensor, criterion: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits); GoogLeNet's auxiliary heads add 0.3 x their losses."""
    if isinstance(out, torch.Tensor):
        return criterion(out, y), out
    logits, *aux = out
    loss = criterion(logits, y)
    for a in aux:
        if a is not None:
            loss = loss + AUX_WEIGHT * criterion(a, y)
    return loss, logits


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             batch_size: int, rt: _Runtime, normalize: Callable[[torch.Tensor], torch.Tensor]
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


def _train(resolved: ResolvedRun, store: ResultsStore, *, rt: _Runtime, notify: _Notifier,
           cancelled: Callable[[], bool], started: float) -> RunResult:
    cfg, run_id = resolved.config, resolved.run_id
    data = datasets.load_spec(resolved.data, resolved.source)
    fork_devices = [rt.device.index or 0] if rt.device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed)
        model = resolved.model_config.build()
        model.to(rt.device)
        if rt.channels_last:
            model.to(memory_format=torch.channels_last)
        opt = build_optimizer(cfg, model.parameters(), rt.device)
        sched = build_scheduler(cfg, opt)
        scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
        fields = {
            "model": cfg.model, "dataset": cfg.dataset, "epochs": cfg.epochs,
            "params": sum(p.numel() for p in model.parameters()),
            "device": rt.describe(), "config": cfg.as_dict(), "canonical": resolved.canonical,
            "model_config": resolved.model_config.as_dict(), "data_meta": data.meta.as_dict(),
            "versions": {"torch": torch.__version__, "trainer": TRAINER_VERSION},
        }
        history: list[dict[str, Any]] = []
        state = _forwarding_warnings(notify, run_id, lambda: store.read_checkpoint(run_id))
        state = _usable_checkpoint(state, resolved, notify)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], rt.device)
            history = [dict(h) for h in state["history"]]
            store.resume(run_id, history, fields)
            notify.status(run_id, f"Resuming from epoch {len(history) + 1} of {cfg.epochs}.",
                          epoch=len(history), epochs=cfg.epochs)
        else:
            store.begin(run_id, fields)
        resumed_from = len(history)
        try:
            _loop(model, opt, sched, scaler, data, history, resolved, store, rt, notify,
                  cancelled)
        except TrainingCancelled:
            if history:
                store.set_status(run_id, "unfinished")
            else:
                store.discard(run_id)
            return _cancelled_result(store, resolved, started, notify)
        except BaseException:
            if history:
                store.set_status(run_id, "unfinished")
            else:
                store.discard(run_id)
            raise
    record = store.run(run_id)
    result = _result(record, cfg, status="finished", cached=False, started=started,
                     resumed_from=resumed_from)
    notify.done(result)
    return result


def _usable_checkpoint(state, resolved: ResolvedRun, notify: _Notifier):
    """A checkpoint to resume from, or None: it must belong to this exact configuration."""
    if state is None:
        return None
    try:
        same = state.get("canonical") == json.loads(json.dumps(resolved.canonical))
        epoch = int(state["epoch"])
        ok = same and 1 <= epoch <= resolved.config.epochs and len(state["history"]) == epoch
    except (TypeError, ValueError, KeyError):
        ok = False
    if not ok:
        msg = (f"The checkpoint of run {resolved.run_id} does not match its configuration; "
               "training from the start.")
        notify.status(resolved.run_id, msg, level="warning")
        warnings.warn(msg, StoreWarning, stacklevel=3)
        return None
    return state


def _loop(model, opt, sched, scaler, data: datasets.TensorData, history, resolved, store,
          rt: _Runtime, notify: _Notifier, cancelled) -> None:
    cfg, run_id = resolved.config, resolved.run_id
    meta = data.meta
    x_train, y_train = _prepare(data.x_train, data, rt), data.y_train.to(rt.device)
    x_test, y_test = _prepare(data.x_test, data, rt), data.y_test.to(rt.device)
    n = len(y_train)
    bounds = _batches(n, cfg.batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_bs = _eval_batch(cfg.batch_size, x_train[0].numel())
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = _epoch_order(n, cfg.seed, epoch).to(rt.device)
        loss_sum = torch.zeros((), device=rt.device)
        correct = torch.zeros((), device=rt.device, dtype=torch.int64)
        seen = 0
        for b, (lo, hi) in enumerate(bounds, start=1):
            if cancelled():
                raise TrainingCancelled
            idx = order[lo:hi]
            xb, yb = _take(x_train, idx, data), y_train[idx]
            with rt.autocast():
                loss, logits = _loss(model(xb), yb, criterion)
            opt.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
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
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        test_loss, test_acc, confusion = evaluate(model, x_test, y_test, meta.num_classes,
                                                  eval_bs, rt, data.normalize)
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch, "train_loss": float(loss_sum) / seen,
               "train_acc": int(correct) / seen, "test_loss": test_loss, "test_acc": test_acc,
               "seconds": seconds, "images_per_s": seen / train_time if train_time else None,
               "lr": lr}
        history.append(rec)
        per_class = _per_class(confusion)
        digest = store.write_checkpoint(run_id, {
            "format": 1, "run_id": run_id, "epoch": epoch,
            "canonical": json.loads(json.dumps(resolved.canonical)),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": _rng_state(rt.device), "history": [dict(h) for h in history],
        })
        finished = epoch == cfg.epochs
        store.record_epoch(run_id, history, {
            "confusion": confusion.tolist(), "per_class_acc": per_class,
            "checkpoint_sha256": digest, **({"status": "finished"} if finished else {})})
        wall = sum(h["seconds"] for h in history)
        notify.emit({"kind": "epoch", "run_id": run_id, "epochs": cfg.epochs,
                     "batch": len(bounds), "batches": len(bounds), "wall_time": wall, **rec})
        if not finished:
            _hold_for_tests(cancelled)
    if len(history) == cfg.epochs and store.run(run_id)["status"] != "finished":
        # Resumed from a checkpoint of the last epoch whose row was never completed (the
        # process died between the two writes): evaluate once more and close the run.
        _, _, confusion = evaluate(model, x_test, y_test, meta.num_classes, eval_bs, rt,
                                   data.normalize)
        store.record_epoch(run_id, history, {
            "confusion": confusion.tolist(), "per_class_acc": _per_class(confusion),
            "checkpoint_sha256": file_sha256(store.checkpoint_path(run_id)),
            "status": "finished"})


def _per_class(confusion: torch.Tensor) -> list[float | None]:
    totals = confusion.sum(1)
    return [float(confusion[i, i]) / float(t) if t else None for i, t in enumerate(totals)]
