"""Datasets for training, held in memory as uint8 tensors.

Five sources, one shape of result (:class:`TensorData`):

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), upsampled. Offline and the
  default everywhere.
* ``mnist``, ``fashion-mnist``: the IDX files, from a local root (``raw`` files, gzipped or
  not) or downloaded by torchvision when asked. A root that holds only MNIST's test split
  (``t10k-*``) is accepted: its 10,000 images are split into train and test subsets.
* ``cifar10``: torchvision's python batches, from a local root or downloaded.
* ``imagefolder``: a user's folder with one subfolder per class, decoded once and resized.

Every dataset comes out as a seeded, stratified train/test pair of ``N x C x H x W`` uint8
tensors at the requested size and channel count (1 or 3), plus :class:`DataMeta`: what
the rest of the app needs to show results and to preprocess a new image the same way
(class names, channels, size, normalisation mean/std, ink polarity). Nothing is decoded
per sample during training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnncompare import paths
from cnncompare.checks import positive_int, unknown_name

DEFAULT_DATA_ROOT = paths.DATA_DIR / "datasets"
"""Where torchvision datasets are looked for (and downloaded to) when no root is given."""

LIGHT_ON_DARK = "light-on-dark"
DARK_ON_LIGHT = "dark-on-light"
NATURAL = "natural"

_DIGIT_NAMES = tuple(str(i) for i in range(10))
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" conversion
_RESIZE_CHUNK = 4096


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where we looked; the message says where and how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without reading any file."""

    name: str
    title: str
    in_channels: int  # native channel count
    input_size: int  # default side length of the images we hand out
    ink: str  # LIGHT_ON_DARK, DARK_ON_LIGHT or NATURAL
    class_names: tuple[str, ...] | None  # None: read from the folder
    needs_root: bool  # False only for the bundled digits
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", "scikit-learn digits", 1, 28, LIGHT_ON_DARK, _DIGIT_NAMES, False,
        "1,797 handwritten 8x8 digits bundled with scikit-learn, upsampled; works offline.",
    ),
    "mnist": DatasetInfo(
        "mnist", "MNIST", 1, 28, LIGHT_ON_DARK, _DIGIT_NAMES, True,
        "70,000 handwritten 28x28 digits (60,000 train, 10,000 test).",
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", 1, 28, LIGHT_ON_DARK,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), True,
        "70,000 28x28 clothing images in 10 classes (60,000 train, 10,000 test).",
    ),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 3, 32, NATURAL,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), True,
        "60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test).",
    ),
    "imagefolder": DatasetInfo(
        "imagefolder", "Image folder", 3, 32, NATURAL, None, True,
        "Your own images: a folder with one subfolder per class.",
    ),
}


