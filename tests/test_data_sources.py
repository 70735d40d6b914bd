"""Each dataset source on files built in the test: IDX roots (MNIST, Fashion-MNIST, full
or test split only, gzipped or not), CIFAR-10 batches, image folders, and "download if
missing" through a fake torchvision downloader (no network)."""

from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10
from torchvision.datasets import utils as tv_utils

from cnncompare import data, datafiles
from tests.data_fixtures import (
    FakeDownloader,
    make_cifar_root,
    make_idx_root,
    make_image_folder,
    write_idx,
)


def _values(x: torch.Tensor) -> set[int]:
    """The value each image encodes (its pixels are all equal)."""
    flat = x.flatten(1)
    assert torch.equal(flat.min(1).values, flat.max(1).values)
    return set(flat[:, 0].tolist())


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", True),
                                            ("fashion-mnist", "FashionMNIST", False)])
def test_an_idx_root_is_read_with_its_official_splits(tmp_path, name, folder, gz):
    make_idx_root(tmp_path, folder, n_train=60, n_test=40, gz=gz)
    spec, source = data.resolve(name, root=tmp_path)
    assert (source.variant, source.location) == ("official", str(tmp_path / folder / "raw"))
    assert (spec.train_size, spec.val_size, spec.test_size) == (60, 6, 40)  # from the headers
    d = data.load_spec(spec, source)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (54, 6, 40)
    assert d.meta.class_names == data.dataset_info(name).class_names
    # train and validation come from the train file (values 0..59), test from t10k (200..239)
    assert _values(d.x_train) | _values(d.x_val) == set(range(60))
    assert _values(d.x_test) == set(range(200, 240))
    assert d.meta.source.endswith("54 train and 6 validation images from the train split, "
                                  "40 test images from the test split")


def test_an_idx_root_with_only_the_test_split_is_split_three_ways(tmp_path):
    make_idx_root(tmp_path, only_test=True, n_test=50)
    d = data.load("mnist", root=tmp_path)
    assert d.meta.variant == "test-split"
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (36, 4, 10)
    seen = [_values(d.x_train), _values(d.x_val), _values(d.x_test)]
    assert set().union(*seen) == set(range(200, 250)) and sum(map(len, seen)) == 50


def test_a_damaged_idx_root_is_one_clear_error(tmp_path):
    make_idx_root(tmp_path, only_test=True, n_test=20)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(data.DatasetNotFoundError, match="unreadable.*disagree") as info:
        data.resolve("mnist", root=tmp_path)
    assert "--download" in str(info.value) and "\u201cData root\u201d" in info.value.app_message
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(data.DatasetNotFoundError, match="unreadable"):
        data.resolve("mnist", root=tmp_path)


def test_a_label_out_of_range_is_refused_when_read(tmp_path):
    make_idx_root(tmp_path, only_test=True, n_test=20)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz",
              np.full(20, 12, dtype=np.uint8))
    with pytest.raises(data.DatasetNotFoundError, match="a label is 12"):
        data.load("mnist", root=tmp_path, train_size=10, test_size=5)


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_cifar_root_is_read_without_torchvision_checksums(tmp_path, protocol):
    make_cifar_root(tmp_path, per_batch=20, protocol=protocol)
    spec, source = data.resolve("cifar10", root=tmp_path)
    assert (spec.train_size, spec.val_size, spec.test_size) == (100, 10, 20)
    d = data.load_spec(spec, source)
    assert d.x_train.shape == (90, 3, 32, 32) and d.x_test.shape == (20, 3, 32, 32)
    assert d.meta.ink == data.NATURAL and d.meta.class_names[0] == "airplane"
    assert _values(d.x_train) | _values(d.x_val) == set(range(100))
    assert _values(d.x_test) == set(range(200, 220))
    grey = data.load("cifar10", root=tmp_path, train_size=50, test_size=10, in_channels=1)
    assert grey.x_train.shape == (45, 1, 32, 32)


def test_a_cifar_batch_that_would_run_code_is_refused_and_never_runs(tmp_path):
    make_cifar_root(tmp_path)
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": Exploit(), "labels": []}))
    with pytest.raises(data.DatasetNotFoundError, match="refused to load builtins.exec"):
        data.load("cifar10", root=tmp_path)
    assert not marker.exists()
    batch.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), dtype=np.float32),
                                    "labels": [0, 1, 2]}))
    with pytest.raises(data.DatasetNotFoundError, match="N x 3072 uint8"):
        data.load("cifar10", root=tmp_path)


