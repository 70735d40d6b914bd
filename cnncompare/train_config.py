"""What a training run *is*: its configuration, its key, and the Train page's plan.

A :class:`TrainConfig` says everything that decides what a trained run is, and nothing
that does not (where the data lives, the memory layout). :meth:`TrainConfig.resolve` fills
in every default from the model, the dataset and the device's precision, and hashes the
result into the run id, the key of the results store: the same configuration always finds
the same run, and a float32 run and a bf16 run of the same settings are two runs.

:func:`plan_runs` turns the Train page's choices into configurations; :func:`run_status`
says which of them are stored, partly trained or new.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from cnncompare import cache
from cnncompare import data as datasets
from cnncompare.checks import positive_int
from cnncompare.registry import (
    ModelConfig,
    count_params,
    min_input_size,
    model_info,
    resolve_config,
)

TRAINER_VERSION = 2
"""Bump when a change to the trainer changes what a trained run means (it enters keys).
2: a validation split chooses the reported epoch; per-step learning-rate schedules;
precision and augmentation enter the key."""

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("warmup_stable_decay", "warmup_cosine", "cosine", "step", "constant")
AMP_CHOICES = ("auto", "on", "off")
"""Mixed precision: ``auto`` where the hardware runs it natively, ``on`` anywhere, ``off``
(float32 throughout). The precision it resolves to on a device enters the run's key."""

HPARAMS = ("epochs", "batch_size", "lr", "optimizer", "scheduler", "weight_decay",
           "label_smoothing", "seed", "augment")
"""The hyperparameters that enter a run's key as given."""

_LEGACY_HPARAMS = HPARAMS[:-1]
"""The hyperparameters keys of trainer version 1 held (before augmentation existed)."""

MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 8192
MAX_SEED = 2**31 - 1
CONTRACT_ARGS = ("num_classes", "in_channels", "input_size", "width", "stem", "small")
"""Model arguments the configuration sets itself; ``model_kwargs`` may not name them."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a trained run is (and nothing that does not).

    ``None`` means a default resolved from the model and the dataset: ``input_size`` and
    ``in_channels`` take the dataset's own (digits: 28 px, grey), raised to the model's
    recommended small input where the network needs more (VGG: 32 px); ``width`` takes the
    model's recommended small width (``model_info(name).small``); the sizes take
    :func:`cnncompare.data.default_sizes` and ``val_size`` 10% of ``train_size`` (held out
    of it: a run trains on ``train_size - val_size`` images). ``amp`` resolves, on the
    device a run trains on, to a precision (float32, bfloat16 or float16) that is part of
    the run's identity. The defaults are the shared recipe (Adam 1e-3, batch 32, 10
    epochs; one epoch of warm-up, the peak held, a linear decay over the last 30%: see
    :func:`cnncompare.training.build_scheduler`); ``benchmarks/README.md`` says how every
    family converges under it. The data's location and whether to download it are not part
    of a run's identity and are arguments of :func:`cnncompare.training.train_or_load`.
    """

    model: str
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    scheduler: str = "warmup_stable_decay"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool = False
    amp: str = "auto"
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    input_size: int | None = None
    in_channels: int | None = None
    width: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):  # amp=True/False as train_or_load used to take it
            object.__setattr__(self, "amp", "on" if self.amp else "off")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a model name, got {self.model!r}")
        positive_int(self.epochs, "epochs")
        if self.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be at most {MAX_EPOCHS:,}, got {self.epochs:,}")
        positive_int(self.batch_size, "batch_size")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be at most {MAX_BATCH_SIZE:,}, "
                             f"got {self.batch_size:,}")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                or not 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED:,}, got {self.seed!r}")
        if not _is_number(self.lr) or not (0 < self.lr <= 10):
            raise ValueError(f"lr must be a number in (0, 10], got {self.lr!r}")
        if not _is_number(self.weight_decay) or not (0 <= self.weight_decay <= 1):
            raise ValueError(f"weight_decay must be a number in [0, 1], got {self.weight_decay!r}")
        if not _is_number(self.label_smoothing) or not (0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, "
                             f"got {self.scheduler!r}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        for name in ("train_size", "val_size", "test_size", "input_size", "in_channels"):
            value = getattr(self, name)
            if value is not None:
                positive_int(value, name)
        if self.width is not None and (not _is_number(self.width) or not 0 < self.width <= 4):
            raise ValueError(f"width must be a number in (0, 4], got {self.width!r}")
        _check_model_kwargs(self.model_kwargs)

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def resolve(self, data_root: str | os.PathLike | None = None, download: bool = False, *,
                device: Any = "auto",
                allowed_roots: Sequence[str | os.PathLike] | None = None) -> ResolvedRun:
        """The canonical configuration and key on ``device``; checks that it can run
        (``ValueError``, or :class:`cnncompare.data.DatasetNotFoundError` when the data is
        missing and ``download`` is off). ``allowed_roots``: see :func:`cnncompare.data.resolve`
        (``None``, any path, for the command line; the app passes its allowed roots)."""
        return _resolve(self, data_root, download, device, allowed_roots)

    def key(self, data_root: str | os.PathLike | None = None, download: bool = False, *,
            device: Any = "auto",
            allowed_roots: Sequence[str | os.PathLike] | None = None) -> str:
        """The run id: a hash of the canonical configuration (model and its resolved
        arguments, model code version, data and split sizes, hyperparameters, seed,
        precision on ``device``).

        ``data_root`` is needed only to find which data a torchvision dataset or an image
        folder holds; its path does not enter the key, its content's fingerprint does.
        """
        return self.resolve(data_root, download, device=device,
                            allowed_roots=allowed_roots).run_id


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_model_kwargs(kwargs: Any) -> None:
    """Plain, JSON-ready values under names the configuration does not set itself."""
    if not isinstance(kwargs, dict):
        raise ValueError("model_kwargs must be a dict of argument names and values")
    for name, value in kwargs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"model argument names must be identifiers, got {name!r}")
        if name in CONTRACT_ARGS:
            raise ValueError(f"the model argument {name!r} is set by the configuration "
                             f"itself (its own option), not as an extra model argument")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"the model argument {name!r} must be true, false, a number or "
                             f"a string, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"the model argument {name!r} must be finite, got {value!r}")