def list_datasets() -> list[str]:
    """The dataset names :func:`load` accepts, the offline default first."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Static facts about ``name``; ``ValueError`` naming the known datasets otherwise."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS), n=2)
    return DATASETS[name]


@dataclass(frozen=True)
class DataMeta:
    """What a trained model needs to know about its data (stored with every run).

    ``mean``/``std`` are per channel in [0, 1] pixel units: a model's input is
    ``(pixels / 255 - mean) / std``. ``ink`` says whether strokes are light on a dark
    background (digits, MNIST), so an uploaded dark-on-light drawing can be inverted.
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
    """A train/test pair held in memory: ``x_*`` uint8 ``N x C x H x W``, ``y_*`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
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
# Sources: where the files are, and what they hold


@dataclass(frozen=True)
class Source:
    """A located dataset: which files, and a fingerprint of what they hold.

    ``fingerprint`` enters the run key, so that two different image folders (or a full
    MNIST root and one holding only its test split) never share cached results, while the
    root's path itself does not matter.
    """

    name: str
    variant: str
    location: str
    fingerprint: str
    files: tuple[tuple[str, str], ...] = ()

    def file(self, key: str) -> str:
        return dict(self.files)[key]


_MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _roots(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser().resolve() if root is not None else DEFAULT_DATA_ROOT


def _how_to_get(root: Path) -> str:
    return (
        f"Get it with --download (download=True) on a machine with internet access "
        f"(saved under {root}), or point --data-root (data_root=) at a folder that holds it."
    )


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate_mnist(name: str, root: Path) -> Source | None:
    folders = [root / _MNIST_FOLDERS[name] / "raw", root / "raw", root]
    for folder in folders:
        found = {key: _find_idx(folder, stem) for key, stem in _IDX.items()}
        if all(found.values()):
            variant = "official"
        elif found["test_images"] and found["test_labels"]:
            variant = "test-split"
        else:
            continue
        files = tuple((k, str(v)) for k, v in found.items()
                      if v is not None and (variant == "official" or k.startswith("test")))
        return Source(name, variant, str(folder), f"{name}:{variant}", files)
    return None


def _mnist_not_found(name: str, root: Path) -> DatasetNotFoundError:
    title = DATASETS[name].title
    folders = [root / _MNIST_FOLDERS[name] / "raw", root / "raw", root]
    where = ", ".join(str(f) for f in folders)
    return DatasetNotFoundError(
        f"{title} not found: looked for {_IDX['train_images']}[.gz] and the other IDX files "
        f"(or at least the test split, {_IDX['test_images']}[.gz] and "
        f"{_IDX['test_labels']}[.gz]) in {where}. {_how_to_get(root)}"
    )


def _cifar_folder(root: Path) -> Path | None:
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            return folder
    return None


def _image_files(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    classes, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    return classes, samples


def _folder_fingerprint(root: Path, samples: list[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for path, label in sorted(samples):
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return "folder:" + h.hexdigest()[:16]


def locate(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """Find dataset ``name`` (downloading it first if asked and absent).

    Raises :class:`DatasetNotFoundError` with a message that says where it looked and how
    to get the data, or ``ValueError`` for an unknown name.
    """
    info = dataset_info(name)
    if name == "digits":
        return Source(name, "bundled", "scikit-learn", "digits:bundled")
    base = _roots(root)
    if name in _MNIST_FOLDERS:
        found = _locate_mnist(name, base)
        if found is None and download:
            _download(name, base)
            found = _locate_mnist(name, base)
        if found is None:
            raise _mnist_not_found(name, base)
        return found
    if name == "cifar10":
        folder = _cifar_folder(base)
        if folder is None and download:
            _download(name, base)
            folder = _cifar_folder(base)
        if folder is None:
            raise DatasetNotFoundError(
                f"{info.title} not found: looked for data_batch_1 ... test_batch in "
                f"{base / 'cifar-10-batches-py'} and {base}. {_how_to_get(base)}"
            )
        return Source(name, "official", str(folder), "cifar10:official")
    # imagefolder
    if root is None:
        raise DatasetNotFoundError(
            "The imagefolder dataset needs --data-root (data_root=) pointing at a folder with "
            "one subfolder of images per class."
        )
    if not base.is_dir():
        raise DatasetNotFoundError(f"Image folder {base} does not exist.")
    try:
        classes, samples = _image_files(base)
    except (FileNotFoundError, OSError) as exc:
        raise DatasetNotFoundError(
            f"Image folder {base} holds no usable class subfolders: {exc}"
        ) from None
    if len(classes) < 2:
        raise ValueError(f"Image folder {base} needs at least two class subfolders.")
    return Source(name, "folder", str(base), _folder_fingerprint(base, samples))


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any network or archive failure
        raise DatasetNotFoundError(
            f"Could not download {DATASETS[name].title} to {root}: {exc}. Without internet "
            f"access, point --data-root (data_root=) at a folder that holds it."
        ) from None


# ---------------------------------------------------------------------------------------
# Pools: every image of a source, at its native size


@dataclass(frozen=True)
class _Pool:
    """All images of one split (or of the only split), native size, uint8 N x C x H x W."""

    x: torch.Tensor
    y: torch.Tensor


def _read_idx(path: str, images: bool) -> torch.Tensor:
    """Read an IDX file (gzipped or not) with torchvision's own readers."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if images else read_label_file
    if not path.endswith(".gz"):
        return reader(path)
    with gzip.open(path, "rb") as f:
        blob = f.read()
    with tempfile.TemporaryDirectory(prefix="cnncompare-idx-") as tmp:
        plain = os.path.join(tmp, "data")
        with open(plain, "wb") as f:
            f.write(blob)
        return reader(plain)