def test_a_cifar_root_missing_a_batch_is_not_found(tmp_path):
    make_cifar_root(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="data_batch_1 ... data_batch_5"):
        data.resolve("cifar10", root=tmp_path)


def test_imagefolder_is_decoded_once_resized_and_fingerprinted(tmp_path):
    root = make_image_folder(tmp_path / "pets")
    (root / ".ipynb_checkpoints").mkdir()  # hidden: never a class
    d = data.load("imagefolder", root=root, input_size=16)
    assert d.meta.class_names == ("cat", "dog") and d.meta.ink == data.NATURAL
    assert d.x_train.shape == (8, 3, 16, 16) and d.x_val.shape == (1, 3, 16, 16)
    assert d.x_test.shape == (3, 3, 16, 16)
    before = data.locate("imagefolder", root).fingerprint
    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "dog" / "extra.png")
    assert data.locate("imagefolder", root).fingerprint != before
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(data.UnreadableImagesWarning, match="Skipped 1 unreadable image") as rec:
        again = data.load("imagefolder", root=root, input_size=8, in_channels=1)
    assert again.x_train.shape[1:] == (1, 8, 8) and rec[0].message.count == 1


def test_imagefolder_keeps_torchvisions_sample_order(tmp_path):
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = tmp_path / "f"
    for rel in ("a/x.png", "a/sub/b.png", "a/sub-2/c.png", "a/A.png", "b/z/y/q.png",
                "b/k.jpg", "b/notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(root / rel) if not rel.endswith(".txt") else \
            (root / rel).write_text("hi")
    classes, index = find_classes(str(root))
    expected = make_dataset(str(root), index, extensions=IMG_EXTENSIONS)
    ours_classes, ours = datafiles.walk_image_folder(root)
    assert ours_classes == tuple(classes)
    assert [(p, label) for p, label, _, _ in ours] == expected


def test_an_image_folder_with_one_class_or_an_empty_class_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match="at least two class subfolders"):
        data.resolve("imagefolder", root=root)
    root = make_image_folder(tmp_path / "two")
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="Class folder.*empty.*hold no images"):
        data.resolve("imagefolder", root=root)


@pytest.fixture
def fake_download(monkeypatch):
    fake = FakeDownloader()
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    return fake


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_download_if_missing_fetches_mnist_style_data_when_first_read(tmp_path, fake_download,
                                                                        name, folder):
    root = tmp_path / "new-root"  # does not exist yet: the download creates it
    spec, source = data.resolve(name, root=root, download=True, train_size=50, test_size=30)
    assert fake_download.calls == [] and not source.present  # resolving fetches nothing
    d = data.load_spec(spec, source)
    assert len(fake_download.calls) == 4  # the four IDX archives, from the first mirror
    assert (root / folder / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (45, 5, 30)
    assert _values(d.x_test) <= set(range(200, 240))
    again, located = data.resolve(name, root=root, download=True, train_size=50, test_size=30)
    assert located.present and again == spec  # same key before and after the download
    data.load_spec(again, located)
    assert len(fake_download.calls) == 4  # present now: nothing fetched twice
    assert data.check(name, root=root).state == data.READY


def test_download_if_missing_fetches_cifar(tmp_path, fake_download):
    spec, source = data.resolve("cifar10", root=tmp_path, download=True, train_size=60,
                                test_size=20)
    d = data.load_spec(spec, source)
    assert fake_download.calls == [CIFAR10.url]
    assert d.x_train.shape == (54, 3, 32, 32) and d.x_test.shape == (20, 3, 32, 32)


def test_a_failed_download_is_one_clear_error_in_both_wordings(tmp_path, monkeypatch):
    fake = FakeDownloader(fail=urllib.error.URLError("no route to host"))
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    spec, source = data.resolve("mnist", root=tmp_path, download=True)
    with pytest.raises(data.DatasetNotFoundError, match="Could not download MNIST") as info:
        data.load_spec(spec, source)
    assert "no route to host" in str(info.value) and "--data-root" in str(info.value)
    assert "\u201cData root\u201d" in info.value.app_message
    assert len(fake.calls) == 2  # both of torchvision's mirrors were tried for the first file
