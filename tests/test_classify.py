"""cnncompare.classify: preprocessing matched to each network, top-k, agreement, stored runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cnncompare import classify as C
from cnncompare.registry import get_model, model_info
from cnncompare.uploads import decode_image, read_image_file
from tests.image_corpus import PAGE_LIMIT_BYTES, usable

DIGIT_SPEC = C.InputSpec(in_channels=1, input_size=28, mean=(0.3,), std=(0.4,), resize="pad",
                         ink=C.LIGHT_ON_DARK)


# ------------------------------------------------------------------------- preprocessing


def _paper_digit(w: int = 60, h: int = 80) -> Image.Image:
    """A dark stroke on white paper, not square."""
    arr = np.full((h, w), 250, np.uint8)
    arr[h // 5: 4 * h // 5, w // 2 - 3: w // 2 + 3] = 10
    return Image.fromarray(arr).convert("RGB")


def test_dark_on_light_digits_are_inverted_automatically_with_override():
    paper = _paper_digit()
    auto = C.preprocess(paper, DIGIT_SPEC)
    assert auto.inverted and auto.tensor.shape == (1, 1, 28, 28)
    shown = np.asarray(auto.shown)
    assert auto.shown.mode == "L" and shown[0, 0] < 20 and shown[14].max() > 200
    kept = C.preprocess(paper, DIGIT_SPEC, invert=False)
    assert not kept.inverted and np.asarray(kept.shown)[0, 0] > 230
    # Light ink on dark is already what the network expects.
    chalk = Image.eval(paper, lambda v: 255 - v)
    assert not C.preprocess(chalk, DIGIT_SPEC).inverted
    # A model trained on dark-on-light strokes wants the opposite.
    pencil = C.InputSpec(in_channels=1, input_size=28, resize="pad", ink=C.DARK_ON_LIGHT,
                         mean=(0.5,), std=(0.5,))
    assert C.preprocess(chalk, pencil).inverted and not C.preprocess(paper, pencil).inverted
    # Photo models never invert by themselves.
    assert not C.preprocess(paper, C.IMAGENET_SPEC).inverted


def test_shown_image_is_exactly_the_tensor_denormalised():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    for spec in (C.IMAGENET_SPEC, DIGIT_SPEC):
        prep = C.preprocess(photo, spec)
        x = prep.tensor[0].numpy()
        mean = np.array(spec.mean).reshape(-1, 1, 1)
        std = np.array(spec.std).reshape(-1, 1, 1)
        pixels = np.asarray(prep.shown, dtype=np.float64) / 255
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        assert np.abs(x * std + mean - pixels).max() < 0.5 / 255 + 1e-6
        assert prep.shown.size == (spec.input_size, spec.input_size)


def test_imagenet_crop_keeps_the_centre_and_pad_keeps_everything():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :20] = 255  # a bright bar at the far left
    img = Image.fromarray(wide)
    cropped = np.asarray(C.preprocess(img, C.IMAGENET_SPEC).shown)
    assert cropped.max() == 0  # outside the central square: cropped away
    padded = np.asarray(C.preprocess(img, C.InputSpec(in_channels=3, input_size=30,
                                                      resize="pad")).shown)
    assert padded[:, :2].max() > 200  # still there after padding to a square


@pytest.mark.parametrize("resize", ["crop", "pad", "stretch"])
def test_extreme_aspect_ratios_never_blow_up(resize, monkeypatch):
    made = []
    real_new = Image.new

    def watched_new(mode, size, *args, **kwargs):
        made.append(size)
        return real_new(mode, size, *args, **kwargs)

    strip = Image.new("RGB", (100000, 1), (200, 200, 200))
    monkeypatch.setattr(Image, "new", watched_new)
    spec = C.InputSpec(in_channels=1, input_size=28, mean=(0.5,), std=(0.5,), resize=resize)
    prep = C.preprocess(strip, spec)
    assert prep.tensor.shape == (1, 1, 28, 28)
    assert all(w * h <= 28 * 28 for w, h in made)  # no 100000 x 100000 canvas


def test_spec_from_meta_reads_a_digits_run_and_a_photo_run():
    from cnncompare.data import DATASETS

    digits = C.spec_from_meta({"in_channels": 1, "input_size": 28, "mean": [0.2],
                               "std": [0.3], "ink": DATASETS["digits"].ink})
    assert digits.ink == C.LIGHT_ON_DARK and digits.resize == "pad"
    assert digits.in_channels == 1 and digits.mean == (0.2,) and digits.std == (0.3,)
    photos = C.spec_from_meta({"in_channels": 3, "input_size": 32, "ink": "natural",
                               "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]})
    assert photos.ink == C.NATURAL and photos.resize == "crop" and photos.input_size == 32
    assert set(C.INKS) == {info.ink for info in DATASETS.values()} | {C.DARK_ON_LIGHT}
    with pytest.raises(ValueError):
        C.InputSpec(in_channels=2)
    with pytest.raises(ValueError):
        C.InputSpec(ink="purple")


def test_enlarge_shows_small_inputs_pixel_for_pixel():
    assert C.enlarge(Image.new("L", (28, 28))).size == (224, 224)
    assert C.enlarge(Image.new("L", (300, 240))).size == (300, 240)
    assert C.enlarge(Image.new("L", (300, 200))).size == (600, 400)  # whole multiples only


# ---------------------------------------------------------------------------- prediction


def _classifier(name: str = "resnet18") -> C.Classifier:
    small = dict(model_info(name).small)
    spec = C.InputSpec(in_channels=small["in_channels"], input_size=small["input_size"],
                       mean=(0.5,) * small["in_channels"], std=(0.25,) * small["in_channels"])
    model = get_model(name, **small)
    return C.Classifier(name=name, module=model, class_names=tuple("abcdefghij"), spec=spec,
                        dataset="toy")


@pytest.mark.parametrize("case", usable(), ids=lambda c: c.name)
def test_every_usable_corpus_file_is_classified(case):
    torch.manual_seed(0)
    clf = _classifier()
    pred = C.predict(clf, decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES).image, k=5)
    assert len(pred.classes) == 5 and set(pred.classes) <= set("abcdefghij")
    assert pred.probs == sorted(pred.probs, reverse=True) and 0 < sum(pred.probs) <= 1 + 1e-6
    assert pred.time_ms > 0
    assert pred.saliency.shape == (32, 32)
    assert pred.cam_layer == "layer4"
    assert list(pred.frame()["class"]) == pred.classes


def test_predict_checks_class_names_and_k():
    clf = _classifier()
    img = Image.new("RGB", (40, 40))
    with pytest.raises(ValueError, match="k must be"):
        C.predict(clf, img, k=0)
    clf.class_names = ("a", "b")
    with pytest.raises(ValueError, match="class names"):
        C.predict(clf, img)


def test_small_networks_run_on_one_intra_op_thread_and_leave_the_count_alone():
    import threading

    before = torch.get_num_threads()
    pred = C.predict(_classifier(), Image.new("RGB", (40, 40)))  # 32 px input
    assert pred.threads == 1 and torch.get_num_threads() == before
    seen = {}
    late = threading.Thread(target=lambda: seen.setdefault("n", torch.get_num_threads()))
    late.start()
    late.join()
    assert seen["n"] == before  # threads started later keep the process's default
    big = C.Classifier("big", nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1),
                                            nn.Flatten(), nn.Linear(4, 3)),
                       ("a", "b", "c"), C.InputSpec(input_size=96))
    assert C.predict(big, Image.new("RGB", (100, 100))).threads == before


def test_keyed_predictions_are_remembered_and_bounded(monkeypatch):
    clf = _classifier()
    img = Image.new("RGB", (40, 40), (90, 20, 200))
    runs = []
    real = C._predict_locked
    monkeypatch.setattr(C, "_predict_locked", lambda *a: runs.append(a[3]) or real(*a))
    first = C.predict(clf, img, key="upload-1")
    assert C.predict(clf, img, key="upload-1") is first and clf.hits == 1
    C.predict(clf, img, key="upload-1", invert=True)  # other settings: computed
    C.predict(clf, img)  # no key: always computed
    C.predict(clf, img)
    assert runs == [None, True, None, None] and clf.hits == 1
    assert clf.saliency_layer == "layer4" == first.cam_layer  # the rule ran once
    for i in range(C.REMEMBERED_PREDICTIONS + 5):
        C.predict(clf, img, key=f"other-{i}")
    assert len(clf.remembered) == C.REMEMBERED_PREDICTIONS
    C.predict(clf, img, key="upload-1")  # pushed out by newer ones: computed again
    assert clf.hits == 1 and len(runs) == 4 + C.REMEMBERED_PREDICTIONS + 5 + 1


def test_agreement_line():
    def p(model, top, dataset="digits"):
        return C.Prediction(model, dataset, [top], [0.9], [0], 1.0, Image.new("L", (1, 1)),
                            False, None, None)

    assert C.agreement([]) == "No model selected."
    assert "agree: **7**" in C.agreement([p("a", "7"), p("b", "7"), p("c", "7")])
    line = C.agreement([p("a", "7"), p("b", "1"), p("c", "7", "imagenet")])
    assert line.startswith("The models disagree (they were trained on different datasets")
    assert "**7** (a, c)" in line and "**1** (b)" in line

# ------------------------------------------------------------- a LeNet trained on digits


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory):
    from tests.trained_lenet import quick_lenet

    return quick_lenet(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("sample, digit, inverted", [
    ("digit_0.png", "0", False), ("digit_3.png", "3", False), ("digit_7.png", "7", False),
    ("digit_2_paper.png", "2", True), ("digit_5_paper.png", "5", True),
])
def test_trained_lenet_reads_clean_digits(lenet_run, sample, digit, inverted):
    from cnncompare.paths import SAMPLES_DIR
    from cnncompare.store import ResultsStore

    home, run_id = lenet_run
    clf = C.from_run(ResultsStore(home), run_id)
    assert clf.spec.ink == C.LIGHT_ON_DARK and clf.spec.in_channels == 1
    assert clf.class_names == tuple("0123456789") and clf.arch == "lenet"
    image = read_image_file(SAMPLES_DIR / sample).image
    pred = C.predict(clf, image)
    assert pred.top1 == digit and pred.inverted is inverted
    assert pred.cam_layer == "pool2" and pred.saliency.shape == (28, 28)
    assert 0.0 <= pred.saliency.min() and pred.saliency.max() <= 1.0
    # The same drawing with the ink the wrong way round, not inverted, is another story:
    # the override is honoured.
    assert C.predict(clf, image, invert=not inverted).inverted is (not inverted)


def test_topk_bars_figure():
    from cnncompare.plots import model_color, topk_bars

    frame = pd.DataFrame({"class": ["crane", "heron", "crane"], "probability": [0.5, 0.3, 0.1]})
    fig = topk_bars(frame, "resnet18")
    bar = fig.data[0]
    assert list(bar.x) == [0.5, 0.3, 0.1] and len(set(bar.y)) == 3  # both cranes kept
    assert bar.marker.color == model_color("resnet18")
    assert fig.layout.xaxis.range == (0, 1) and fig.layout.yaxis.autorange == "reversed"


# ------------------------------------------------------------------ drawings, native size


def test_crop_to_ink_centres_a_small_drawing():
    arr = np.zeros((280, 280), np.uint8)
    arr[200:240, 20:30] = 255  # a short stroke in a corner, 40 x 10
    cropped = C.crop_to_ink(Image.fromarray(arr), margin=0.1)
    assert cropped.size == (48, 48)  # the longer side 40, 10% on each side
    out = np.asarray(cropped)
    ys, xs = np.nonzero(out > 128)
    assert (ys.min(), ys.max()) == (4, 43) and (xs.min() + xs.max()) // 2 == 23
    assert out[0, 0] == 0  # the margin is background
    blank = Image.new("L", (50, 50))
    assert C.crop_to_ink(blank) is blank


def test_digits_pass_through_their_native_eight_pixels():
    spec = C.spec_from_meta({"dataset": "digits", "in_channels": 1, "input_size": 28,
                             "mean": [0.3], "std": [0.3], "ink": "light-on-dark"})
    assert spec.native_size == 8
    assert C.spec_from_meta({"dataset": "mnist", "in_channels": 1, "input_size": 28,
                             "ink": "light-on-dark"}).native_size is None
    sharp = np.zeros((280, 280), np.uint8)
    sharp[:, 139:141] = 255  # a 2 px line: at 8 px it is smeared over a whole cell
    shown = np.asarray(C.preprocess(Image.fromarray(sharp), spec).shown)
    direct = np.asarray(C.preprocess(Image.fromarray(sharp), C.InputSpec(
        in_channels=1, input_size=28, mean=(0.3,), std=(0.3,), resize="pad",
        ink=C.LIGHT_ON_DARK)).shown)
    assert (shown[14] > 0).sum() > 4 * (direct[14] > 0).sum()  # smeared like the digits
    with pytest.raises(ValueError, match="native_size must be"):
        C.InputSpec(in_channels=1, input_size=8, mean=(0.5,), std=(0.5,), native_size=8)
