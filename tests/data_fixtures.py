"""Tiny, valid dataset files built in a test's folder: IDX roots (MNIST, Fashion-MNIST),
CIFAR-10 python batches, image folders, and a fake torchvision downloader writing them.

Every image encodes where it came from, so a test can tell which split an image was
taken from: an IDX or CIFAR image's pixels all equal ``(offset + index) % 256``, and its
label is ``index % 10``.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, array.ndim])
    head += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX, gzipped when ``path`` ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = idx_bytes(array)
    path.write_bytes(gzip.compress(blob, mtime=0) if path.suffix == ".gz" else blob)
    return path


def idx_split(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 images whose pixels encode ``offset + index``, labels ``index % 10``."""
    values = (offset + np.arange(n)) % 256
    images = np.broadcast_to(values[:, None, None], (n, 28, 28)).astype(np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


def make_idx_root(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 40,
                  gz: bool = True, only_test: bool = False) -> Path:
    """torchvision's layout ``root/<folder>/raw``; the test images start at value 200."""
    raw = root / folder / "raw"
    ext = ".gz" if gz else ""
    splits = [("t10k", n_test, 200)] + ([] if only_test else [("train", n_train, 0)])
    for prefix, n, offset in splits:
        images, labels = idx_split(n, offset)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return root


def cifar_batch(n: int, offset: int) -> dict:
    """A CIFAR-10 batch dict as the python version holds it."""
    values = (offset + np.arange(n)) % 256
    data = np.broadcast_to(values[:, None], (n, 3072)).astype(np.uint8)
    return {"batch_label": f"batch at {offset}", "labels": [int(i % 10) for i in range(n)],
            "data": data, "filenames": [f"img_{offset + i}.png" for i in range(n)]}


def make_cifar_root(root: Path, per_batch: int = 20, protocol: int = 2) -> Path:
    """``root/cifar-10-batches-py`` with five training batches (values from 0) and a test
    batch (values from 200)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump(cifar_batch(per_batch, i * per_batch), f, protocol=protocol)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(cifar_batch(per_batch, 200), f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                     "frog", "horse", "ship", "truck"]}, f, protocol=protocol)
    return root


def make_image_folder(root: Path, per_class: int = 6, classes=("cat", "dog")) -> Path:
    """One subfolder per class of small PNGs of different sizes and colours."""
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shade = 40 + 150 * k + i
            Image.new("RGB", (20 + i, 16), (shade, 255 - shade, 90)).save(root / name / f"{i}.png")
    return root


class FakeDownloader:
    """Stands in for ``torchvision.datasets.utils.download_and_extract_archive``: writes
    tiny valid files where torchvision's would land, and counts its calls."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, url: str, download_root: str, extract_root=None, filename=None,
                 md5=None, remove_finished=False) -> None:
        self.calls.append(url)
        if self.fail is not None:
            raise self.fail
        name = filename or os.path.basename(url)
        root = Path(download_root)
        if name == "cifar-10-python.tar.gz":
            make_cifar_root(root)
            return
        stem = name.removesuffix(".gz")
        n, offset = (60, 0) if stem.startswith("train") else (40, 200)
        images, labels = idx_split(n, offset)
        array = images if "images" in stem else labels
        write_idx(root / name, array)  # the archive, and what extracting it gives
        write_idx(root / stem, array)
