"""cnncompare.classify: safe decoding, preprocessing, Grad-CAM, pretrained weights."""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cnncompare import classify as C
from cnncompare.registry import get_model, list_models, model_info
from tests.image_corpus import PAGE_LIMIT_BYTES, corpus, png_bomb, unusable, usable

DIGIT_SPEC = C.InputSpec(in_channels=1, input_size=28, mean=(0.3,), std=(0.4,), resize="pad",
                         ink=C.LIGHT_ON_DARK)


def _decode(case_name: str) -> C.DecodedImage:
    case = next(c for c in corpus() if c.name == case_name)
    return C.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)


# ------------------------------------------------------------------------------ decoding


def test_corpus_is_big_and_mixed():
    assert len(corpus()) >= 15
    assert len(unusable()) >= 10 and len(usable()) >= 10


@pytest.mark.parametrize("case", unusable(), ids=lambda c: c.name)
def test_unusable_files_raise_a_typed_clear_error(case):
    with pytest.raises(C.ImageError) as err:
        C.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)
    message = str(err.value)
    assert case.expect in message.lower()
    assert "Traceback" not in message and len(message) < 300
    assert isinstance(err.value, ValueError)  # callers may catch ValueError alone


@pytest.mark.parametrize("case", usable(), ids=lambda c: c.name)
def test_usable_files_decode_to_upright_8bit_rgb(case):
    decoded = C.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)
    assert decoded.image.mode == "RGB"
    assert decoded.size == case.size


