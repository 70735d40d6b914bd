"""Where each dataset's files are and how they are read: one source class per dataset.

* :class:`DigitsSource`: scikit-learn's bundled 8x8 digits (1,797 images); offline.
* :class:`IdxSource`: MNIST and Fashion-MNIST, the four IDX files (gzipped or not) of
  torchvision's layout, or only the test pair (``t10k-*``), which is then split.
* :class:`CifarSource`: CIFAR-10's python batches (``cifar-10-batches-py``).
* :class:`ImageFolderSource`: a user's folder with one subfolder per class.

Each source answers four questions: where its files are (:meth:`DatasetSource.locate`,
giving a :class:`Source`), what they hold (:meth:`DatasetSource.read`, giving
:class:`Pools` of uint8 images at native size), the default train/test sizes
(:meth:`DatasetSource.default_sizes`) and how to describe a split for people
(:meth:`DatasetSource.describe`). :mod:`cnncompare.data` turns pools into seeded,
stratified splits; nothing here depends on it.

Reading is bounded wherever the files come from (see :mod:`cnncompare.datafiles`): a data
root can be confined to allowed folders (the app passes
:func:`cnncompare.datafiles.app_data_roots`; the CLI passes ``None``, any path), and then no
file is read through a link out of them; folders are walked, IDX files and CIFAR batches
read within fixed bounds; an image folder's pictures are decoded at the size needed, and
one that cannot be decoded is skipped and counted in one warning.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cnncompare import datafiles, paths
from cnncompare.checks import unknown_name
from cnncompare.i18n import N_, Text

DEFAULT_DATA_ROOT = paths.DATA_DIR / "datasets"
"""Where torchvision datasets are looked for (and downloaded to) when no root is given."""

MAX_IMAGE_PIXELS = 40_000_000
"""A picture in an image folder larger than this (width x height) is skipped, not decoded."""
MAX_DECODED_BYTES = 4 * 2**30
"""Decoded pixels an image folder may produce at the requested size and channels."""

LIGHT_ON_DARK = "light-on-dark"
DARK_ON_LIGHT = "dark-on-light"
NATURAL = "natural"

_DIGIT_NAMES = tuple(str(i) for i in range(10))

# How to get missing data, worded for each place a message is shown.
_GET_IT = {
    "cli": "Get it with --download on a machine with internet access (it is saved under "
           "{root}), or point --data-root at a folder that holds it.",
    "app": N_("Tick \u201cDownload if missing\u201d to fetch it when training starts (the "
              "server needs internet access; it is saved under {root}), or enter in "
              "\u201cData root\u201d a folder that holds it."),
}
_REPLACE_IT = {
    "cli": "Delete them and get them again with --download, or point --data-root at another "
           "folder.",
    "app": N_("Delete them and tick \u201cDownload if missing\u201d, or enter another folder "
              "in \u201cData root\u201d."),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing, unreadable, or outside the folders allowed.

    ``str(error)`` is the command line's wording (it names ``--data-root`` and
    ``--download``); :attr:`app_message` says the same with the Train page's fields
    ("Data root", "Download if missing"). :meth:`message` picks one by audience.
    """

    def __init__(self, cli_message: str, app_message: str | None = None) -> None:
        super().__init__(cli_message)
        self.cli_message = cli_message
        self.app_message = cli_message if app_message is None else app_message

    def message(self, audience: str = "cli") -> str:
        """The wording for ``audience``: ``"cli"`` (flags) or ``"app"`` (page fields)."""
        return self.app_message if audience == "app" else self.cli_message


def _not_found(first: str, how: dict[str, str], **fields: Any) -> DatasetNotFoundError:
    """An error whose first sentence is shared and whose second tells each audience what
    to do; ``fields`` fill the named placeholders of both. The app's wording stays a marked
    :class:`~cnncompare.i18n.Text` (two whole sentences), translated where it is shown."""
    fields = {k: str(v) for k, v in fields.items()}
    then = Text(how["app"], **fields) if fields else how["app"]
    return DatasetNotFoundError(f"{first} {how['cli'].format(**fields)}",
                                N_("{first} {then}", first=first, then=then))


class UnreadableImagesWarning(UserWarning):
    """Some files of an image folder could not be decoded and were skipped."""

    def __init__(self, message: str, count: int, examples: tuple[str, ...]) -> None:
        super().__init__(message)
        self.count = count
        self.examples = examples


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
    downloadable: bool = False  # torchvision can fetch it