def resolve_precision(amp: str, device: Any = "auto") -> str:
    """The precision (``float32``, ``bfloat16`` or ``float16``) that ``amp`` gives on
    ``device``; ``ValueError`` for a device that is unknown or absent here."""
    from cnncompare.runtime import autocast_dtype, precision_name

    use = {"auto": "auto", "on": True, "off": False}[amp]
    return precision_name(autocast_dtype(checked_device(device), use))


def checked_device(device: Any = "auto"):
    """``devices.resolve_device``, with torch's own complaint about a malformed name
    (``cpu:abc``) turned into the ``ValueError`` every bad argument gets."""
    from cnncompare.devices import resolve_device

    try:
        return resolve_device(device)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {str(device)!r}: {str(exc).splitlines()[0]}") from None


@dataclass(frozen=True)
class ResolvedRun:
    """A TrainConfig with every default filled in, and its key.

    ``canonical`` is what the key hashes; ``settings`` is the same information flattened
    for people and tables (one value per hyperparameter, size and model argument, and the
    precision).
    """

    config: TrainConfig
    model_config: ModelConfig
    data: datasets.DataSpec
    source: datasets.Source
    precision: str
    canonical: dict[str, Any] = field(compare=False, hash=False)
    run_id: str = ""

    @property
    def settings(self) -> dict[str, Any]:
        mc, spec = self.model_config, self.data
        return {
            **{k: getattr(self.config, k) for k in HPARAMS},
            "train_size": spec.train_size, "val_size": spec.val_size,
            "test_size": spec.test_size, "input_size": mc.input_size,
            "in_channels": mc.in_channels, "width": mc.width,
            "model_kwargs": json.dumps(mc.extra, sort_keys=True), "precision": self.precision,
        }

    def legacy_run_ids(self) -> list[str]:
        """The ids this configuration had under trainer version 1 (no validation split, no
        precision in the key), with and without the ``val_size`` field the data spec
        gained later: a store may hold such a run of the same settings, kept as it was."""
        if self.config.augment:
            return []
        data = self.data.as_dict()
        without_val = {k: v for k, v in data.items() if k != "val_size"}
        hparams = {k: getattr(self.config, k) for k in _LEGACY_HPARAMS}
        ids = []
        for spec in (data, without_val):
            ids.append(cache.stable_hash({
                "trainer": 1, "model": self.model_config.as_dict(),
                "model_version": self.canonical["model_version"], "data": spec,
                "hparams": hparams}))
        return ids


