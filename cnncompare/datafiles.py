"""Reading dataset files within bounds, whatever they hold: which folders the app may read,
a bounded image-folder walk, and readers for IDX files and CIFAR-10 batches.

Nothing here knows a dataset; :mod:`cnncompare.sources` uses these to find and read each
one. The bounds: a walk looks at most :data:`MAX_WALK_DEPTH` folders deep, through
:data:`MAX_WALK_ENTRIES` entries and :data:`MAX_FOLDER_IMAGES` images, and never follows a
symbolic link out of its root or into a loop; an IDX file is decompressed only as far as its
header declares (so a ``.gz`` that expands to gigabytes is refused before it fills memory);
a CIFAR batch is unpickled by a loader that runs no code and hands numpy no pickled state.
Each refusal is a ``ValueError`` that says what was wrong.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnncompare import paths

DATA_ROOTS_ENV = "CNNCOMPARE_DATA_ROOTS"
"""Environment variable: extra folders (``os.pathsep``-separated) the app may read data from."""

MAX_WALK_DEPTH = 8
"""An image folder's files lie at most this many folders below its root (class = 1)."""
MAX_WALK_ENTRIES = 200_000
"""Directory entries an image-folder walk looks at before it gives up (bounds its time)."""
MAX_FOLDER_IMAGES = 100_000
"""Image files an image folder may hold."""
MAX_IDX_BYTES = 256 * 2**20
"""Largest IDX payload read (MNIST's training images are 47,040,000 bytes)."""
MAX_PICKLE_BYTES = 64 * 2**20
"""Largest CIFAR batch file read (each official one is about 31 MB)."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# What reading a damaged IDX file or gzip stream raises.
IDX_ERRORS = (OSError, EOFError, ValueError, zlib.error)


# ---------------------------------------------------------------------------------------
# Roots and folders


def app_data_roots() -> tuple[Path, ...]:
    """The folders the app may read datasets from: the results home, the project's
    ``data/`` folder, and every folder named in ``$CNNCOMPARE_DATA_ROOTS``
    (``os.pathsep``-separated), each resolved to its real path."""
    named = [paths.home(), paths.DATA_DIR]
    named += [Path(p).expanduser() for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep)
              if p.strip()]
    out: list[Path] = []
    for p in named:
        real = Path(os.path.realpath(p))
        if real not in out:
            out.append(real)
    return tuple(out)


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path``'s real location (links followed) lies in ``folder``'s."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def regular_file(path: Path, confine: Sequence[str | os.PathLike] | None) -> bool:
    """A regular file (links followed) that, when ``confine`` is given, lies inside one
    of those folders."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except (OSError, ValueError):
        return False
    return confine is None or any(inside(path, folder) for folder in confine)


@dataclass
class _Walk:
    """The state of one bounded image-folder walk."""

    root: str
    entries: int = 0
    images: int = 0
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)


def walk_image_folder(root: Path) -> tuple[tuple[str, ...], list[tuple[str, int, int, int]]]:
    """Class names (the visible subfolders of ``root``, sorted) and every image file below
    them as ``(path, class index, size, mtime_ns)``, in torchvision's ImageFolder order.

    Bounded: at most :data:`MAX_WALK_DEPTH` levels, :data:`MAX_WALK_ENTRIES` entries looked
    at and :data:`MAX_FOLDER_IMAGES` images, else ``ValueError``. A symbolic link is
    followed only to a target inside ``root``, and a folder is never entered twice, so
    links cannot lead out of the root or into a loop. Hidden names (``.git``) are skipped.
    """
    w = _Walk(str(root))
    top = _scan(w, w.root, depth=0)
    classes = tuple(name for name, is_folder, _ in top if is_folder)
    samples: list[tuple[str, int, int, int]] = []
    empty = []
    for label, name in enumerate(classes):
        found = _collect(w, os.path.join(w.root, name), label, depth=1)
        if not found:
            empty.append(name)
        samples += found
    # torchvision's order: by class, then folder path, then file name
    samples.sort(key=lambda s: (s[1], os.path.dirname(s[0]), os.path.basename(s[0])))
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ValueError(f"Class folder(s) {shown} in {root} hold no images "
                         f"({', '.join(IMAGE_EXTENSIONS)}).")
    return classes, samples


