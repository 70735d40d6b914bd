"""cnncompare.uploads: every upload decoded safely, or refused with one clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnncompare import uploads as U
from tests.image_corpus import PAGE_LIMIT_BYTES, corpus, png_bomb, unusable, usable


def _decode(case_name: str) -> U.DecodedImage:
    case = next(c for c in corpus() if c.name == case_name)
    return U.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)


def test_corpus_is_big_and_mixed():
    assert len(corpus()) >= 15
    assert len(unusable()) >= 10 and len(usable()) >= 10


@pytest.mark.parametrize("case", unusable(), ids=lambda c: c.name)
def test_unusable_files_raise_a_typed_clear_error(case):
    with pytest.raises(U.ImageError) as err:
        U.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)
    message = str(err.value)
    assert case.expect in message.lower()
    assert "Traceback" not in message and len(message) < 300
    assert isinstance(err.value, ValueError)  # callers may catch ValueError alone


@pytest.mark.parametrize("case", usable(), ids=lambda c: c.name)
def test_usable_files_decode_to_upright_8bit_rgb(case):
    decoded = U.decode_image(case.data, max_bytes=PAGE_LIMIT_BYTES)
    assert decoded.image.mode == "RGB"
    assert decoded.size == case.size


def test_bomb_is_refused_from_the_header_before_decoding(monkeypatch):
    # If any pixel were decoded, load() would run: make that fail loudly.
    def boom(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", boom)
    with pytest.raises(U.ImageError, match="megapixels"):
        U.decode_image(png_bomb(9000))
    # Our bound holds even when Pillow's own guard is switched off.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(U.ImageError, match="megapixels"):
        U.decode_image(png_bomb(20000))


def test_pixel_and_byte_bounds_are_parameters():
    data = _save_png(Image.new("RGB", (100, 100)))
    assert U.decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(U.ImageError, match="limit is 0 megapixels"):
        U.decode_image(data, max_pixels=9_999)
    with pytest.raises(U.ImageError, match="over the limit"):
        U.decode_image(data, max_bytes=len(data) - 1)
    with pytest.raises(TypeError):
        U.decode_image("not bytes")  # type: ignore[arg-type]


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
    dark = U.decode_image(_save_png(Image.fromarray(np.full((4, 4), 200, np.uint16))))
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
    assert U.read_image_file(path).size == (9, 7)
    with pytest.raises(U.ImageError, match="cannot be read"):
        U.read_image_file(tmp_path / "missing.png")


def test_preview_is_small_and_drawable():
    assert U.preview(Image.new("RGB", (100000, 1))).size == (480, 1)
    assert U.preview(Image.new("RGB", (300, 200))).size == (300, 200)