@dataclass(frozen=True)
class Source:
    """A located dataset: which files, and a fingerprint of what they hold.

    ``fingerprint`` enters the run key, so that two different image folders (or a full
    MNIST root and one holding only its test split) never share cached results, while the
    root's path itself does not matter. ``present`` is False for a dataset that is missing
    but will be downloaded to ``location`` when it is first read. ``counts`` are the images
    per split where they are known without decoding (``{"train", "test"}`` or ``{"pool"}``).
    """

    name: str
    variant: str
    location: str
    fingerprint: str
    files: tuple[tuple[str, str], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    present: bool = True
    classes: tuple[str, ...] = ()
    samples: tuple[tuple[str, int], ...] = field(default=(), compare=False, hash=False,
                                                 repr=False)

    def file(self, key: str) -> str:
        return dict(self.files)[key]


class Pool(NamedTuple):
    """Every image of one split at native size: ``x`` uint8 ``N x C x H x W``, ``y`` int64."""

    x: torch.Tensor
    y: torch.Tensor


class Pools(NamedTuple):
    """What a source holds: the train split (or the only pool), the test split (None when
    the source has one pool to split), class names, and files skipped as unreadable."""

    train: Pool
    test: Pool | None
    classes: tuple[str, ...]
    skipped: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Data roots


def not_allowed_error(title: str, root: str | os.PathLike) -> DatasetNotFoundError:
    """The one message for a data root that does not exist or may not be read here: it
    does not say which, so the app reveals nothing about the server's files."""
    return DatasetNotFoundError(N_(
        "Cannot read {dataset} from {root}: the folder was not found or is not allowed. Data "
        "roots must be inside one of the folders this server allows (the results home, the "
        "project's data folder, or one named in {env}).", dataset=title, root=os.fspath(root),
        env=datafiles.DATA_ROOTS_ENV))


def _data_root(src: DatasetSource, root: str | os.PathLike | None, download: bool,
               allowed_roots: Sequence[str | os.PathLike] | None) -> Path:
    """The real path of the folder to look in; checks it against ``allowed_roots``."""
    if root is None or not str(root).strip():
        if src.default_root is None:
            raise src.root_needed()
        return src.default_root
    try:
        base = Path(os.path.realpath(Path(root).expanduser()))
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a loop, a name too long
        raise not_allowed_error(src.info.title, root) from None
    if allowed_roots is not None:
        allowed = any(datafiles.inside(base, a) for a in allowed_roots)
        exists = base.is_dir() or (download and src.info.downloadable and not base.exists())
        if not (allowed and exists):
            raise not_allowed_error(src.info.title, root)
    return base


# ---------------------------------------------------------------------------------------
# The sources


class DatasetSource:
    """One dataset: its facts (:attr:`info`) and how its files are found and read.

    Subclasses implement :meth:`locate` and :meth:`read`; :meth:`default_sizes` and
    :meth:`describe` work from what a located source holds and may be overridden.
    """

    info: DatasetInfo
    default_root: Path | None = DEFAULT_DATA_ROOT  # None: a root must be given
    official_counts: dict[str, int] = {}  # what a download gives (digits: what it holds)
    test_fraction = 0.2  # share of a single pool kept for test by default
    reads_at_size = False  # True: read() decodes at the requested size (image folders)

    def locate(self, base: Path, *, download: bool,
               confine: Sequence[str | os.PathLike] | None) -> Source:
        """The :class:`Source` in folder ``base`` (a planned download when it is absent
        and ``download`` is set); :class:`DatasetNotFoundError` otherwise. With
        ``confine``, a file is used only if its real path (links followed) lies inside
        one of those folders."""
        raise NotImplementedError

    def root_needed(self) -> DatasetNotFoundError:
        """The error for a dataset without a default root when none is given."""
        return DatasetNotFoundError(N_("{dataset} needs a data root.", dataset=self.info.title))

    def read(self, source: Source, input_size: int, in_channels: int) -> Pools:
        """Every image of a located source, at native size (image folders: at
        ``input_size`` with ``in_channels``, decoded once)."""
        raise NotImplementedError

    def fetch(self, source: Source) -> Source:
        """Download a planned source and locate it again."""
        raise DatasetNotFoundError(N_("{dataset} cannot be downloaded.",
                                      dataset=self.info.title))

    def split_counts(self, source: Source, input_size: int, in_channels: int) -> dict[str, int]:
        """Images per split: ``{"train": n, "test": m}`` or ``{"pool": n}``."""
        if source.counts:
            return dict(source.counts)
        pools = read_pools(source, input_size, in_channels)
        if pools.test is None:
            return {"pool": len(pools.train.y)}
        return {"train": len(pools.train.y), "test": len(pools.test.y)}

    def default_sizes(self, counts: dict[str, int]) -> tuple[int, int]:
        """Train and test sizes used when none are given: official splits in full; a single
        pool split ``1 - test_fraction`` / ``test_fraction`` (digits: 1,437 / 360; MNIST's
        test split alone: 8,000 / 2,000)."""
        if "pool" in counts:
            train = int(counts["pool"] * (1 - self.test_fraction))
            return train, counts["pool"] - train
        return counts["train"], counts["test"]

    def describe(self, source: Source, train: int, val: int, test: int, one_pool: bool) -> str:
        """Where a split of ``train`` images (``val`` of them held out for validation) and
        ``test`` images came from, for people; ``one_pool``: all three come from one pool."""
        title = self.info.title
        if one_pool:
            where = title if source.variant == "bundled" else f"{title} ({source.location})"
            return (f"{where}: {train - val} train, {val} validation and {test} test images, "
                    f"stratified")
        return (f"{title} ({source.location}): {train - val} train and {val} validation images "
                f"from the train split, {test} test images from the test split")


class DigitsSource(DatasetSource):
    """scikit-learn's 1,797 bundled 8x8 digits, scaled to 0..255; no files, no root."""

    info = DatasetInfo(
        "digits", N_("scikit-learn digits"), 1, 28, LIGHT_ON_DARK, _DIGIT_NAMES, False,
        N_("1,797 handwritten 8x8 digits bundled with scikit-learn, upsampled; works "
           "offline."),
    )
    official_counts = {"pool": 1797}

    def locate(self, base: Path, *, download: bool,
               confine: Sequence[str | os.PathLike] | None) -> Source:
        return Source("digits", "bundled", "scikit-learn", "digits:bundled",
                      counts=tuple(self.official_counts.items()))

    def read(self, source: Source, input_size: int, in_channels: int) -> Pools:
        from sklearn.datasets import load_digits  # scikit-learn loads slowly: only when read

        d = load_digits()
        x = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8))
        return Pools(Pool(x.unsqueeze(1), torch.from_numpy(d.target.astype(np.int64))), None,
                     _DIGIT_NAMES)


