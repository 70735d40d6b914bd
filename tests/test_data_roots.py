"""Hostile data roots, built in the test: roots outside the allowed folders, links out of a
root and into loops, deep and crowded trees, a special file, gzip bombs, files Pillow
cannot read. Each ends in one clear message or a bounded, correct result."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnncompare import data, datafiles, paths, sources
from tests.data_fixtures import idx_bytes, idx_split, make_idx_root, make_image_folder


@pytest.fixture
def allowed(tmp_path) -> Path:
    """An allowed folder holding an MNIST test split, and an outside one holding another."""
    make_idx_root(tmp_path / "allowed" / "mnist", only_test=True, n_test=30)
    make_idx_root(tmp_path / "outside" / "mnist", only_test=True, n_test=30)
    return tmp_path / "allowed"


def test_app_data_roots_are_home_data_and_the_named_ones(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (tmp_path / "link").symlink_to(a)
    monkeypatch.setenv(data.DATA_ROOTS_ENV, f"{tmp_path / 'link'}{os.pathsep}{b}{os.pathsep}")
    roots = data.app_data_roots()
    assert roots == (Path(os.path.realpath(paths.home())), Path(os.path.realpath(paths.DATA_DIR)),
                     a, b)


def test_a_root_inside_the_allowed_folders_is_read(allowed):
    d = data.load("mnist", root=allowed / "mnist", allowed_roots=[allowed])
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (22, 2, 6)
    assert data.check("mnist", root=allowed / "mnist", allowed_roots=[allowed]).state == data.READY
    planned = data.check("mnist", root=allowed / "new", download=True, allowed_roots=[allowed])
    assert planned.state == data.DOWNLOAD  # an absent root may be created by a download


def _masked(exc: data.DatasetNotFoundError, root, title: str) -> tuple[str, str]:
    def mask(text: str) -> str:
        return text.replace(str(root), "ROOT").replace(title, "TITLE")

    return mask(str(exc)), mask(exc.app_message)


def test_outside_or_absent_roots_get_one_message_that_does_not_say_which(allowed, tmp_path):
    outside = tmp_path / "outside" / "mnist"
    link = allowed / "escape"
    link.symlink_to(outside)
    cases = [outside, allowed / "absent", link, allowed / ".." / "outside" / "mnist",
             tmp_path / "outside" / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz",
             "/", "/root", "~", "nul\0byte"]
    messages = set()
    for root in cases:
        with pytest.raises(data.DatasetNotFoundError, match="not found or is not allowed") as e:
            data.resolve("mnist", root=root, allowed_roots=[allowed])
        messages.add(_masked(e.value, root, "MNIST"))
        result = data.check("imagefolder", root=root, allowed_roots=[allowed], download=True)
        assert result.state == data.MISSING
        messages.add(_masked(result.error, root, "Image folder"))
    assert len(messages) == 1  # the same words whether the path exists or not
    cli, app = messages.pop()
    assert cli == app and cli.startswith("Cannot read TITLE from ROOT: the folder was not found")
    assert str(tmp_path) not in cli
    # The command line (allowed_roots=None) reads any path, links included.
    assert data.locate("mnist", link).variant == "test-split"


def test_in_the_app_a_file_linked_out_of_the_root_is_not_read(allowed, tmp_path):
    raw = allowed / "mnist" / "MNIST" / "raw"
    target = tmp_path / "outside" / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    (raw / "t10k-images-idx3-ubyte.gz").symlink_to(target)
    with pytest.raises(data.DatasetNotFoundError, match="MNIST not found: looked for"):
        data.resolve("mnist", root=allowed / "mnist", allowed_roots=[allowed])
    assert data.locate("mnist", allowed / "mnist").variant == "test-split"  # the CLI follows it
    # A link into another allowed folder is followed in the app too.
    shared = tmp_path / "outside" / "mnist"
    spec, _ = data.resolve("mnist", root=allowed / "mnist", allowed_roots=[allowed, shared])
    assert spec.variant == "test-split"


def test_symlink_loops_are_walked_once_and_links_out_of_the_root_are_skipped(tmp_path):
    root = make_image_folder(tmp_path / "pets", per_class=5)
    outside = make_image_folder(tmp_path / "elsewhere", per_class=7, classes=("bird",))
    (root / "cat" / "again").symlink_to(root / "cat")  # a loop onto its own folder
    (root / "dog" / "up").symlink_to(root)  # a loop onto the root
    (root / "dog" / "birds").symlink_to(outside / "bird")  # a folder out of the root
    (root / "dog" / "bird0.png").symlink_to(outside / "bird" / "0.png")  # a file out of it
    (root / "cat" / "self.png").symlink_to(root / "cat" / "self.png")  # a link to itself
    (root / "cat" / "dog0.png").symlink_to(root / "dog" / "0.png")  # inside: followed
    classes, samples = datafiles.walk_image_folder(root)
    assert classes == ("cat", "dog")
    names = sorted(os.path.relpath(p, root) for p, _, _, _ in samples)
    assert len(names) == 11 and "cat/dog0.png" in names
    assert not any("bird" in n or "again" in n or n.startswith("dog/up") for n in names)
    d = data.load("imagefolder", root=root, input_size=8)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 11


def test_deep_trees_are_refused_at_the_depth_bound(tmp_path):
    root = make_image_folder(tmp_path / "deep", per_class=2)
    folder = root / "cat"
    for level in range(2, datafiles.MAX_WALK_DEPTH + 1):  # cat is level 1
        folder = folder / f"level{level}"
    folder.mkdir(parents=True)
    Image.new("L", (4, 4)).save(folder / "deepest.png")
    classes, samples = datafiles.walk_image_folder(root)
    assert len(samples) == 5  # a folder exactly at the bound is read
    (folder / "one-more").mkdir()
    with pytest.raises(ValueError, match=f"nested more than {datafiles.MAX_WALK_DEPTH} levels"):
        data.resolve("imagefolder", root=root)


def test_crowded_trees_are_refused_at_the_entry_and_image_bounds(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "many", per_class=6)
    for i in range(30):
        (root / "cat" / f"note{i}.txt").write_text("not an image")
    monkeypatch.setattr(datafiles, "MAX_WALK_ENTRIES", 40)
    with pytest.raises(ValueError, match="more than 40 files and folders"):
        data.check("imagefolder", root=root)
    monkeypatch.setattr(datafiles, "MAX_WALK_ENTRIES", 1000)
    monkeypatch.setattr(datafiles, "MAX_FOLDER_IMAGES", 10)
    with pytest.raises(ValueError, match="holds more than 10 images"):
        data.resolve("imagefolder", root=root)
    monkeypatch.setattr(datafiles, "MAX_FOLDER_IMAGES", 12)
    assert data.check("imagefolder", root=root).state == data.READY


def test_the_whole_disk_as_an_image_folder_stops_at_a_bound(monkeypatch):
    # The bounds are lowered to keep the test short; README/the report give the real cost.
    monkeypatch.setattr(datafiles, "MAX_WALK_ENTRIES", 20_000)
    with pytest.raises(ValueError, match="more than|nested|hold no images"):
        data.check("imagefolder", root="/")


def test_an_image_folder_too_large_to_decode_is_refused_before_decoding(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "big", per_class=6)
    monkeypatch.setattr(sources, "MAX_DECODED_BYTES", 12 * 3 * 64 * 64 - 1)
    with pytest.raises(ValueError, match="holds 12 images: at 64 px and 3 channel"):
        data.resolve("imagefolder", root=root, input_size=64)
    assert data.resolve("imagefolder", root=root, input_size=32)[0].train_size == 9


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def test_files_pillow_cannot_read_are_skipped_and_counted_once(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "mixed", per_class=6)
    good = io.BytesIO()
    Image.new("RGB", (30, 30), (9, 9, 9)).save(good, "PNG")
    (root / "cat" / "garbage.png").write_bytes(b"this is not an image")
    (root / "cat" / "cut.png").write_bytes(good.getvalue()[:60])
    (root / "dog" / "huge.png").write_bytes(_png_header_only(9000, 9000))  # 81 MP declared
    Image.new("RGB", (13, 13)).save(root / "dog" / "odd.png")
    os.mkfifo(root / "dog" / "pipe.png")  # never opened: reading it would block
    real_fit = ImageOps.fit

    def picky_fit(img, size, *args, **kw):
        if img.size == (13, 13):
            raise ZeroDivisionError("a decoder bug that is not an OSError")
        return real_fit(img, size, *args, **kw)

    monkeypatch.setattr(ImageOps, "fit", picky_fit)
    with pytest.warns(data.UnreadableImagesWarning) as record:
        d = data.load("imagefolder", root=root, input_size=8)
    assert len(record) == 1 and record[0].message.count == 4
    text = str(record[0].message)
    assert text.startswith("Skipped 4 unreadable image(s)") and "and 1 more." in text
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 12


def _gz(path: Path, *parts: bytes, zeros: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as f:
        for part in parts:
            f.write(part)
        block = bytes(2**20)
        for _ in range(zeros // len(block)):
            f.write(block)
    return path


def test_an_idx_header_that_declares_gigabytes_is_refused_from_the_header(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    head = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (5_000_000, 28, 28))
    _gz(raw / "t10k-images-idx3-ubyte.gz", head, bytes(1000))
    _gz(raw / "t10k-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1]) + (5_000_000).to_bytes(4, "big"))
    result = data.check("mnist", root=tmp_path)
    assert result.state == data.MISSING and "declares 3,920,000,000 bytes" in result.message()
    with pytest.raises(data.DatasetNotFoundError, match="declares 3,920,000,000 bytes"):
        data.resolve("mnist", root=tmp_path)


def test_an_idx_gz_that_expands_past_its_header_is_refused_in_bounded_memory(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    images, labels = idx_split(20)
    bomb = _gz(raw / "t10k-images-idx3-ubyte.gz", idx_bytes(images), zeros=64 * 2**20)
    _gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels))
    assert bomb.stat().st_size < 2**20  # 64 MiB of zeros compress to a few hundred KiB
    spec, source = data.resolve("mnist", root=tmp_path)  # the headers are fine
    tracemalloc.start()
    try:
        with pytest.raises(data.DatasetNotFoundError, match="longer than its header declares"):
            data.load_spec(spec, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # the 64 MiB were never decompressed into memory


def test_an_idx_file_cut_short_is_refused(tmp_path):
    images, labels = idx_split(20)
    raw = tmp_path / "MNIST" / "raw"
    _gz(raw / "t10k-images-idx3-ubyte.gz", idx_bytes(images)[:-100])
    _gz(raw / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels))
    with pytest.raises(data.DatasetNotFoundError, match="cut short"):
        data.load("mnist", root=tmp_path, train_size=10, test_size=5)
    assert np.array_equal(datafiles.read_idx(raw / "t10k-labels-idx1-ubyte.gz").numpy(), labels)
