"""The Classify page (Streamlit's AppTest): uploads good and hostile, samples, models."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from streamlit.testing.v1 import AppTest

from cnncompare import pretrained, uploads
from cnncompare.paths import SAMPLES_DIR
from tests.conftest import REPO
from tests.image_corpus import corpus, jpeg_cut_short

PAGE = str(REPO / "views" / "classify.py")
MIME = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "bmp": "image/bmp"}


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory):
    from tests.trained_lenet import quick_lenet

    return quick_lenet(tmp_path_factory.getbasetemp())


@pytest.fixture
def offline_torch(tmp_path, monkeypatch):
    """An empty torch cache, and a network that is never reached."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls: list[str] = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


@pytest.fixture
def page_with_lenet(lenet_run, monkeypatch, offline_torch) -> AppTest:
    home, _ = lenet_run
    monkeypatch.setenv("CNNCOMPARE_HOME", str(home))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    return at


def _texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    mime = MIME.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    at.file_uploader(key="classify_upload").set_value((name, data, mime))
    return at.run()


def test_every_corpus_upload_gets_a_message_or_a_prediction(page_with_lenet):
    at = page_with_lenet
    for case in corpus():
        _upload(at, case.name, case.data)
        assert not at.exception, (case.name, at.exception)
        errors = _texts(at, "error")
        if case.usable:
            assert errors == [], (case.name, errors)
            line = _texts(at, "markdown")
            assert any(t.startswith("One model: it says **") for t in line), case.name
            assert any(c.startswith("Prediction: ") and " ms " in c
                       for c in _texts(at, "caption")), case.name
        else:
            assert len(errors) == 1, (case.name, errors)
            assert errors[0].startswith(f"`{case.name}` cannot be used: ")
            assert case.expect in errors[0].lower(), (case.name, errors[0])
            assert "Traceback" not in errors[0]
            assert not any(t.startswith("One model") for t in _texts(at, "markdown"))


@pytest.mark.parametrize("sample, digit", [("digit_3.png", "3"), ("digit_2_paper.png", "2")])
def test_samples_are_classified_by_the_trained_lenet(page_with_lenet, sample, digit):
    at = page_with_lenet
    picker = at.selectbox(key="classify_sample")
    assert picker.options[:5] == [  # digits first
        "digit_0.png", "digit_2_paper.png", "digit_3.png", "digit_5_paper.png", "digit_7.png"]
    assert {"china.jpg", "flower.jpg"} <= set(picker.options)
    picker.set_value(SAMPLES_DIR / sample).run()
    assert not at.exception and not at.error
    assert f"One model: it says **{digit}**." in _texts(at, "markdown")
    assert "lenet · digits" in [s.value for s in at.subheader]
    paper = "paper" in sample  # dark ink on white: inverted for the digit model
    assert any(t.endswith("colours inverted") for t in _texts(at, "markdown")) is paper
    # The switch overrides the automatic choice both ways.
    at.radio(key="classify_invert").set_value("Keep as is" if paper else "Invert").run()
    assert not at.exception
    assert any(t.endswith("colours inverted") for t in _texts(at, "markdown")) is not paper


def test_photo_sample_through_a_digit_model_still_answers(page_with_lenet):
    at = page_with_lenet
    at.selectbox(key="classify_sample").set_value(SAMPLES_DIR / "china.jpg").run()
    assert not at.exception and not at.error
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))


def test_offline_page_says_so_and_download_fails_politely(page_with_lenet, offline_torch):
    at = page_with_lenet
    info = " ".join(_texts(at, "info"))
    assert "Not in the torch cache" in info and "resnet18" in info
    assert offline_torch == []  # showing the page never touches the network
    at.selectbox(key="classify_fetch_name").set_value("resnet18")
    at.button(key="classify_fetch").click().run()
    assert not at.exception
    warning = " ".join(_texts(at, "warning"))
    assert "Could not download" in warning and "offline" in warning
    assert len(offline_torch) == 1 and offline_torch[0].endswith("resnet18-f37072fd.pth")


