"""Datasets for training, held in memory as uint8 tensors, split train / validation / test.

Where each dataset's files are and how they are read lives in :mod:`cnncompare.sources`
(one class per dataset: digits, IDX files for MNIST and Fashion-MNIST, CIFAR-10, image
folders); reading files within bounds in :mod:`cnncompare.datafiles`. This module turns
what a source holds into one shape of result, :class:`TensorData`: seeded, stratified,
disjoint train, validation and test splits of ``N x C x H x W`` uint8 tensors at the
requested size and channel count (1 or 3), plus :class:`DataMeta`, what the rest of the app
needs to show results and to preprocess a new image the same way (class names, channels,
size, normalisation mean/std, ink polarity). Nothing is decoded per sample during training.

Entry points: :func:`resolve` (fill in defaults, check the request against what is there;
a :class:`DataSpec` enters a run's key), :func:`load_spec` / :func:`load` (the tensors),
and :func:`check` (a cheap look, for a page, at whether the data is there or would be
downloaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from cnncompare import sources
from cnncompare.checks import positive_int
from cnncompare.datafiles import DATA_ROOTS_ENV, app_data_roots
from cnncompare.i18n import N_
from cnncompare.sources import (
    DARK_ON_LIGHT,
    DEFAULT_DATA_ROOT,
    LIGHT_ON_DARK,
    NATURAL,
    DatasetInfo,
    DatasetNotFoundError,
    Source,
    UnreadableImagesWarning,
    locate,
)

__all__ = [
    "DARK_ON_LIGHT", "DATASETS", "DATA_ROOTS_ENV", "DEFAULT_DATA_ROOT", "DOWNLOAD",
    "LIGHT_ON_DARK", "MISSING", "NATURAL", "READY", "DataCheck", "DataMeta", "DataSpec",
    "DatasetInfo", "DatasetNotFoundError", "Source", "SplitSizes", "TensorData",
    "UnreadableImagesWarning", "app_data_roots", "channel_stats", "check",
    "convert_channels", "dataset_info", "default_sizes", "default_val_size", "list_datasets",
    "load", "load_spec", "locate", "normalize", "resize", "resolve", "stratified_indices",
]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" conversion
_RESIZE_CHUNK = 4096
MAX_SPLIT_BYTES = 8 * 2**30
"""The largest train + test request, in uint8 pixels at the requested size and channels."""

DATASETS: dict[str, DatasetInfo] = {name: s.info for name, s in sources.SOURCES.items()}
"""Static facts about every dataset, by name, the offline default first."""


def list_datasets() -> list[str]:
    """The dataset names :func:`load` accepts, the offline default first."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Static facts about ``name``; ``ValueError`` naming the known datasets otherwise."""
    return sources.get_source(name).info


