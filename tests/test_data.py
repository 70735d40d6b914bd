"""Datasets: splits (train / validation / test), sizes, seeds, normalisation, clear errors,
the cheap availability check, MNIST's real test split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncompare import data, sources


def _digits_labels() -> np.ndarray:
    source = data.locate("digits")
    return sources.read_pools(source, 28, 1).train.y.numpy()


def test_digits_default_split_is_stratified_and_in_memory():
    d = data.load("digits")
    assert d.x_train.shape == (1293, 1, 28, 28) and d.x_val.shape == (144, 1, 28, 28)
    assert d.x_test.shape == (360, 1, 28, 28)
    assert d.x_train.dtype == d.x_val.dtype == torch.uint8 and d.y_val.dtype == torch.int64
    for y, n in ((d.y_train, 1293), (d.y_val, 144), (d.y_test, 360)):
        counts = np.bincount(y.numpy(), minlength=10)
        # scikit-learn's digits have 174..183 images per class: proportional to within one
        # (two for validation, drawn in proportion from the drawn training images).
        assert counts.sum() == n and counts.min() >= n * 174 / 1797 - 2
        assert counts.max() <= n * 183 / 1797 + 2
    m = d.meta
    assert m.class_names == tuple("0123456789") and m.num_classes == 10
    assert (m.train_size, m.val_size, m.test_size) == (1437, 144, 360)
    assert (m.in_channels, m.input_size, m.ink) == (1, 28, data.LIGHT_ON_DARK)
    assert len(m.mean) == len(m.std) == 1 and 0.1 < m.mean[0] < 0.5 and m.std[0] > 0.1
    assert m.source == "scikit-learn digits: 1293 train, 144 validation and 360 test images, " \
                       "stratified"
    # the upsampled strokes span the full range of pixel values
    assert int(d.x_train.max()) == 255 and int(d.x_train.min()) == 0


def test_validation_is_disjoint_and_leaves_the_test_split_as_it_was():
    spec, source = data.resolve("digits", seed=3)
    pools = sources.read_pools(source, 28, 1)
    fit, val, test = data.split_indices(pools, spec.sizes, spec.seed)
    assert (len(fit), len(val), len(test)) == (1293, 144, 360)
    assert not (set(fit) & set(val) or set(fit) & set(test) or set(val) & set(test))
    # The test images are those of the split before validation existed (train 1,437).
    _, old_test = data.stratified_indices(_digits_labels(), [1437, 360], seed=3)
    assert np.array_equal(test, old_test)
    d = data.load_spec(spec, source)
    assert torch.equal(d.y_test, pools.train.y[torch.from_numpy(old_test)])
    assert torch.equal(d.y_val, pools.train.y[torch.from_numpy(val)])


def test_default_validation_size_is_a_tenth_of_the_training_images():
    assert [data.default_val_size(n) for n in (1437, 8000, 50000, 60000, 200, 9, 4, 1)] == \
        [144, 800, 5000, 6000, 20, 1, 1, 1]
    assert data.default_sizes("digits") == (1437, 144, 360)
    assert data.default_sizes("mnist") == (60000, 6000, 10000)
    assert data.default_sizes("mnist", {"pool": 10000}) == (8000, 800, 2000)
    assert data.default_sizes("cifar10") == (50000, 5000, 10000)
    assert data.default_sizes("imagefolder", {"pool": 1000}) == (800, 80, 200)
    with pytest.raises(ValueError, match="depend on how many images"):
        data.default_sizes("imagefolder")


def test_explicit_validation_size_and_its_limits():
    d = data.load("digits", train_size=300, val_size=50, test_size=100)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (250, 50, 100)
    spec, _ = data.resolve("digits", train_size=300, test_size=100)
    assert spec.val_size == 30 and spec.as_dict()["val_size"] == 30  # part of the run key
    other, _ = data.resolve("digits", train_size=300, test_size=100, val_size=31)
    assert other.as_dict() != spec.as_dict()
    with pytest.raises(ValueError, match="val_size must be a positive integer, got 0"):
        data.resolve("digits", val_size=0)
    with pytest.raises(ValueError, match=r"val_size \(300\) must be smaller than train_size"):
        data.resolve("digits", train_size=300, val_size=300)
    with pytest.raises(ValueError, match=r"val_size \(1\) must be smaller than train_size \(1\)"):
        data.resolve("digits", train_size=1)


def test_splits_follow_the_seed():
    a = data.load("digits", train_size=300, test_size=100, seed=1)
    b = data.load("digits", train_size=300, test_size=100, seed=1)
    c = data.load("digits", train_size=300, test_size=100, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train) and not torch.equal(a.x_val, c.x_val)


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
    assert d.x_train.shape == (45, 3, 32, 32) and d.x_val.shape == (5, 3, 32, 32)
    assert d.meta.in_channels == 3
    assert torch.equal(d.x_train[:, 0], d.x_train[:, 2])  # grey repeated
    assert len(d.meta.mean) == 3
    grey = data.convert_channels(torch.full((1, 3, 2, 2), 200, dtype=torch.uint8), 1)
    assert grey.shape == (1, 1, 2, 2) and int(grey[0, 0, 0, 0]) == 200
    small = data.resize(torch.full((2, 1, 28, 28), 90, dtype=torch.uint8), 14)
    assert small.shape == (2, 1, 14, 14) and int(small.min()) == int(small.max()) == 90


def test_normalisation_statistics_come_from_the_images_trained_on_only():
    d = data.load("digits", train_size=200, test_size=50)
    assert (d.meta.mean, d.meta.std) == data.channel_stats(d.x_train)
    assert (d.meta.mean, d.meta.std) != data.channel_stats(torch.cat([d.x_train, d.x_val]))
    x = d.normalize(d.x_train)
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2


def test_meta_of_runs_stored_before_validation_still_reads():
    meta = data.load("digits", train_size=200, test_size=50).meta
    old = meta.as_dict()
    del old["val_size"]
    assert data.DataMeta.from_dict(old).val_size == 0
    assert data.DataMeta.from_dict(meta.as_dict()) == meta


def test_requests_that_cannot_be_met_are_clear():
    with pytest.raises(ValueError, match="Unknown dataset 'mnsit'.*Did you mean: mnist"):
        data.load("mnsit")
    with pytest.raises(ValueError, match="holds 1,797 images"):
        data.load("digits", train_size=1500, test_size=400)
    with pytest.raises(ValueError, match="train_size must be a positive integer"):
        data.load("digits", train_size=0)
    with pytest.raises(ValueError, match="1 or 3"):
        data.load("digits", in_channels=2)
    with pytest.raises(ValueError, match=r"need 21\.1 GiB in memory, more than the 8 GiB"):
        data.resolve("digits", input_size=2048, in_channels=3)


@pytest.mark.parametrize("name,expect", [("mnist", "t10k-images-idx3-ubyte"),
                                         ("fashion-mnist", "FashionMNIST"),
                                         ("cifar10", "cifar-10-batches-py")])
def test_missing_datasets_say_where_they_looked_and_how_to_get_them(tmp_path, name, expect):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, root=tmp_path)
    err = info.value
    assert isinstance(err, FileNotFoundError)  # the CLI turns it into one error line
    cli, app = str(err), err.app_message
    assert cli == err.message("cli") and app == err.message("app")
    for msg in (cli, app):
        assert str(tmp_path) in msg and expect in msg
    assert "--download" in cli and "--data-root" in cli
    assert "\u201cData root\u201d" in app and "\u201cDownload if missing\u201d" in app
    assert "--" not in app


def test_imagefolder_needs_a_root():
    with pytest.raises(data.DatasetNotFoundError, match="--data-root") as info:
        data.load("imagefolder")
    assert "\u201cData root\u201d" in info.value.app_message


def test_check_tells_ready_download_or_missing_without_reading(tmp_path):
    assert data.check("digits").state == data.READY
    missing = data.check("mnist", root=tmp_path)
    assert missing.state == data.MISSING and not missing.ok
    assert "\u201cDownload if missing\u201d" in missing.message("app")
    assert "--download" in missing.message("cli")
    planned = data.check("mnist", root=tmp_path, download=True)
    assert planned.state == data.DOWNLOAD and planned.ok
    assert planned.location == str(tmp_path / "MNIST" / "raw")
    assert "will be downloaded there when training starts" in planned.message()
    assert not (tmp_path / "MNIST").exists()  # nothing was fetched or created
    cifar = data.check("cifar10", root=tmp_path, download=True)
    assert cifar.state == data.DOWNLOAD and cifar.location.endswith("cifar-10-batches-py")
    # an image folder cannot be downloaded: ticking the box does not hide that it is missing
    folder = data.check("imagefolder", root=tmp_path / "nope", download=True)
    assert folder.state == data.MISSING and "does not exist" in folder.message()


def test_resolving_a_planned_download_gives_the_official_key_and_reads_nothing(tmp_path):
    spec, source = data.resolve("mnist", root=tmp_path, download=True)
    assert not source.present and spec.variant == "official"
    assert spec.fingerprint == "mnist:official"
    assert (spec.train_size, spec.val_size, spec.test_size) == (60000, 6000, 10000)
    assert list(tmp_path.iterdir()) == []


def test_mnist_test_split_only_root_is_accepted_and_split(mnist_test_root):
    d = data.load("mnist", root=mnist_test_root)
    assert d.meta.variant == "test-split"
    assert d.x_train.shape == (7200, 1, 28, 28) and d.x_val.shape == (800, 1, 28, 28)
    assert d.x_test.shape == (2000, 1, 28, 28)
    counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert counts.sum() == 2000 and counts.min() > 150  # every digit is there
    assert abs(d.meta.mean[0] - 0.13) < 0.01  # MNIST's well-known mean intensity
    assert data.check("mnist", root=mnist_test_root).state == data.READY
    with pytest.raises(ValueError, match="holds 10,000 images"):
        data.load("mnist", root=mnist_test_root, train_size=9000, test_size=2000)