@lru_cache(maxsize=4)
def _pools(source: Source) -> tuple[_Pool, _Pool | None, tuple[str, ...]]:
    """(train or only pool, test pool or None, class names) for a located source."""
    if source.name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8))
        return _Pool(x.unsqueeze(1), torch.from_numpy(d.target.astype(np.int64))), None, \
            _DIGIT_NAMES
    if source.name in _MNIST_FOLDERS:
        names = DATASETS[source.name].class_names or ()
        try:
            def pool(split: str) -> _Pool:
                x = _read_idx(source.file(f"{split}_images"), images=True)
                y = _read_idx(source.file(f"{split}_labels"), images=False)
                if len(x) != len(y):
                    raise ValueError(f"{len(x)} images but {len(y)} labels")
                return _Pool(x.unsqueeze(1), y)

            test = pool("test")
            if source.variant == "test-split":
                return test, None, names
            return pool("train"), test, names
        except (OSError, EOFError, ValueError, TypeError, AssertionError, RuntimeError) as exc:
            raise DatasetNotFoundError(
                f"{DATASETS[source.name].title} files in {source.location} are unreadable "
                f"({exc}). Download them again with --download, or check --data-root."
            ) from None
    if source.name == "cifar10":
        import torchvision.datasets as tvd

        root = str(Path(source.location).parent)
        try:
            tr = tvd.CIFAR10(root, train=True, download=False)
            te = tvd.CIFAR10(root, train=False, download=False)
        except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError or pickle errors
            raise DatasetNotFoundError(
                f"CIFAR-10 in {source.location} is unreadable ({exc}). "
                f"{_how_to_get(Path(root))}"
            ) from None

        def as_pool(ds) -> _Pool:
            x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
            return _Pool(x, torch.tensor(ds.targets, dtype=torch.int64))

        return as_pool(tr), as_pool(te), tuple(tr.classes)
    raise AssertionError(f"no pool reader for {source.name}")  # imagefolder is read elsewhere


@lru_cache(maxsize=2)
def _folder_pool(source: Source, size: int, channels: int) -> tuple[_Pool, tuple[str, ...]]:
    """Decode every image of an image folder once, square-cropped and resized."""
    from PIL import Image, ImageOps

    classes, samples = _image_files(Path(source.location))
    mode = "L" if channels == 1 else "RGB"
    xs: list[np.ndarray] = []
    ys: list[int] = []
    bad: list[str] = []
    for path, label in samples:
        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img).convert(mode)
                img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            bad.append(f"{os.path.relpath(path, source.location)} ({exc})")
            continue
        xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        ys.append(label)
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        warnings.warn(f"Skipped {len(bad)} unreadable image(s) in {source.location}: {shown}",
                      stacklevel=2)
    if not xs:
        raise DatasetNotFoundError(f"No readable images in {source.location}.")
    x = torch.from_numpy(np.stack(xs))
    return _Pool(x, torch.tensor(ys, dtype=torch.int64)), tuple(classes)


# ---------------------------------------------------------------------------------------
# Subsets, resizing, channels


def default_sizes(name: str, variant: str, available: int | None = None) -> tuple[int, int]:
    """Train and test sizes used when none are given.

    digits: 1,437 / 360 (all 1,797, stratified 80/20). A full torchvision root: the
    official splits in full. A root holding only MNIST's test split: 8,000 / 2,000. An image
    folder: 80/20 of what it holds.
    """
    if name == "digits":
        return 1437, 360
    if variant == "test-split":
        return 8000, 2000
    if name in _MNIST_FOLDERS:
        return 60000, 10000
    if name == "cifar10":
        return 50000, 10000
    if available is None:
        raise ValueError("an image folder's default sizes depend on how many images it holds")
    train = int(available * 0.8)
    return train, available - train


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
# The public entry point


@dataclass(frozen=True)
class DataSpec:
    """A fully resolved request for data: what goes into a run's key."""

    dataset: str
    variant: str
    fingerprint: str
    train_size: int
    test_size: int
    input_size: int
    in_channels: int
    num_classes: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
) -> tuple[DataSpec, Source]:
    """Fill in the defaults for a data request and check it against what is there.

    Reads no images, except an image folder's (decoded once, then cached). Raises
    ``ValueError`` for an impossible request and :class:`DatasetNotFoundError` for missing
    files.
    """
    info = dataset_info(name)
    source = locate(name, root, download)
    input_size = _check_size(info.input_size if input_size is None else input_size,
                             "input_size")
    in_channels = _check_size(info.in_channels if in_channels is None else in_channels,
                              "in_channels")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if name == "imagefolder":
        # Decoded here (once; cached) so that unreadable files do not count as images.
        pool, classes = _folder_pool(source, input_size, in_channels)
        available = {"pool": len(pool.y)}
        num_classes = len(classes)
    else:
        num_classes = len(info.class_names or ())
        available = _available(source)
    dtrain, dtest = default_sizes(name, source.variant, available.get("pool"))
    train_size = _check_size(dtrain if train_size is None else train_size, "train_size")
    test_size = _check_size(dtest if test_size is None else test_size, "test_size")
    if "pool" in available:
        if train_size + test_size > available["pool"]:
            raise ValueError(
                f"{info.title} ({source.variant}) holds {available['pool']:,} images; "
                f"train_size + test_size = {train_size + test_size:,} is more than that."
            )
    else:
        for split, n in (("train", train_size), ("test", test_size)):
            if n > available[split]:
                raise ValueError(
                    f"{info.title}'s {split} split holds {available[split]:,} images; "
                    f"{split}_size = {n:,} is more than that."
                )
    spec = DataSpec(name, source.variant, source.fingerprint, train_size, test_size,
                    input_size, in_channels, num_classes, int(seed))
    return spec, source