@dataclass(frozen=True)
class DataMeta:
    """What a trained model needs to know about its data (stored with every run).

    ``mean``/``std`` are per channel in [0, 1] pixel units, computed on the images trained
    on: a model's input is ``(pixels / 255 - mean) / std``. ``ink`` says whether strokes
    are light on a dark background (digits, MNIST), so an uploaded dark-on-light drawing
    can be inverted. ``train_size`` counts the images drawn for training, the ``val_size``
    held out for validation included (runs stored before validation existed have 0).
    """

    dataset: str
    class_names: tuple[str, ...]
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ink: str
    train_size: int
    test_size: int
    seed: int
    variant: str  # "bundled", "official", "test-split" or "folder"
    source: str  # where the images came from, for people
    val_size: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def as_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), ready for JSON and ``weights_only`` loads."""
        d = asdict(self)
        for k in ("class_names", "mean", "std"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("class_names", "mean", "std"):
            fields[k] = tuple(fields[k])
        return cls(**fields)


@dataclass
class TensorData:
    """Train, validation and test splits in memory: ``x_*`` uint8 ``N x C x H x W``,
    ``y_*`` int64. The three are disjoint; ``x_train`` holds the images trained on
    (``meta.train_size - meta.val_size`` of them)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: DataMeta

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32 model input, with this dataset's mean and std."""
        return normalize(x, self.meta.mean, self.meta.std)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, as float32, for uint8 (or [0, 255]) input."""
    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(shape) * 255.0
    return (x.float() - m) / s


# ---------------------------------------------------------------------------------------
# Split sizes and stratified splits


class SplitSizes(NamedTuple):
    """Images drawn for training (``val`` of them held out for validation) and for test."""

    train: int
    val: int
    test: int


def default_val_size(train_size: int) -> int:
    """Validation images held out of ``train_size`` training images when none are asked
    for: 10%, rounded half up, at least 1 (digits 144 of 1,437; MNIST 6,000 of 60,000;
    MNIST's test split alone 800 of 8,000; CIFAR-10 5,000 of 50,000).

    Why 10% of the training images, not more images from elsewhere: the test split stays
    exactly what it was (same size, same images for a seed), ``train_size`` keeps meaning
    the images a run draws for training, and existing requests such as 8,000 / 2,000 on
    MNIST's test split stay valid. 10% is the usual hold-out (CIFAR-10's 45,000 / 5,000 in
    the ResNet paper): on digits, 144 images estimate an accuracy near 97% to within about
    1.4 points (one standard error), enough to pick an epoch, while the network still
    trains on 90% of the images.
    """
    return max(1, (int(train_size) + 5) // 10)


def default_sizes(name: str, counts: dict[str, int] | None = None) -> SplitSizes:
    """Train (validation included), validation and test sizes used when none are given.

    ``counts`` are what the located source holds (``{"pool": n}`` or ``{"train": n,
    "test": m}``); without them, a full official download. digits: 1,437 (144) / 360; a
    full MNIST root: 60,000 (6,000) / 10,000; a root holding only MNIST's test split:
    8,000 (800) / 2,000; CIFAR-10: 50,000 (5,000) / 10,000; an image folder: 80% (10% of
    that) / 20% of its readable images.
    """
    src = sources.get_source(name)
    counts = counts or dict(src.official_counts)
    if not counts:
        raise ValueError(f"The default sizes of {src.info.title} depend on how many images it "
                         f"holds: pass its counts.")
    train, test = src.default_sizes(counts)
    return SplitSizes(train, default_val_size(train), test)


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over classes in proportion to ``counts`` (largest remainders), capped."""
    total = int(counts.sum())
    if n > total:
        raise ValueError(f"cannot take {n} items from {total}")
    quota = counts * (n / total)
    alloc = np.floor(quota).astype(np.int64)
    short = n - int(alloc.sum())
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[:short]] += 1
    return alloc


def stratified_indices(
    labels: torch.Tensor | np.ndarray, sizes: Sequence[int], seed: int
) -> list[np.ndarray]:
    """Disjoint, seeded subsets of ``labels``' indices with the given sizes, each with the
    class proportions of the whole (to within one item per class)."""
    y = np.asarray(labels)
    classes = np.unique(y)
    counts = np.array([(y == c).sum() for c in classes])
    need = sum(sizes)
    if need > len(y):
        raise ValueError(f"asked for {need:,} images but only {len(y):,} are available")
    total_alloc = _allocate(counts, need)
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    remaining = total_alloc.copy()
    start = np.zeros(len(classes), dtype=np.int64)
    out: list[np.ndarray] = []
    for i, n in enumerate(sizes):
        last = i == len(sizes) - 1
        take = remaining.copy() if last else _allocate(remaining, n)
        part = [m[s:s + t] for m, s, t in zip(members, start, take, strict=True)]
        out.append(np.sort(np.concatenate(part)) if part else np.empty(0, dtype=np.int64))
        start += take
        remaining -= take
    return out