def _scan(w: _Walk, folder: str, depth: int) -> list[tuple[str, bool, os.DirEntry]]:
    """The visible entries of ``folder`` as ``(name, is_folder, entry)``, sorted by name:
    folders and regular files, links followed only to targets inside the root; special
    files and unreadable entries are left out. Counts every entry read against
    :data:`MAX_WALK_ENTRIES` as it is read, so one huge folder is not listed in full."""
    if depth > MAX_WALK_DEPTH:
        raise ValueError(f"Image folder {w.root} has folders nested more than {MAX_WALK_DEPTH} "
                         f"levels deep; an image folder holds one subfolder of images per "
                         f"class.")
    entries = []
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in w.seen_dirs:
            return []  # reached again through a link: already walked
        w.seen_dirs.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as it:
            for entry in it:
                w.entries += 1
                if w.entries > MAX_WALK_ENTRIES:
                    raise ValueError(f"Image folder {w.root} holds more than "
                                     f"{MAX_WALK_ENTRIES:,} files and folders; choose the "
                                     f"folder of one dataset.")
                if not entry.name.startswith("."):
                    entries.append(entry)
    except OSError:
        return []  # unreadable or vanished: nothing to take from it
    out = []
    for entry in sorted(entries, key=lambda e: e.name):
        try:  # the directory's own type field answers these without a stat, except for links
            if entry.is_symlink() and not inside(entry.path, w.root):
                continue
            if entry.is_dir():
                out.append((entry.name, True, entry))
            elif entry.is_file():
                out.append((entry.name, False, entry))
        except OSError:
            continue
    return out


def _collect(w: _Walk, folder: str, label: int, depth: int) -> list[tuple[str, int, int, int]]:
    found: list[tuple[str, int, int, int]] = []
    subfolders = []
    for name, is_folder, entry in _scan(w, folder, depth):
        path = os.path.join(folder, name)
        if is_folder:
            subfolders.append(path)
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            w.images += 1
            if w.images > MAX_FOLDER_IMAGES:
                raise ValueError(f"Image folder {w.root} holds more than "
                                 f"{MAX_FOLDER_IMAGES:,} images.")
            try:
                st = entry.stat()  # size and time enter the folder's fingerprint
            except OSError:
                continue
            found.append((path, label, st.st_size, st.st_mtime_ns))
    for sub in subfolders:
        found += _collect(w, sub, label, depth + 1)
    return found


# ---------------------------------------------------------------------------------------
# IDX files and CIFAR-10 batches