def test_bomb_is_refused_from_the_header_before_decoding(monkeypatch):
    # If any pixel were decoded, load() would run: make that fail loudly.
    def boom(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", boom)
    with pytest.raises(C.ImageError, match="megapixels"):
        C.decode_image(png_bomb(9000))
    # Our bound holds even when Pillow's own guard is switched off.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(C.ImageError, match="megapixels"):
        C.decode_image(png_bomb(20000))


def test_pixel_and_byte_bounds_are_parameters():
    data = _save_png(Image.new("RGB", (100, 100)))
    assert C.decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(C.ImageError, match="limit is 0 megapixels"):
        C.decode_image(data, max_pixels=9_999)
    with pytest.raises(C.ImageError, match="over the limit"):
        C.decode_image(data, max_bytes=len(data) - 1)
    with pytest.raises(TypeError):
        C.decode_image("not bytes")  # type: ignore[arg-type]


def _save_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_exif_orientation_is_applied():
    img = np.asarray(_decode("exif-rotated.jpg").image, dtype=int)
    # Stored 60x40 with the left half red; orientation 6 turns it 90 degrees clockwise,
    # so the picture is 40 wide, 60 high, and the red half is on top.
    assert img.shape == (60, 40, 3)
    top, bottom = img[5, 20], img[55, 20]
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_sixteen_bit_values_are_scaled_not_clipped():
    row = np.asarray(_decode("gray16.png").image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[255] == 255
    assert abs(row[128] - 128) <= 1  # 128 * 257 / 65535 * 255
    assert np.all(np.diff(row) >= 0)
    # A dark 16-bit picture (every value below 256) stays dark: the depth, not the
    # content, sets the scale.
    dark = C.decode_image(_save_png(Image.fromarray(np.full((4, 4), 200, np.uint16))))
    assert dark.mode == "I;16" and np.asarray(dark.image).max() <= 1


def test_cmyk_becomes_the_right_rgb():
    r, g, b = np.asarray(_decode("cmyk.jpg").image)[15, 20].astype(int)
    assert r > 200 and g < 60 and b < 60  # C=0 M=255 Y=255 K=0 is red


def test_transparency_is_flattened_on_a_contrasting_background():
    ring = np.asarray(_decode("palette-transparent.png").image)
    assert ring[0, 0].tolist() == [255, 255, 255] and ring[20, 8].max() < 60
    strokes = np.asarray(_decode("rgba-light-strokes.png").image)
    assert strokes[0, 0].tolist() == [0, 0, 0] and strokes[24, 24].min() > 200
    la = np.asarray(_decode("la.png").image)
    assert la[0, 0].tolist() == [255, 255, 255] and la[10, 15].max() < 60


def test_animated_gif_uses_the_first_frame():
    decoded = _decode("animated.gif")
    assert decoded.frames == 3
    assert np.asarray(decoded.image)[5, 5].tolist() == [255, 0, 0]


def test_read_image_file(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(_save_png(Image.new("L", (9, 7), 3)))
    assert C.read_image_file(path).size == (9, 7)
    with pytest.raises(C.ImageError, match="cannot be read"):
        C.read_image_file(tmp_path / "missing.png")


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


# ------------------------------------------------------------------------------ Grad-CAM

EXPECTED_LAYER = {"LeNet": "pool2", "AlexNet": "features", "VGG": "features", "NiN": "block4",
                  "GoogLeNet": "inception5b", "ResNet": "layer4", "DenseNet": "features"}


@pytest.mark.parametrize("name", list_models())
def test_grad_cam_on_every_registered_model(name):
    torch.manual_seed(0)
    small = dict(model_info(name).small)
    model = get_model(name, **small).eval()
    side = small["input_size"]
    x = torch.randn(1, small["in_channels"], side, side)
    result = C.grad_cam(model, x)
    assert result is not None
    assert result.layer == EXPECTED_LAYER[model_info(name).family]
    assert result.map.shape == (side, side) and result.map.dtype == np.float32
    assert result.map.min() >= 0.0 and result.map.max() <= 1.0
    assert 0 <= result.target < small["num_classes"]


@pytest.mark.parametrize("name", C.IMAGENET_MODELS)
def test_cam_layer_rule_on_torchvision_models(name):
    from torchvision import models as tvm

    extra = {"init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = tvm.get_model(name, weights=None, **extra).eval()
        layer = C.cam_layer(model, torch.empty(1, 3, 224, 224))
    family = {"alexnet": "AlexNet", "vgg16": "VGG", "googlenet": "GoogLeNet",
              "resnet18": "ResNet", "resnet50": "ResNet", "densenet121": "DenseNet"}[name]
    assert layer == EXPECTED_LAYER[family]


class _Spotlight(nn.Module):
    """Identity conv -> global average -> class 0 = +mean, class 1 = -mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_grad_cam_points_at_the_evidence():
    x = torch.zeros(1, 1, 16, 16)
    x[..., :6, :6] = 1.0  # evidence in the top-left corner only
    model = _Spotlight().eval().requires_grad_(False)  # frozen weights still work
    yes = C.grad_cam(model, x, target=0)
    assert yes.layer == "conv" and yes.map.shape == (16, 16)
    assert yes.map[:4, :4].min() > 0.9 and yes.map[10:, 10:].max() < 0.1
    no = C.grad_cam(model, x, target=1)  # negative evidence: ReLU leaves nothing
    assert no.map.max() == 0.0
    with pytest.raises(ValueError, match="no module"):
        C.grad_cam(model, x, layer="nope")
    with pytest.raises(ValueError, match="outside"):
        C.grad_cam(model, x, target=5)


def test_overlay_is_rgb_at_the_image_size():
    cam = np.zeros((28, 28), np.float32)
    cam[:14] = 1.0
    base = Image.new("L", (100, 60), 128)
    out = C.overlay(base, cam, alpha=0.5)
    assert out.mode == "RGB" and out.size == (100, 60)
    assert np.asarray(C.overlay(base, cam, alpha=0.0)).tolist() == np.asarray(
        base.convert("RGB")).tolist()
    heat = np.asarray(C.overlay(base, cam, alpha=1.0), dtype=int)
    assert heat[2, 50].tolist() == C.colorize(np.ones((1, 1)))[0, 0].tolist()
    assert heat[2, 50].tolist() != heat[58, 50].tolist()
    assert C.enlarge(Image.new("L", (28, 28))).size == (224, 224)
    assert C.preview(Image.new("RGB", (100000, 1))).size == (480, 1)
    assert C.preview(Image.new("RGB", (300, 200))).size == (300, 200)


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
    pred = C.predict(clf, C.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES).image, k=5)
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


def test_agreement_line():
    def p(model, top, dataset="digits"):
        return C.Prediction(model, dataset, [top], [0.9], [0], 1.0, Image.new("L", (1, 1)),
                            False, None, None)

    assert C.agreement([]) == "No model selected."
    assert "agree: **7**" in C.agreement([p("a", "7"), p("b", "7"), p("c", "7")])
    line = C.agreement([p("a", "7"), p("b", "1"), p("c", "7", "imagenet")])
    assert line.startswith("The models disagree (they were trained on different datasets")
    assert "**7** (a, c)" in line and "**1** (b)" in line


# ----------------------------------------------------------------- torchvision weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def test_offline_without_cache_says_so_plainly(torch_home):
    for name in C.IMAGENET_MODELS:
        status = C.pretrained_status(name)
        assert not status.cached and status.path.parent == C.checkpoint_dir()
        with pytest.raises(C.WeightsUnavailable, match="not in the torch cache"):
            C.load_pretrained(name)
    assert torch_home == []  # downloading off: the network was never asked
    with pytest.raises(C.WeightsUnavailable, match="Could not download"):
        C.load_pretrained("resnet18", download=True)
    assert len(torch_home) == 1 and torch_home[0].endswith("resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        C.pretrained_status("lenet")


def _cache(name: str, state: dict) -> None:
    path = C.pretrained_status(name).path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_cached_weights_load_with_imagenet_classes(torch_home):
    from torchvision import models as tvm

    torch.manual_seed(0)
    reference = tvm.resnet18()
    _cache("resnet18", reference.state_dict())
    assert C.pretrained_status("resnet18").cached
    clf = C.load_pretrained("resnet18")
    assert torch.equal(clf.module.fc.weight, reference.fc.weight)
    assert len(clf.class_names) == 1000 and clf.class_names[0] == "tench"
    assert clf.spec.input_size == 224 and clf.spec.resize_size == 256
    pred = C.predict(clf, Image.new("RGB", (320, 240), (120, 80, 40)), k=5)
    assert set(pred.classes) <= set(clf.class_names) and pred.cam_layer == "layer4"
    assert pred.saliency.shape == (224, 224)
    assert torch_home == []


def test_cached_googlenet_and_old_style_densenet_keys_load(torch_home):
    from torchvision import models as tvm

    g = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    _cache("googlenet", g.state_dict())  # the real file holds the auxiliary heads too
    clf = C.load_pretrained("googlenet")
    assert clf.module.aux1 is None and clf.module.transform_input
    d = tvm.densenet121(weights=None)
    # torchvision's file predates num_batches_tracked and uses the old names, such as
    # "denselayer1.norm.1.weight".
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
           for k, v in d.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    _cache("densenet121", old)
    dense = C.load_pretrained("densenet121").module
    assert torch.equal(dense.features.denseblock1.denselayer1.norm1.weight,
                       d.features.denseblock1.denselayer1.norm1.weight)


def test_damaged_cache_file_is_reported(torch_home):
    path = C.pretrained_status("alexnet").path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(C.WeightsUnavailable, match="Could not read"):
        C.load_pretrained("alexnet")
    _cache("alexnet", {"features.0.weight": torch.zeros(1)})
    with pytest.raises(C.WeightsUnavailable, match="does not fit"):
        C.load_pretrained("alexnet")


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
    image = C.read_image_file(SAMPLES_DIR / sample).image
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