_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class IdxSource(DatasetSource):
    """MNIST-style IDX files in ``root/<Folder>/raw``, ``root/raw`` or ``root`` itself."""

    official_counts = {"train": 60000, "test": 10000}

    def __init__(self, info: DatasetInfo, torchvision_class: str) -> None:
        self.info = info
        # torchvision's class, which also names the folder it downloads to: MNIST, FashionMNIST
        self.torchvision_class = torchvision_class

    def _folders(self, base: Path) -> list[Path]:
        return [base / self.torchvision_class / "raw", base / "raw", base]

    def locate(self, base: Path, *, download: bool,
               confine: Sequence[str | os.PathLike] | None) -> Source:
        for folder in self._folders(base):
            found = {key: self._find(folder, stem, confine) for key, stem in _IDX_FILES.items()}
            if all(found.values()):
                variant, keys = "official", list(_IDX_FILES)
            elif found["test_images"] and found["test_labels"]:
                variant, keys = "test-split", ["test_images", "test_labels"]
            else:
                continue
            files = tuple((k, str(found[k])) for k in keys)
            counts = self._counts(folder, dict(files))
            if variant == "test-split":
                counts = {"pool": counts["test"]}
            return Source(self.info.name, variant, str(folder), f"{self.info.name}:{variant}",
                          files, tuple(counts.items()))
        if download:
            return Source(self.info.name, "official", str(self._folders(base)[0]),
                          f"{self.info.name}:official",
                          counts=tuple(self.official_counts.items()), present=False)
        where = ", ".join(str(f) for f in self._folders(base))
        raise _not_found(N_(
            "{dataset} not found: looked for {train}[.gz] and the other IDX files (or at least "
            "the test split, {test}[.gz] and {labels}[.gz]) in {where}.",
            dataset=self.info.title, train=_IDX_FILES["train_images"],
            test=_IDX_FILES["test_images"], labels=_IDX_FILES["test_labels"], where=where),
            _GET_IT, root=base)

    @staticmethod
    def _find(folder: Path, stem: str,
              confine: Sequence[str | os.PathLike] | None) -> Path | None:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if datafiles.regular_file(candidate, confine):
                return candidate
        return None

    def _counts(self, folder: Path, files: dict[str, str]) -> dict[str, int]:
        """Images per split from the headers alone; images and labels must agree."""
        counts = {}
        try:
            for split in ("train", "test"):
                if f"{split}_images" not in files:
                    continue
                images = datafiles.idx_header(files[f"{split}_images"])
                labels = datafiles.idx_header(files[f"{split}_labels"])
                if len(images) != 3 or len(labels) != 1 or images[0] != labels[0]:
                    raise ValueError(f"the {split} files disagree: images {images}, "
                                     f"labels {labels}")
                counts[split] = images[0]
        except datafiles.IDX_ERRORS as exc:
            raise self._unreadable(folder, exc) from None
        return counts

    def _unreadable(self, folder: Path | str, exc: Exception) -> DatasetNotFoundError:
        return _not_found(N_("{dataset} files in {folder} are unreadable ({error}).",
                             dataset=self.info.title, folder=str(folder), error=str(exc)),
                          _REPLACE_IT)

    def read(self, source: Source, input_size: int, in_channels: int) -> Pools:
        def pool(split: str) -> Pool:
            x = datafiles.read_idx(source.file(f"{split}_images"))
            y = datafiles.read_idx(source.file(f"{split}_labels")).to(torch.int64)
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images but {len(y)} labels")
            if len(y) and int(y.max()) >= len(names):
                raise ValueError(f"a label is {int(y.max())}, but there are {len(names)} classes")
            return Pool(x.unsqueeze(1), y)

        names = self.info.class_names or ()
        try:
            test = pool("test")
            if source.variant == "test-split":
                return Pools(test, None, names)
            return Pools(pool("train"), test, names)
        except datafiles.IDX_ERRORS as exc:
            raise self._unreadable(source.location, exc) from None

    def fetch(self, source: Source) -> Source:
        import torchvision.datasets as tvd  # torchvision's datasets load slowly: only here
        from torchvision.datasets import utils as tvu

        raw = Path(source.location)
        cls = getattr(tvd, self.torchvision_class)
        raw.mkdir(parents=True, exist_ok=True)
        for filename, md5 in cls.resources:
            errors = []
            for mirror in cls.mirrors:
                try:
                    tvu.download_and_extract_archive(f"{mirror}{filename}", download_root=str(raw),
                                                     filename=filename, md5=md5)
                    break
                except Exception as exc:  # noqa: BLE001 - network, HTTP or archive failures
                    errors.append(f"{mirror}: {exc}")
            else:
                raise _download_failed(self.info, raw, "; ".join(errors))
        return _refound(self, raw.parents[1])