def idx_header(path: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions an IDX file (gzipped or not) declares, read from its first bytes.

    ``ValueError`` unless it holds unsigned bytes (type 0x08) in 1 to 3 dimensions and its
    payload is at most :data:`MAX_IDX_BYTES`.
    """
    with _open_idx(path) as f:
        return _read_header(f, path)


def _open_idx(path: str | os.PathLike):
    return gzip.open(path, "rb") if os.fspath(path).endswith(".gz") else open(path, "rb")


def _read_header(f, path) -> tuple[int, ...]:
    head = f.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08 or not 1 <= head[3] <= 3:
        raise ValueError(f"{os.path.basename(path)} is not an IDX file of unsigned bytes")
    raw = f.read(4 * head[3])
    if len(raw) < 4 * head[3]:
        raise ValueError(f"{os.path.basename(path)} ends inside its header")
    dims = tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4))
    if math.prod(dims) > MAX_IDX_BYTES:
        raise ValueError(f"{os.path.basename(path)} declares {math.prod(dims):,} bytes, more "
                         f"than the {MAX_IDX_BYTES:,} this reader accepts")
    return dims


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """An IDX file's array as a uint8 tensor, decompressing no more than its header
    declares plus one byte (a file longer or shorter than declared is refused)."""
    with _open_idx(path) as f:
        dims = _read_header(f, path)
        size = math.prod(dims)
        payload = f.read(size)
        if len(payload) < size:
            raise ValueError(f"{os.path.basename(path)} is cut short: {len(payload):,} of "
                             f"{size:,} bytes")
        if f.read(1):
            raise ValueError(f"{os.path.basename(path)} is longer than its header declares")
    return torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy())


class _PickledDtype:
    """Stands in for ``numpy.dtype`` while a CIFAR batch is unpickled: keeps the type code
    and ignores the rest of the pickled state (numpy would trust its flags)."""

    def __init__(self, code: Any = None, *_: Any) -> None:
        self.code = code

    def __setstate__(self, state: Any) -> None:
        pass


class _PickledArray:
    """Stands in for numpy's array rebuilder while a CIFAR batch is unpickled: keeps the
    pickled shape, dtype and bytes, and builds an array afterwards only from uint8 data
    whose size matches its shape. numpy itself never sees the pickled state."""

    def __init__(self, *_: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def array(self) -> np.ndarray | None:
        state = getattr(self, "state", None)
        if not (isinstance(state, tuple) and len(state) == 5):
            return None
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, str):
            raw = raw.encode("latin1")  # a Python 2 pickle's str, read as latin-1
        if getattr(dtype, "code", None) not in ("u1", "|u1", "uint8") \
                or not isinstance(raw, (bytes, bytearray)) or not isinstance(shape, tuple) \
                or not all(isinstance(n, int) and n >= 0 for n in shape) \
                or math.prod(shape) != len(raw):
            return None
        order = "F" if fortran else "C"
        return np.frombuffer(bytes(raw), dtype=np.uint8).reshape(shape, order=order)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as Python 2 pickles use it for bytes, and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused a _codecs.encode call")
    return text.encode("latin1")


# The globals a CIFAR batch pickled with protocol 2 to 4 names: numpy's array rebuilder
# (under its numpy 1 and numpy 2 module names), the array and dtype types, and the bytes
# decoder of Python 2 pickles, each mapped to a harmless stand-in.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy._core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy", "ndarray"): _PickledArray,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _latin1,
}


class _ArrayUnpickler(pickle._Unpickler):  # noqa: SLF001 - see below
    """Unpickles plain containers and the stand-ins above only: any other global
    (``os.system``, ``builtins.eval``, numpy's own functions...) is refused before it is
    looked up, so no code in the file runs and numpy never reads pickled state.

    Built on the pure-Python unpickler: a damaged length field there ends in one
    ``UnpicklingError``, where the C one allocates what the field says first.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as ``(uint8 N x 3 x 32 x 32, int64 N)``, unpickled
    safely (see :class:`_ArrayUnpickler`) from a file of at most :data:`MAX_PICKLE_BYTES`."""
    name = os.path.basename(path)
    if os.path.getsize(path) > MAX_PICKLE_BYTES:
        raise ValueError(f"{name} is larger than a CIFAR-10 batch")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        entry = _ArrayUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises nearly any type
        raise ValueError(f"{name} is not a readable pickle ({exc})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{name} does not hold a CIFAR-10 batch")
    pickled, labels = entry.get("data"), entry.get("labels")
    x = pickled.array() if isinstance(pickled, _PickledArray) else None
    if x is None or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{name} holds no N x 3072 uint8 'data' array")
    if not isinstance(labels, list) or len(labels) != len(x) \
            or not all(type(v) is int and 0 <= v < 10 for v in labels):
        raise ValueError(f"{name} needs one label in 0..9 per image")
    return x.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