def _resolve(cfg: TrainConfig, data_root, download: bool, device,
             allowed_roots) -> ResolvedRun:
    info = model_info(cfg.model)  # unknown model: ValueError before any data is touched
    precision = resolve_precision(cfg.amp, device)
    dinfo = datasets.dataset_info(cfg.dataset)
    small = info.small
    width = cfg.width if cfg.width is not None else float(small.get("width", 1.0))
    input_size = cfg.input_size
    if input_size is None:
        input_size = dinfo.input_size
        if input_size < min_input_size(cfg.model, "small"):
            input_size = max(int(small["input_size"]), min_input_size(cfg.model, "small"))
    in_channels = cfg.in_channels if cfg.in_channels is not None else dinfo.in_channels
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if dinfo.class_names is not None:  # check the model before looking for files
        _check_model(cfg, len(dinfo.class_names), in_channels, input_size, width)
    spec, source = datasets.resolve(
        cfg.dataset, train_size=cfg.train_size, test_size=cfg.test_size, input_size=input_size,
        in_channels=in_channels, seed=cfg.seed, root=data_root, download=download,
        val_size=cfg.val_size, allowed_roots=allowed_roots)
    mc = _check_model(cfg, spec.num_classes, in_channels, input_size, width)
    canonical = {
        "trainer": TRAINER_VERSION,
        "model": mc.as_dict(),
        "model_version": info.version,
        "data": spec.as_dict(),
        "hparams": {k: getattr(cfg, k) for k in HPARAMS},
        "precision": precision,
    }
    return ResolvedRun(cfg, mc, spec, source, precision, canonical,
                       cache.stable_hash(canonical))


def _check_model(cfg: TrainConfig, num_classes: int, in_channels: int, input_size: int,
                 width: float) -> ModelConfig:
    """The model's configuration; extra model arguments are tried on the meta device (no
    memory), so an unknown name or a wrong type is a ``ValueError`` before any work."""
    mc = resolve_config(cfg.model, num_classes=num_classes, in_channels=in_channels,
                        input_size=input_size, width=width, **cfg.model_kwargs)
    if cfg.model_kwargs:
        try:
            count_params(cfg.model, num_classes=num_classes, in_channels=in_channels,
                         input_size=input_size, width=width, **cfg.model_kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            names = ", ".join(sorted(cfg.model_kwargs))
            raise ValueError(f"{cfg.model} does not accept the model argument(s) {names} as "
                             f"given: {str(exc).splitlines()[0]}") from None
    return mc


# --- Planning: which runs a choice on the Train page means, and which are stored ---------

PRESETS = {
    "quick": "Quick CPU compare: every model at its recommended small width",
    "full": "Full width (width 1): slower, closer to the papers' networks",
}


def plan_runs(models: Sequence[str], *, preset: str = "quick", seeds: Sequence[int] = (0,),
              **hyper: Any) -> list[TrainConfig]:
    """The :class:`TrainConfig` of each chosen model and seed (model-major order).

    ``quick`` leaves the width to the model's recommended small configuration
    (``model_info(name).small``); ``full`` trains at width 1 (unless ``hyper`` names a
    width). ``hyper`` holds the shared hyperparameters (dataset, epochs, batch_size, lr,
    optimizer, sizes, augment, amp).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if "seed" in hyper:
        seeds = (hyper.pop("seed"),)
    hyper.setdefault("width", None if preset == "quick" else 1.0)
    return [TrainConfig(model=m, seed=int(s), **hyper) for m in models for s in seeds]


STATUS_COLUMNS = ["model", "seed", "state", "epochs_done", "epochs", "test_acc",
                  "selected_epoch", "precision", "run_id"]


def run_status(configs: Sequence[TrainConfig], store: Any,
               data_root: str | os.PathLike | None = None, download: bool = False, *,
               device: Any = "auto", allowed_roots: Sequence[str | os.PathLike] | None = None,
               factor: str | None = None) -> pd.DataFrame:
    """One row per config: its seed, run id, precision, and whether it is ``stored``
    (finished), ``partial`` (resumes from its last finished epoch), ``training now`` or
    ``new``. ``test_acc`` is the stored run's test accuracy at ``selected_epoch`` (the
    epoch of best validation accuracy). With ``factor`` (a config field other than the
    model) its value gets a column after the model.

    With ``download`` a missing torchvision dataset resolves to what the download will
    give, so the plan (and its keys) can be shown before anything is fetched.
    """
    resolved = [c.resolve(data_root, download, device=device, allowed_roots=allowed_roots)
                for c in configs]
    stored = {r.run_id: r for r in store.records([r.run_id for r in resolved])}
    rows = []
    for cfg, res in zip(configs, resolved, strict=True):
        row = {"model": cfg.model, "seed": cfg.seed, "run_id": res.run_id,
               "epochs": cfg.epochs, "epochs_done": 0, "test_acc": None,
               "selected_epoch": None, "precision": res.precision, "state": "new"}
        rec = stored.get(res.run_id)
        if rec is not None:
            row["epochs_done"] = rec.epochs_done
            row["test_acc"] = rec.test_acc
            row["selected_epoch"] = rec.selected_epoch
            row["state"] = {"finished": "stored", "running": "training now"}.get(
                rec.status, "partial" if rec.epochs_done else "new")
        if factor and factor != "model":
            row[factor] = res.settings.get(factor, getattr(cfg, factor, None))
        rows.append(row)
    columns = list(STATUS_COLUMNS)
    if factor and factor != "model":
        columns.insert(1, factor)
    return pd.DataFrame(rows, columns=columns)