class CifarSource(DatasetSource):
    """CIFAR-10's python batches in ``root/cifar-10-batches-py`` or ``root`` itself."""

    info = DatasetInfo(
        "cifar10", "CIFAR-10", 3, 32, NATURAL,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), True,
        N_("60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test)."), True,
    )
    official_counts = {"train": 50000, "test": 10000}
    batches = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

    def locate(self, base: Path, *, download: bool,
               confine: Sequence[str | os.PathLike] | None) -> Source:
        for folder in (base / "cifar-10-batches-py", base):
            if all(datafiles.regular_file(folder / b, confine) for b in self.batches):
                files = tuple((b, str(folder / b)) for b in self.batches)
                return Source("cifar10", "official", str(folder), "cifar10:official", files)
        if download:
            return Source("cifar10", "official", str(base / "cifar-10-batches-py"),
                          "cifar10:official", counts=tuple(self.official_counts.items()),
                          present=False)
        raise _not_found(N_(
            "{dataset} not found: looked for data_batch_1 ... data_batch_5 and test_batch in "
            "{folder} and {base}.", dataset=self.info.title,
            folder=str(base / "cifar-10-batches-py"), base=str(base)), _GET_IT, root=base)

    def read(self, source: Source, input_size: int, in_channels: int) -> Pools:
        try:
            parts = [datafiles.read_cifar_batch(source.file(b)) for b in self.batches]
        except (OSError, ValueError) as exc:
            raise _not_found(N_("{dataset} files in {folder} are unreadable ({error}).",
                                dataset=self.info.title, folder=str(source.location),
                                error=str(exc)), _REPLACE_IT) from None

        def pool(chunk) -> Pool:
            return Pool(torch.from_numpy(np.concatenate([x for x, _ in chunk])),
                        torch.from_numpy(np.concatenate([y for _, y in chunk])))

        return Pools(pool(parts[:5]), pool(parts[5:]), self.info.class_names or ())

    def fetch(self, source: Source) -> Source:
        import torchvision.datasets as tvd  # torchvision's datasets load slowly: only here
        from torchvision.datasets import utils as tvu

        base = Path(source.location).parent
        base.mkdir(parents=True, exist_ok=True)
        cls = tvd.CIFAR10
        try:
            tvu.download_and_extract_archive(cls.url, download_root=str(base),
                                             filename=cls.filename, md5=cls.tgz_md5)
        except Exception as exc:  # noqa: BLE001 - network, HTTP or archive failures
            raise _download_failed(self.info, base, str(exc)) from None
        return _refound(self, base)