_SPLIT_COUNTS = {
    ("digits", "bundled"): {"pool": 1797},
    ("mnist", "official"): {"train": 60000, "test": 10000},
    ("mnist", "test-split"): {"pool": 10000},
    ("fashion-mnist", "official"): {"train": 60000, "test": 10000},
    ("fashion-mnist", "test-split"): {"pool": 10000},
    ("cifar10", "official"): {"train": 50000, "test": 10000},
}


def _available(source: Source) -> dict[str, int]:
    return _SPLIT_COUNTS[(source.name, source.variant)]


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
) -> TensorData:
    """Load a seeded, stratified train/test pair of ``name`` into memory.

    ``input_size`` and ``in_channels`` default to the dataset's own (digits: 28 px, grey);
    ``train_size``/``test_size`` to :func:`default_sizes`. Results are cached in the
    process; treat the returned tensors as read-only.
    """
    spec, source = resolve(name, train_size=train_size, test_size=test_size,
                           input_size=input_size, in_channels=in_channels, seed=seed,
                           root=root, download=download)
    return load_spec(spec, source)


def load_spec(spec: DataSpec, source: Source) -> TensorData:
    """The :class:`TensorData` for a resolved spec (cached in the process)."""
    return _load_spec(spec, source)


@lru_cache(maxsize=4)
def _load_spec(spec: DataSpec, source: Source) -> TensorData:
    info = DATASETS[spec.dataset]
    if spec.dataset == "imagefolder":
        pool, classes = _folder_pool(source, spec.input_size, spec.in_channels)
        train_pool, test_pool = pool, None
    else:
        train_pool, test_pool, classes = _pools(source)
    if test_pool is None:
        tr, te = stratified_indices(train_pool.y, [spec.train_size, spec.test_size], spec.seed)
        parts = [(train_pool, tr), (train_pool, te)]
    else:
        (tr,) = stratified_indices(train_pool.y, [spec.train_size], spec.seed)
        (te,) = stratified_indices(test_pool.y, [spec.test_size], spec.seed + 1)
        parts = [(train_pool, tr), (test_pool, te)]
    xs, ys = [], []
    for pool, idx in parts:
        t = torch.from_numpy(idx)
        x = pool.x.index_select(0, t)
        x = resize(convert_channels(x, spec.in_channels), spec.input_size)
        xs.append(x.contiguous())
        ys.append(pool.y.index_select(0, t).contiguous())
    mean, std = channel_stats(xs[0])
    meta = DataMeta(
        dataset=spec.dataset,
        class_names=tuple(classes),
        in_channels=spec.in_channels,
        input_size=spec.input_size,
        mean=mean,
        std=std,
        ink=info.ink,
        train_size=spec.train_size,
        test_size=spec.test_size,
        seed=spec.seed,
        variant=spec.variant,
        source=_describe(spec, source),
    )
    return TensorData(xs[0], ys[0], xs[1], ys[1], meta)


def _describe(spec: DataSpec, source: Source) -> str:
    title = DATASETS[spec.dataset].title
    if spec.variant == "bundled":
        return f"{title}, stratified {spec.train_size}/{spec.test_size}"
    if spec.variant == "test-split":
        return (f"{title} test split only ({source.location}), stratified "
                f"{spec.train_size}/{spec.test_size}")
    if spec.variant == "folder":
        return f"{source.location}, stratified {spec.train_size}/{spec.test_size}"
    return (f"{title} ({source.location}): {spec.train_size} from the train split, "
            f"{spec.test_size} from the test split")
