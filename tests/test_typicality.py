"""How typical an input is for a trained network: the ranks, the calibration of a stored
run, and the separation of the digits test split from the sample photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnncompare import classify as C
from cnncompare import data
from cnncompare import typicality as T
from cnncompare.paths import SAMPLES_DIR

PHOTOS = ("china.jpg", "flower.jpg")


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory):
    from tests.trained_lenet import quick_lenet

    return quick_lenet(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def lenet(lenet_run):
    from cnncompare.store import ResultsStore

    home, run_id = lenet_run
    return C.from_run(ResultsStore(home), run_id)


def test_ranks_are_shares_of_held_out_images_at_least_as_atypical():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    fit = torch.randn(200, 1, 4, 4) * torch.tensor([3.0] * 8 + [0.1] * 8).reshape(1, 1, 4, 4)
    held = fit[:100]
    cal = T.calibrate(model, fit, held, "validation")
    assert cal.size == 100 and cal.split == "validation"
    assert np.all(np.diff(cal.pixel) >= 0) and np.all(np.diff(cal.energy) >= 0)
    # The held-out images' own ranks are spread over (0, 1]: a typical image is typical.
    with torch.no_grad():
        logits = model(held)
    ranks = np.array([T.score(cal, held[i:i + 1], logits[i]).pixel_rank for i in range(100)])
    assert ranks.min() == pytest.approx(0.01) and ranks.max() == 1.0
    assert np.median(ranks) == pytest.approx(0.5, abs=0.05)
    # Far off the principal subspace: beyond every held-out image.
    odd = torch.zeros(1, 1, 4, 4)
    odd[0, 0, 3, 3] = 50.0
    with torch.no_grad():
        verdict = T.score(cal, odd, model(odd)[0])
    assert verdict.pixel_rank == 0.0 and verdict.verdict == T.UNLIKE_VERDICT
    assert verdict.sentences("toy")[0] == ("This image looks like nothing toy was trained on, "
                                           "so its answer means little.")


def test_calibration_needs_data():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="at least two training"):
        T.calibrate(model, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "validation")


def test_a_stored_run_is_calibrated_on_its_own_validation_split(lenet, lenet_run):
    from cnncompare.store import ResultsStore

    cal = lenet.calibration
    assert cal is not None and cal.split == "validation"
    record = ResultsStore(lenet_run[0]).run(lenet_run[1])
    assert cal.size == record.settings["val_size"]
    assert 1 <= cal.basis.shape[0] <= T.MAX_COMPONENTS and cal.basis.shape[1] == 28 * 28


def test_the_score_separates_the_digits_test_split_from_the_sample_photos(lenet, lenet_run):
    from cnncompare.store import ResultsStore

    record = ResultsStore(lenet_run[0]).run(lenet_run[1])
    s = record.settings
    td = data.load("digits", train_size=s["train_size"], val_size=s["val_size"],
                   test_size=s["test_size"], input_size=28, in_channels=1, seed=s["seed"])
    x = td.normalize(td.x_test)
    with torch.no_grad():
        logits = lenet.module(x)
    digits = [T.score(lenet.calibration, x[i:i + 1], logits[i]) for i in range(len(x))]
    typical = np.array([t.typicality for t in digits])
    flagged = np.mean([t.verdict == T.UNLIKE_VERDICT for t in digits])
    assert flagged <= 0.05, flagged  # held-out digits are rarely called unlike
    for name in PHOTOS:
        pred = C.predict(lenet, Image.open(SAMPLES_DIR / name), saliency=False)
        assert pred.typicality.verdict == T.UNLIKE_VERDICT, name
        assert pred.typicality.typicality < np.quantile(typical, 0.05), name
    for name in ("digit_0.png", "digit_3.png", "digit_7.png"):
        pred = C.predict(lenet, Image.open(SAMPLES_DIR / name), saliency=False)
        assert pred.typicality.verdict != T.UNLIKE_VERDICT, name


def test_a_run_whose_data_cannot_be_recreated_still_classifies(lenet_run, monkeypatch):
    from cnncompare.store import ResultsStore

    def missing(*args, **kwargs):
        raise data.DatasetNotFoundError("MNIST needs a data root.")

    monkeypatch.setattr(data, "load", missing)
    clf = C.from_run(ResultsStore(lenet_run[0]), lenet_run[1])
    assert clf.calibration is None
    assert clf.calibration_note.startswith("How typical an image is cannot be said for this "
                                           "run: its data could not be re-created")
    pred = C.predict(clf, Image.open(SAMPLES_DIR / "digit_3.png"), saliency=False)
    assert pred.typicality is None and pred.top1 == "3"