class ImageFolderSource(DatasetSource):
    """A folder with one subfolder of images per class, as torchvision's ImageFolder."""

    info = DatasetInfo(
        "imagefolder", N_("Image folder"), 3, 32, NATURAL, None, True,
        N_("Your own images: a folder with one subfolder per class."),
    )
    reads_at_size = True
    default_root = None

    def root_needed(self) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            "The imagefolder dataset needs --data-root pointing at a folder with one "
            "subfolder of images per class.",
            N_("An image folder needs a \u201cData root\u201d: a folder with one subfolder of "
               "images per class."),
        )

    def locate(self, base: Path, *, download: bool,
               confine: Sequence[str | os.PathLike] | None) -> Source:
        if not base.is_dir():
            raise DatasetNotFoundError(N_("Image folder {folder} does not exist.",
                                          folder=str(base)))
        classes, samples = datafiles.walk_image_folder(base)
        if len(classes) < 2:
            raise ValueError(N_("Image folder {folder} needs at least two class subfolders.",
                                folder=str(base)))
        h = hashlib.sha256()
        for path, label, size, mtime in sorted(samples):
            h.update(f"{os.path.relpath(path, base)}|{label}|{size}|{mtime}\n".encode())
        return Source("imagefolder", "folder", str(base), "folder:" + h.hexdigest()[:16],
                      classes=classes, samples=tuple((p, label) for p, label, _, _ in samples))

    def split_counts(self, source: Source, input_size: int, in_channels: int) -> dict[str, int]:
        """Readable images only: the folder is decoded here (once, then cached), and files
        that cannot be read are reported in one :class:`UnreadableImagesWarning`."""
        pools = read_pools(source, input_size, in_channels)
        if pools.skipped:
            shown = "; ".join(pools.skipped[:3])
            more = len(pools.skipped) - 3
            text = (f"Skipped {len(pools.skipped)} unreadable image(s) in {source.location}: "
                    f"{shown}" + (f"; and {more} more." if more > 0 else "."))
            warnings.warn(UnreadableImagesWarning(text, len(pools.skipped), pools.skipped[:3]),
                          stacklevel=3)
        return {"pool": len(pools.train.y)}

    def read(self, source: Source, input_size: int, in_channels: int) -> Pools:
        """Decode every image once, square-cropped and resized to ``input_size``; a file
        Pillow cannot read for any reason, or larger than :data:`MAX_IMAGE_PIXELS`, is
        skipped and named in ``skipped``."""
        from PIL import Image, ImageOps  # Pillow's plugins load slowly: only when read

        need = len(source.samples) * in_channels * input_size * input_size
        if need > MAX_DECODED_BYTES:
            raise ValueError(
                f"Image folder {source.location} holds {len(source.samples):,} images: at "
                f"{input_size} px and {in_channels} channel(s) they need {need / 2**30:.1f} GiB, "
                f"more than the {MAX_DECODED_BYTES / 2**30:.0f} GiB allowed. Choose a smaller "
                f"input size or fewer images.")
        mode = "L" if in_channels == 1 else "RGB"
        xs: list[np.ndarray] = []
        ys: list[int] = []
        bad: list[str] = []
        for path, label in source.samples:
            try:
                with Image.open(path) as img:
                    if img.width * img.height > MAX_IMAGE_PIXELS:
                        raise ValueError(f"{img.width} x {img.height} pixels is too large")
                    img.draft(mode, (input_size, input_size))  # JPEG: decode at reduced scale
                    img = ImageOps.exif_transpose(img).convert(mode)
                    img = ImageOps.fit(img, (input_size, input_size),
                                       method=Image.Resampling.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except Exception as exc:  # noqa: BLE001 - any decoder failure skips the file
                bad.append(f"{os.path.relpath(path, source.location)} ({exc})")
                continue
            xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            ys.append(label)
        if not xs:
            raise DatasetNotFoundError(N_("No readable images in {folder}.",
                                          folder=str(source.location)))
        pool = Pool(torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64))
        return Pools(pool, None, source.classes, tuple(bad))


