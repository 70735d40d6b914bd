"""Datasets: the digits default, MNIST's test split, image folders, subsets, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnncompare import data


def test_digits_default_split_is_stratified_and_in_memory():
    d = data.load("digits")
    assert d.x_train.shape == (1437, 1, 28, 28) and d.x_test.shape == (360, 1, 28, 28)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    for y, n in ((d.y_train, 1437), (d.y_test, 360)):
        counts = np.bincount(y.numpy(), minlength=10)
        # scikit-learn's digits have 174..183 images per class: proportional to within one.
        assert counts.sum() == n and counts.min() >= n * 174 / 1797 - 1
        assert counts.max() <= n * 183 / 1797 + 1
    m = d.meta
    assert m.class_names == tuple("0123456789") and m.num_classes == 10
    assert (m.in_channels, m.input_size, m.ink) == (1, 28, data.LIGHT_ON_DARK)
    assert len(m.mean) == len(m.std) == 1 and 0.1 < m.mean[0] < 0.5 and m.std[0] > 0.1
    # the upsampled strokes span the full range of pixel values
    assert int(d.x_train.max()) == 255 and int(d.x_train.min()) == 0


def test_digits_train_and_test_do_not_overlap_and_follow_the_seed():
    a = data.load("digits", train_size=300, test_size=100, seed=1)
    b = data.load("digits", train_size=300, test_size=100, seed=1)
    c = data.load("digits", train_size=300, test_size=100, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    flat_train = {bytes(x.numpy().tobytes()) for x in a.x_train}
    overlap = sum(bytes(x.numpy().tobytes()) in flat_train for x in a.x_test)
    assert overlap <= 2  # a couple of digits are pixel-identical twins in the source data


def test_stratified_indices_are_disjoint_sized_and_proportional():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    tr, te = data.stratified_indices(labels, [80, 40], seed=0)
    assert len(tr) == 80 and len(te) == 40 and not set(tr) & set(te)
    assert np.bincount(labels[tr], minlength=4).tolist() == [40, 20, 12, 8]
    assert np.bincount(labels[te], minlength=4).tolist() == [20, 10, 6, 4]
    with pytest.raises(ValueError, match="only 200 are available"):
        data.stratified_indices(labels, [150, 51], seed=0)


def test_channels_and_size_follow_the_request():
    d = data.load("digits", train_size=50, test_size=20, input_size=32, in_channels=3)
    assert d.x_train.shape == (50, 3, 32, 32) and d.meta.in_channels == 3
    assert torch.equal(d.x_train[:, 0], d.x_train[:, 2])  # grey repeated
    assert len(d.meta.mean) == 3
    grey = data.convert_channels(torch.full((1, 3, 2, 2), 200, dtype=torch.uint8), 1)
    assert grey.shape == (1, 1, 2, 2) and int(grey[0, 0, 0, 0]) == 200
    small = data.resize(torch.full((2, 1, 28, 28), 90, dtype=torch.uint8), 14)
    assert small.shape == (2, 1, 14, 14) and int(small.min()) == int(small.max()) == 90


def test_normalize_uses_the_meta_statistics():
    d = data.load("digits", train_size=200, test_size=50)
    x = d.normalize(d.x_train)
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2


def test_requests_that_cannot_be_met_are_clear():
    with pytest.raises(ValueError, match="Unknown dataset 'mnsit'.*Did you mean: mnist"):
        data.load("mnsit")
    with pytest.raises(ValueError, match="holds 1,797 images"):
        data.load("digits", train_size=1500, test_size=400)
    with pytest.raises(ValueError, match="train_size must be a positive integer"):
        data.load("digits", train_size=0)
    with pytest.raises(ValueError, match="1 or 3"):
        data.load("digits", in_channels=2)


@pytest.mark.parametrize("name,expect", [("mnist", "t10k-images-idx3-ubyte"),
                                         ("fashion-mnist", "FashionMNIST"),
                                         ("cifar10", "cifar-10-batches-py")])
def test_missing_datasets_say_where_they_looked_and_how_to_get_them(tmp_path, name, expect):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and expect in msg
    assert "--download" in msg and "--data-root" in msg
    assert isinstance(info.value, FileNotFoundError)  # the CLI turns it into one error line


def test_imagefolder_needs_a_root():
    with pytest.raises(data.DatasetNotFoundError, match="--data-root"):
        data.load("imagefolder")


def test_mnist_test_split_only_root_is_accepted_and_split(mnist_test_root):
    d = data.load("mnist", root=mnist_test_root)
    assert d.meta.variant == "test-split"
    assert d.x_train.shape == (8000, 1, 28, 28) and d.x_test.shape == (2000, 1, 28, 28)
    counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert counts.sum() == 2000 and counts.min() > 150  # every digit is there
    assert abs(d.meta.mean[0] - 0.13) < 0.01  # MNIST's well-known mean intensity
    with pytest.raises(ValueError, match="holds 10,000 images"):
        data.load("mnist", root=mnist_test_root, train_size=9000, test_size=2000)


def _write_folder(root, per_class=6, classes=("cat", "dog")):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shade = 40 + 150 * k + i
            Image.new("RGB", (20 + i, 16), (shade, 255 - shade, 90)).save(root / name / f"{i}.png")


def test_imagefolder_is_decoded_once_resized_and_fingerprinted(tmp_path):
    root = tmp_path / "pets"
    _write_folder(root)
    d = data.load("imagefolder", root=root, input_size=16)
    assert d.meta.class_names == ("cat", "dog") and d.meta.ink == data.NATURAL
    assert d.x_train.shape == (9, 3, 16, 16) and d.x_test.shape == (3, 3, 16, 16)
    before = data.locate("imagefolder", root).fingerprint
    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "dog" / "extra.png")
    assert data.locate("imagefolder", root).fingerprint != before
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable image"):
        again = data.load("imagefolder", root=root, input_size=8, in_channels=1)
    assert again.x_train.shape[1:] == (1, 8, 8)