def split_indices(pools: sources.Pools, sizes: SplitSizes, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the images trained on and of the validation images (both into
    ``pools.train``) and of the test images (into ``pools.test``, or ``pools.train`` when
    the source is one pool).

    The training images are drawn first, exactly as before validation existed (one pool:
    ``[train, test]`` with ``seed``; official splits: ``train`` from the train split with
    ``seed``, ``test`` from the test split with ``seed + 1``), so the test images of a
    seed do not depend on ``val``. The validation images are then a stratified subset of
    the training images, drawn with ``seed + 2``.
    """
    y = pools.train.y.numpy()
    if pools.test is None:
        drawn, test = stratified_indices(y, [sizes.train, sizes.test], seed)
    else:
        (drawn,) = stratified_indices(y, [sizes.train], seed)
        (test,) = stratified_indices(pools.test.y.numpy(), [sizes.test], seed + 1)
    fit, val = stratified_indices(y[drawn], [sizes.train - sizes.val, sizes.val], seed + 2)
    return drawn[fit], drawn[val], test


# ---------------------------------------------------------------------------------------
# Resizing and channels


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``N x C x H x W`` to 1 or 3 channels: grey is repeated, colour becomes luma."""
    if channels not in (1, 3):
        raise ValueError(f"images can be given 1 or 3 channels, not {channels}")
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3:
        w = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c}-channel images")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``N x C x H x W`` to ``size x size``: bilinear, antialiased when shrinking."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < max(x.shape[-2:])
    parts = []
    for chunk in x.split(_RESIZE_CHUNK):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=shrink)
        parts.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(parts)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (std at least 1e-3)."""
    xf = x.double().div_(255.0)
    dims = (0, 2, 3)
    mean = xf.mean(dims)
    std = xf.std(dims).clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


# ---------------------------------------------------------------------------------------
# The public entry points


@dataclass(frozen=True)
class DataSpec:
    """A fully resolved request for data: what goes into a run's key.

    ``train_size`` images are drawn for training and ``val_size`` of them held out for
    validation, so a run trains on ``train_size - val_size`` images.
    """

    dataset: str
    variant: str
    fingerprint: str
    train_size: int
    test_size: int
    input_size: int
    in_channels: int
    num_classes: int
    seed: int
    val_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def sizes(self) -> SplitSizes:
        return SplitSizes(self.train_size, self.val_size, self.test_size)


def _check_size(value: Any, what: str) -> int:
    return positive_int(value, what, (int, np.integer))


def resolve(
    name: str = "digits",
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    input_size: int | None = None,
    in_channels: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int | None = None,
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> tuple[DataSpec, Source]:
    """Fill in the defaults for a data request and check it against what is there.

    Sizes default to :func:`default_sizes`; ``val_size`` to :func:`default_val_size` of
    ``train_size`` (it must leave at least one image to train on). Reads no images, except
    an image folder's and CIFAR-10's batches (decoded once, then cached) and MNIST's IDX
    headers. Downloads nothing: with ``download`` a missing dataset resolves to what the
    download will give, and :func:`load_spec` fetches it. ``allowed_roots``: see
    :func:`cnncompare.sources.locate` (``None``: any path, for the command line; the app
    passes :func:`app_data_roots`). Raises ``ValueError`` for an impossible request and
    :class:`DatasetNotFoundError` for missing files.
    """
    src = sources.get_source(name)
    info = src.info
    input_size = _check_size(info.input_size if input_size is None else input_size,
                             "input_size")
    in_channels = _check_size(info.in_channels if in_channels is None else in_channels,
                              "in_channels")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    source = sources.locate(name, root, download, allowed_roots)
    counts = src.split_counts(source, input_size, in_channels)
    dtrain, dtest = src.default_sizes(counts)
    train_size = _check_size(dtrain if train_size is None else train_size, "train_size")
    test_size = _check_size(dtest if test_size is None else test_size, "test_size")
    val_size = _check_size(default_val_size(train_size) if val_size is None else val_size,
                           "val_size")
    if val_size >= train_size:
        raise ValueError(
            f"val_size ({val_size:,}) must be smaller than train_size ({train_size:,}): the "
            f"validation images are held out of the training images.")
    if "pool" in counts:
        if train_size + test_size > counts["pool"]:
            raise ValueError(
                f"{info.title} ({source.variant}) holds {counts['pool']:,} images; "
                f"train_size + test_size = {train_size + test_size:,} is more than that."
            )
    else:
        for split, n in (("train", train_size), ("test", test_size)):
            if n > counts[split]:
                raise ValueError(
                    f"{info.title}'s {split} split holds {counts[split]:,} images; "
                    f"{split}_size = {n:,} is more than that."
                )
    need = (train_size + test_size) * in_channels * input_size * input_size
    if need > MAX_SPLIT_BYTES:
        raise ValueError(
            f"{train_size + test_size:,} images of {in_channels} x {input_size} x {input_size} "
            f"pixels need {need / 2**30:.1f} GiB in memory, more than the "
            f"{MAX_SPLIT_BYTES / 2**30:.0f} GiB allowed. Choose a smaller input size or fewer "
            f"images.")
    num_classes = len(info.class_names or source.classes)
    spec = DataSpec(name, source.variant, source.fingerprint, train_size, test_size,
                    input_size, in_channels, num_classes, int(seed), val_size)
    return spec, source


def load(
    name: str = "digits",
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    input_size: int | None = None,
    in_channels: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int | None = None,
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> TensorData:
    """Load seeded, stratified train/validation/test splits of ``name`` into memory.

    Arguments as :func:`resolve`. Results are cached in the process; treat the returned
    tensors as read-only.
    """
    spec, source = resolve(name, train_size=train_size, test_size=test_size,
                           input_size=input_size, in_channels=in_channels, seed=seed,
                           root=root, download=download, val_size=val_size,
                           allowed_roots=allowed_roots)
    return load_spec(spec, source)


def load_spec(spec: DataSpec, source: Source) -> TensorData:
    """The :class:`TensorData` for a resolved spec (cached in the process); a source that
    is still to be downloaded is downloaded first."""
    source = sources.ensure_present(source)
    if source.fingerprint != spec.fingerprint:
        raise ValueError(f"{spec.dataset} changed since it was resolved; resolve it again.")
    return _load_spec(spec, source)


@lru_cache(maxsize=4)
def _load_spec(spec: DataSpec, source: Source) -> TensorData:
    src = sources.get_source(spec.dataset)
    pools = sources.read_pools(source, spec.input_size, spec.in_channels)
    fit, val, test = split_indices(pools, spec.sizes, spec.seed)
    test_pool = pools.train if pools.test is None else pools.test

    def take(pool: sources.Pool, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(idx)
        x = resize(convert_channels(pool.x.index_select(0, t), spec.in_channels),
                   spec.input_size)
        return x.contiguous(), pool.y.index_select(0, t).contiguous()

    (x_train, y_train), (x_val, y_val) = take(pools.train, fit), take(pools.train, val)
    x_test, y_test = take(test_pool, test)
    mean, std = channel_stats(x_train)
    meta = DataMeta(
        dataset=spec.dataset,
        class_names=tuple(pools.classes),
        in_channels=spec.in_channels,
        input_size=spec.input_size,
        mean=mean,
        std=std,
        ink=src.info.ink,
        train_size=spec.train_size,
        test_size=spec.test_size,
        seed=spec.seed,
        variant=spec.variant,
        source=src.describe(source, spec.train_size, spec.val_size, spec.test_size,
                            one_pool=pools.test is None),
        val_size=spec.val_size,
    )
    return TensorData(x_train, y_train, x_val, y_val, x_test, y_test, meta)


READY = "ready"
DOWNLOAD = "download"
MISSING = "missing"


@dataclass(frozen=True)
class DataCheck:
    """What :func:`check` found: ``state`` is :data:`READY` (the files are there),
    :data:`DOWNLOAD` (missing, and will be downloaded to ``location`` when training
    starts) or :data:`MISSING` (``error`` says why, in both wordings)."""

    dataset: str
    state: str
    location: str = ""
    error: DatasetNotFoundError | None = None

    @property
    def ok(self) -> bool:
        """Whether training can start (the data is there or will be downloaded)."""
        return self.state != MISSING

    def message(self, audience: str = "app") -> str:
        """One paragraph for people: ``audience`` ``"app"`` names the Train page's fields,
        ``"cli"`` the command's flags."""
        title = dataset_info(self.dataset).title
        if self.error is not None:
            return self.error.message(audience)
        if self.state == DOWNLOAD:
            return N_("{dataset} is not in {folder} yet: it will be downloaded there when "
                      "training starts (this needs internet access).", dataset=title,
                      folder=self.location)
        return N_("{dataset} is ready ({folder}).", dataset=title, folder=self.location)


def check(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> DataCheck:
    """A cheap look at whether dataset ``name`` can be used: it locates the files (IDX
    headers, file names, an image folder's bounded walk) but decodes no image and
    downloads nothing. ``ValueError`` for an unknown name or a folder beyond the walking
    bounds; a missing dataset is a :data:`MISSING` result, not an exception."""
    try:
        source = sources.locate(name, root, download, allowed_roots)
    except DatasetNotFoundError as exc:
        return DataCheck(name, MISSING, error=exc)
    return DataCheck(name, READY if source.present else DOWNLOAD, source.location)