def _download_failed(info: DatasetInfo, where: Path, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Could not download {info.title} to {where}: {reason}. Without internet access, "
        f"point --data-root at a folder that holds it.",
        N_("Could not download {dataset} to {folder}: {reason}. Without internet access, "
           "enter in \u201cData root\u201d a folder that holds it.", dataset=info.title,
           folder=str(where), reason=str(reason)),
    )


def _refound(src: DatasetSource, base: Path) -> Source:
    """Locate a source again after a download; an incomplete download is an error."""
    found = src.locate(base, download=False, confine=None)
    if found.variant != "official":
        raise _download_failed(src.info, base, "the downloaded files are incomplete")
    return found


SOURCES: dict[str, DatasetSource] = {
    "digits": DigitsSource(),
    "mnist": IdxSource(DatasetInfo(
        "mnist", "MNIST", 1, 28, LIGHT_ON_DARK, _DIGIT_NAMES, True,
        N_("70,000 handwritten 28x28 digits (60,000 train, 10,000 test)."), True,
    ), "MNIST"),
    "fashion-mnist": IdxSource(DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", 1, 28, LIGHT_ON_DARK,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), True,
        N_("70,000 28x28 clothing images in 10 classes (60,000 train, 10,000 test)."), True,
    ), "FashionMNIST"),
    "cifar10": CifarSource(),
    "imagefolder": ImageFolderSource(),
}
"""Every dataset by name, the offline default first."""


def get_source(name: str) -> DatasetSource:
    """The source class of dataset ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in SOURCES:
        raise unknown_name("dataset", name, list(SOURCES), n=2)
    return SOURCES[name]


def locate(name: str, root: str | os.PathLike | None = None, download: bool = False,
           allowed_roots: Sequence[str | os.PathLike] | None = None) -> Source:
    """Find dataset ``name`` under ``root`` (default :data:`DEFAULT_DATA_ROOT`).

    Downloads nothing: a missing downloadable dataset with ``download`` set comes back
    with ``present=False`` and is fetched when first read. ``allowed_roots``: ``None``
    reads any path (the command line); otherwise the root must lie inside one of them, no
    file is read through a link out of them, and a root outside them or absent gets the
    one message of :func:`not_allowed_error`. An image folder's walk never leaves its own
    root, whoever asks. Raises :class:`DatasetNotFoundError` with
    what was looked for and how to get it, ``ValueError`` for an unknown name or a folder
    beyond the walking bounds.
    """
    src = get_source(name)
    base = _data_root(src, root, download, allowed_roots)
    return src.locate(base, download=download, confine=allowed_roots)


def ensure_present(source: Source) -> Source:
    """``source`` itself, or, for a planned download, the source after downloading it."""
    if source.present:
        return source
    return get_source(source.name).fetch(source)


def read_pools(source: Source, input_size: int, in_channels: int) -> Pools:
    """:meth:`DatasetSource.read`, cached in the process (the last four sources read)."""
    if not get_source(source.name).reads_at_size:
        input_size = in_channels = 0  # the same pools serve every size
    return _read_pools(source, input_size, in_channels)


@lru_cache(maxsize=4)
def _read_pools(source: Source, input_size: int, in_channels: int) -> Pools:
    return get_source(source.name).read(source, input_size, in_channels)