def test_cached_imagenet_network_beside_the_lenet(lenet_run, monkeypatch, offline_torch):
    from torchvision import models as tvm

    path = pretrained.pretrained_status("resnet18").path
    path.parent.mkdir(parents=True)
    torch.save(tvm.resnet18().state_dict(), path)  # random weights, the real file's name
    monkeypatch.setenv("CNNCOMPARE_HOME", str(lenet_run[0]))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    at.multiselect(key="classify_imagenet").set_value(["resnet18"]).run()
    assert not at.exception and not at.error
    answers = [s.value for s in at.subheader if s.value != "Feature maps"]
    assert answers[-2:] == ["lenet · digits", "resnet18 (ImageNet)"]
    agreement = next(t for t in _texts(at, "markdown") if "model" in t.lower())
    assert agreement.startswith(("All 2 models agree", "The models disagree (they were "
                                 "trained on different datasets"))
    assert offline_torch == []


def test_empty_store_offers_a_quick_lenet(offline_torch):
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    assert any("No trained network" in t for t in _texts(at, "info"))
    assert any("Choose at least one network" in t for t in _texts(at, "info"))
    at.button(key="classify_train_lenet").click().run()
    assert not at.exception and not at.error
    assert at.multiselect(key="classify_runs_digits").value  # the new run, preselected
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))


def test_a_run_whose_checkpoint_vanished_is_reported_not_raised(lenet_run, tmp_path,
                                                                 monkeypatch, offline_torch):
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(lenet_run[0], home)
    for ckpt in (home / "checkpoints").glob("*"):
        ckpt.unlink()
    monkeypatch.setenv("CNNCOMPARE_HOME", str(home))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert any(e.startswith(f"Run {lenet_run[1]} could not classify this image")
               for e in _texts(at, "error"))
    assert "No model selected." in _texts(at, "markdown")


def test_reachable_from_the_app_navigation(page_with_lenet):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("views/classify.py").run()
    assert not at.exception
    assert at.title[0].value == "Classify"
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))


def _png(size=(40, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (250, 250, 250)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", [
    "nul\x00byte.png", "no-extension", "setup.exe", "**bold** [link](http://evil.example) "
    ":red[red] :material/home: $x^2$.png",
])
def test_any_file_name_gets_the_page_not_a_traceback(page_with_lenet, name):
    """Streamlit checks extensions itself when the uploader has `type=`, before the page
    runs: a NUL byte, no extension or ".exe" then raise outside the page's reach."""
    at = page_with_lenet
    _upload(at, name, _png())  # an image, whatever the name says: the contents decide
    assert not at.exception, at.exception
    assert not at.error
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))
    captions = [c for image in at.get("image") for c in image.captions]
    assert uploads.markdown_literal(name) + ": PNG, 40 x 30 pixels" in captions  # plain text
    _upload(at, name, b"MZ\x90\x00 not an image at all")
    assert not at.exception
    (error,) = _texts(at, "error")
    assert error.startswith(uploads.markdown_literal(name) + " cannot be used: ")


def test_the_page_and_the_server_agree_on_the_upload_limit(page_with_lenet):
    import tomllib

    at = page_with_lenet
    widget = at.file_uploader(key="classify_upload")
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server_mb = config["server"]["maxUploadSize"]
    # The browser refuses files over the widget's limit; the server (which counts the
    # request around the file too) allows a whole megabyte more.
    assert widget.proto.max_upload_size_mb == 5 and server_mb >= 6
    limit = widget.proto.max_upload_size_mb * 2**20
    exact = _png()
    exact = exact[:-12] + b"\x00" * (limit - len(exact)) + exact[-12:]  # padding after IEND
    assert len(exact) == limit
    _upload(at, "exactly-5-MB.png", exact)
    assert not at.exception and not at.error
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))
    _upload(at, "one-byte-more.png", exact + b"\x00")
    (error,) = _texts(at, "error")
    assert "over the limit of 5,242,880 bytes" in error


