"""What a training run *is*: its configuration, its key, and the Train page's plan.

A :class:`TrainConfig` says everything that decides what a trained run is, and nothing
that does not (the device, where the data lives). :meth:`TrainConfig.resolve` fills in
every default from the model and the dataset and hashes the result into the run id, the
key of the results store: the same configuration always finds the same run.

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
from cnncompare.registry import ModelConfig, min_input_size, model_info, resolve_config

TRAINER_VERSION = 1
"""Bump when a change to the trainer changes what a trained run means (it enters keys)."""

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "step", "cosine")

HPARAMS = ("epochs", "batch_size", "lr", "optimizer", "scheduler", "weight_decay",
           "label_smoothing", "seed")
"""The hyperparameters that enter a run's key as given."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a trained run is (and nothing that does not).

    ``None`` means a default resolved from the model and the dataset: ``input_size`` and
    ``in_channels`` take the dataset's own (digits: 28 px, grey), raised to the model's
    recommended small input where the network needs more (VGG: 32 px); ``width`` takes the
    model's recommended small width (``model_info(name).small``); the sizes take
    :func:`cnncompare.data.default_sizes`. The device, the data's location and whether to
    download it are not part of a run's identity and are arguments of
    :func:`cnncompare.training.train_or_load`.
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
    """A TrainConfig with every default filled in, and its key.

    ``canonical`` is what the key hashes; ``settings`` is the same information flattened
    for people and tables (one value per hyperparameter, size and model argument).
    """

    config: TrainConfig
    model_config: ModelConfig
    data: datasets.DataSpec
    source: datasets.Source
    canonical: dict[str, Any] = field(compare=False, hash=False)
    run_id: str = ""

    @property
    def settings(self) -> dict[str, Any]:
        mc, spec = self.model_config, self.data
        return {
            **{k: getattr(self.config, k) for k in HPARAMS},
            "train_size": spec.train_size, "test_size": spec.test_size,
            "input_size": mc.input_size, "in_channels": mc.in_channels, "width": mc.width,
            "model_kwargs": json.dumps(mc.extra, sort_keys=True),
        }


def _resolve(cfg: TrainConfig, data_root, download: bool) -> ResolvedRun:
    info = model_info(cfg.model)  # unknown model: ValueError before any data is touched
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
        "hparams": {k: getattr(cfg, k) for k in HPARAMS},
    }
    return ResolvedRun(cfg, mc, spec, source, canonical, cache.stable_hash(canonical))


# --- Planning: which runs a choice on the Train page means, and which are stored ---------

PRESETS = {
    "quick": "Quick CPU compare: every model at its recommended small width",
    "full": "Full width (width 1): slower, closer to the papers' networks",
}


def plan_runs(models: Sequence[str], *, preset: str = "quick", **hyper: Any) -> list[TrainConfig]:
    """The :class:`TrainConfig` of each chosen model.

    ``quick`` leaves the width to the model's recommended small configuration
    (``model_info(name).small``); ``full`` trains at width 1. ``hyper`` holds the shared
    hyperparameters (dataset, epochs, batch_size, lr, optimizer, seed, sizes).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    width = None if preset == "quick" else 1.0
    return [TrainConfig(model=m, width=width, **hyper) for m in models]


STATUS_COLUMNS = ["model", "state", "epochs_done", "epochs", "test_acc", "run_id"]


def run_status(configs: Sequence[TrainConfig], store: Any,
               data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per config: its run id and whether it is ``stored`` (finished),
    ``partial`` (resumes from its last finished epoch), ``training now`` or ``new``."""
    ids = [cfg.key(data_root) for cfg in configs]
    stored = {r.run_id: r for r in store.records(ids)}
    rows = []
    for cfg, run_id in zip(configs, ids, strict=True):
        row = {"model": cfg.model, "run_id": run_id, "epochs": cfg.epochs, "epochs_done": 0,
               "test_acc": None, "state": "new"}
        rec = stored.get(run_id)
        if rec is not None:
            row["epochs_done"] = rec.epochs_done
            row["test_acc"] = rec.test_acc
            row["state"] = {"finished": "stored", "running": "training now"}.get(
                rec.status, "partial" if rec.epochs_done else "new")
        rows.append(row)
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)