def test_a_damaged_jpeg_is_classified_under_a_visible_warning(page_with_lenet):
    at = page_with_lenet
    _upload(at, "cut.jpg", jpeg_cut_short(0.5))
    assert not at.exception and not at.error
    (warning,) = [w for w in _texts(at, "warning") if "trained on" not in w]
    assert warning.startswith("The JPEG data ends early")
    assert any(t.startswith("One model: it says **") for t in _texts(at, "markdown"))


def test_an_upload_is_decoded_once_across_reruns(page_with_lenet, monkeypatch):
    calls = []
    real = uploads.decode_image

    def counted(data, **kwargs):
        calls.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(uploads, "decode_image", counted)
    at = page_with_lenet
    _upload(at, "once.png", _png())
    at.radio(key="classify_invert").set_value("Invert").run()
    at.radio(key="classify_invert").set_value("Keep as is").run()
    assert not at.exception and len(calls) == 1
    _upload(at, "bad.png", b"not an image")  # a refusal is remembered too
    at.radio(key="classify_invert").set_value("Invert").run()
    assert len(calls) == 2 and len(_texts(at, "error")) == 1


def test_reruns_reuse_the_networks_answers(page_with_lenet, monkeypatch):
    from cnncompare import classify

    runs = []
    real = classify._predict_locked
    monkeypatch.setattr(classify, "_predict_locked", lambda *a: runs.append(a[3]) or real(*a))
    at = page_with_lenet
    _upload(at, "again.png", _png())
    at.radio(key="classify_invert").set_value("Invert").run()
    at.radio(key="classify_invert").set_value("Auto").run()  # seen before: reused
    assert not at.exception and runs == [None, True]
    assert [c.startswith("Prediction: ") for c in _texts(at, "caption")].count(True) == 1


def _drawing_state(image) -> dict:
    """What the canvas component reports after a stroke: its objects and its PNG."""
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}}


def test_a_drawn_digit_is_classified(page_with_lenet):
    from PIL import Image, ImageDraw

    at = page_with_lenet
    at.radio(key="classify_source").set_value("draw").run()
    assert not at.exception
    assert any("Draw a digit in the black square" in t for t in _texts(at, "info"))
    assert not any(t.startswith("One model") for t in _texts(at, "markdown"))
    drawn = Image.new("RGB", (280, 280), "black")
    pen = ImageDraw.Draw(drawn)
    pen.ellipse((110, 100, 170, 190), outline="white", width=12)  # a small 0, off centre
    at.session_state["classify_canvas"] = _drawing_state(drawn)
    at.run()
    assert not at.exception and not at.error
    assert "One model: it says **0**." in _texts(at, "markdown")
    captions = [c for image in at.get("image") for c in image.captions]
    assert "input as the network sees it" in captions


def test_a_photo_is_called_unlike_anything_the_digit_network_saw(page_with_lenet):
    at = page_with_lenet
    at.selectbox(key="classify_sample").set_value(SAMPLES_DIR / "flower.jpg").run()
    assert not at.exception
    assert "This image looks like nothing lenet was trained on, so its answer means " \
           "little." in _texts(at, "warning")
    at.selectbox(key="classify_sample").set_value(SAMPLES_DIR / "digit_3.png").run()
    assert not any("looks like nothing" in w for w in _texts(at, "warning"))
    assert any("Typicality: " in c and "validation images" in c for c in _texts(at, "caption"))


def test_feature_maps_side_by_side_on_request(page_with_lenet):
    at = page_with_lenet
    assert "Feature maps" in [s.value for s in at.subheader]
    assert not any(c.startswith("act1: ") for image in at.get("image") for c in image.captions)
    at.toggle(key="classify_fmaps").set_value(True).run()
    assert not at.exception
    at.slider(key="classify_fmaps_top").set_value(3).run()
    captions = [c for image in at.get("image") for c in image.captions]
    stages = [c for c in captions if c.split(":")[0] in ("act1", "pool1", "act2", "pool2")]
    assert len(stages) == 4 and stages[0].startswith("act1: 6 x 28 x 28 (channels ")
    assert stages[0].count(",") == 2  # three channels
