"""cnncompare.uploads: every upload decoded safely, or refused with one clear message."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncompare import uploads as U
from tests.image_corpus import (
    PAGE_LIMIT_BYTES,
    apng_claiming,
    corpus,
    jpeg_claiming,
    jpeg_cut_short,
    jpeg_flat,
    jpeg_scan_bomb,
    jpeg_with_orientation,
    png_bomb,
    png_one_bit,
    unusable,
    usable,
    webp_flat,
)


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
    # The working copy keeps the aspect ratio and stays within its bounds.
    w, h = decoded.image.size
    assert w * h <= U.WORKING_PIXELS and max(w, h) <= U.WORKING_SIDE
    k = U.working_factor(*case.size)
    assert abs(w - case.size[0] / k) <= case.size[0] / k / 2 + 1
    assert abs(h - case.size[1] / k) <= case.size[1] / k / 2 + 1


def _forbid_decoding(monkeypatch) -> None:
    """Make decoding a pixel, or starting a worker, fail the test loudly."""
    def boom(*args, **kwargs):
        raise AssertionError("pixels decoded or a worker started")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", boom)
    monkeypatch.setattr(U.subprocess, "Popen", boom)


@pytest.fixture
def nothing_decoded(monkeypatch):
    _forbid_decoding(monkeypatch)


def test_bomb_is_refused_from_the_header_before_decoding(nothing_decoded, monkeypatch):
    with pytest.raises(U.ImageError, match="megapixels"):
        U.decode_image(png_bomb(9000))
    # Our bound holds even when Pillow's own guard is switched off.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(U.ImageError, match="megapixels"):
        U.decode_image(png_bomb(20000))


@pytest.mark.parametrize("data, phrase", [
    (png_one_bit(50_000_000, 1), "longest side allowed is 65,535 pixels"),  # 6 KB
    (png_one_bit(65_536, 1), "longest side allowed is 65,535 pixels"),
    (jpeg_scan_bomb(20_000), "more than 100 scans"),
    (jpeg_scan_bomb(101), "more than 100 scans"),
    (jpeg_claiming(7000, 7000), "damaged or crafted"),  # a 64 x 64 picture's data
    (jpeg_claiming(2000, 2000), "damaged or crafted"),
], ids=["png-50000000x1", "png-65536x1", "jpeg-20000-scans", "jpeg-101-scans",
        "jpeg-claims-7000", "jpeg-claims-2000"])
def test_costly_files_are_refused_from_their_structure(nothing_decoded, data, phrase):
    with pytest.raises(U.ImageError, match=phrase):
        U.decode_image(data)


def _gif_with_first_frame(width: int, height: int) -> bytes:
    """A 10 x 10 GIF whose first frame's descriptor says ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("P", (10, 10), 1).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    at = data.index(b"\x2c")
    data[at + 5:at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _jpeg_with_two_frame_headers(width: int, height: int) -> bytes:
    """A 64 x 64 JPEG with a second frame header saying ``width`` x ``height``."""
    data = _save_jpeg(Image.new("RGB", (64, 64), (1, 2, 3)))
    at = data.index(b"\xff\xc0")
    end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
    second = bytearray(data[at:end])
    second[5:9] = struct.pack(">HH", height, width)
    return data[:end] + bytes(second) + data[end:]


def test_headers_that_disagree_about_the_size_are_refused(monkeypatch):
    big_frame, two_headers = _gif_with_first_frame(8000, 8000), _jpeg_with_two_frame_headers(
        7000, 7000)
    _forbid_decoding(monkeypatch)  # the files are built; now nothing may decode
    # Pillow grows a GIF's canvas to its first frame: the structure read says so too.
    assert U.inspect_image(big_frame).width == 8000
    with pytest.raises(U.ImageError, match="64 megapixels"):
        U.decode_image(big_frame)
    # Pillow takes a JPEG's last frame header, libjpeg its first: refused, not decoded.
    with pytest.raises(U.ImageError, match="headers disagree about the picture's size"):
        U.decode_image(two_headers)


def test_a_file_of_countless_segments_is_read_in_a_worker():
    """Pillow's own reader walks every JPEG segment before the first scan, in Python."""
    plain = _save_jpeg(Image.new("RGB", (64, 64), (9, 90, 200)))
    at = plain.index(b"\xff\xda")
    crowded = plain[:at] + b"\xff\xfe\x00\x02" * 150_000 + plain[at:]  # empty comments
    assert U.inspect_image(crowded).heavy
    decoded = U.decode_image(crowded)
    assert decoded.isolated and decoded.size == (64, 64)


def test_scan_counts_and_data_sizes_read_from_the_bytes():
    facts = U.inspect_image(jpeg_scan_bomb(40))
    assert facts.progressive and facts.scans == 40 and facts.too_little_data is None
    assert U.inspect_image(jpeg_scan_bomb(20_000)).scans == U.MAX_JPEG_SCANS + 1  # stops
    assert U.inspect_image(jpeg_flat(7000, 7000)).scans == 1
    lying = U.inspect_image(jpeg_claiming(7000, 7000))
    assert (lying.width, lying.height) == (7000, 7000)
    # 765,625 luma blocks and twice 191,406 chroma blocks, one bit each at the least.
    assert "needs at least 143,665" in lying.too_little_data
    assert U.inspect_image(jpeg_claiming(64, 64)).too_little_data is None  # the truth


def test_many_scans_under_the_limit_are_decoded_in_a_worker():
    decoded = U.decode_image(jpeg_scan_bomb(60))
    assert decoded.isolated and decoded.size == (32, 24) and decoded.warnings == ()


def test_flat_7000_jpeg_is_decoded_at_a_fraction_of_its_size():
    data = jpeg_flat(7000, 7000)  # 191 KB for 49 megapixels
    decoded = U.decode_image(data)
    assert not decoded.isolated  # libjpeg's 1/4 scale: 1750 x 1750, then reduced
    assert decoded.size == (7000, 7000) and decoded.image.size == (875, 875)
    assert decoded.image.getextrema() == ((160, 160),) * 3 and decoded.warnings == ()


def test_one_bit_png_of_49_megapixels_goes_to_a_bounded_worker():
    decoded = U.decode_image(png_one_bit(7000, 7000))  # 6 KB
    assert decoded.isolated and decoded.size == (7000, 7000)
    assert decoded.image.size == (1400, 1400) and decoded.image.getextrema() == ((0, 0),) * 3
    if decoded.worker_peak is not None:  # Linux reports it
        assert decoded.worker_peak < U.WORKER_MEMORY


def test_lossless_webp_bomb_is_refused_when_over_the_worker_memory():
    data = webp_flat(7000, 7000)
    assert len(data) < 64  # 49 megapixels in one colour
    with pytest.raises(U.ImageError, match=r"would need about 8\d\d MB of memory, more than "
                                           r"the 256 MB allowed"):
        U.decode_image(data, worker_memory=256 * 2**20)
    small = U.decode_image(webp_flat(2000, 1500))
    assert small.isolated and small.image.getextrema() == ((30, 30), (160, 160), (90, 90))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's rlimits")
def test_the_worker_address_space_cap_holds_by_itself():
    """Past the estimate, the worker's own limit (RLIMIT_AS) stops an allocation."""
    with pytest.raises(U.ImageError):
        U._decode_in_worker(webp_flat(3000, 3000), U.DEFAULT_MAX_PIXELS, 10.0, 96 * 2**20)
    ok = U._decode_in_worker(webp_flat(3000, 3000), U.DEFAULT_MAX_PIXELS, 10.0, 512 * 2**20)
    assert ok.size == (3000, 3000)


def test_a_worker_past_its_deadline_is_stopped_and_nothing_breaks():
    data = jpeg_flat(64, 64)
    with pytest.raises(U.ImageError, match="took longer than 0.01 seconds"):
        U.decode_image(data, isolate=True, worker_seconds=0.01)
    assert U.decode_image(data, isolate=True).image.getextrema() == ((160, 160),) * 3


def test_a_full_set_of_workers_makes_the_next_upload_wait_then_refuse(monkeypatch):
    monkeypatch.setattr(U, "_WORKER_SLOTS", U.threading.BoundedSemaphore(1))
    U._WORKER_SLOTS.acquire()  # every worker busy
    with pytest.raises(U.ImageError, match="busy decoding other large images"):
        U.decode_image(jpeg_flat(64, 64), isolate=True, worker_seconds=0.05)


@pytest.mark.parametrize("name", ["palette-transparent.png", "gray16.png", "exif-rotated.jpg",
                                  "cmyk.jpg", "animated.gif", "la.png", "cut-short.jpg"])
def test_the_worker_decodes_exactly_as_this_process_does(name):
    case = next(c for c in corpus() if c.name == name)
    here, there = U.decode_image(case.data), U.decode_image(case.data, isolate=True)
    assert not here.isolated and there.isolated
    assert here.image.tobytes() == there.image.tobytes()
    assert (here.size, here.frames, here.notes, here.warnings) == (
        there.size, there.frames, there.notes, there.warnings)


def test_a_jpeg_cut_short_is_decoded_with_a_warning():
    baseline = U.decode_image(jpeg_cut_short(0.5))
    (warning,) = baseline.warnings
    assert warning.startswith("The JPEG data ends early: the bottom ")
    assert "probably cut short" in warning
    progressive = U.decode_image(jpeg_cut_short(0.4, progressive=True))
    assert any("stops after" in w for w in progressive.warnings)
    assert U.decode_image(jpeg_cut_short(1.0)).warnings == ()  # whole: no warning
    grey = _save_jpeg(Image.new("L", (64, 64), 128))  # a mid-grey picture is not damage
    assert U.decode_image(grey).warnings == ()


def _save_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("value", [0, 9, 99, 65535])
def test_an_invalid_exif_orientation_is_not_reported_as_applied(value):
    decoded = U.decode_image(jpeg_with_orientation(value))
    assert decoded.size == (30, 20) and decoded.image.size == (30, 20)  # not turned
    assert decoded.notes == (f"EXIF orientation {value} is not a valid value: shown as stored",)
    assert U.decode_image(jpeg_with_orientation(1)).notes == ()


def test_frames_are_counted_in_the_file_not_taken_from_the_header():
    decoded = U.decode_image(apng_claiming(2_147_483_647, real_frames=3))
    assert decoded.frames == 3
    assert decoded.notes[:2] == ("3 frames: the first one is used",
                                 "the header claims 2,147,483,647 frames, the file holds 3")
    assert U.decode_image(apng_claiming(3, real_frames=3)).notes == (
        "3 frames: the first one is used",)


def test_a_gif_with_too_many_blocks_to_count_is_still_bounded():
    frame = b"\x2c" + bytes(4) + b"\x01\x00\x01\x00\x00" + b"\x02\x02\x44\x01\x00"
    gif = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
           + frame * 60_000 + b"\x3b")
    facts = U.inspect_image(gif)
    assert facts.frames is None  # gave up counting after a fixed number of steps
    decoded = U.decode_image(gif)
    assert decoded.frames == 1 and decoded.notes[0].startswith("an animation with more frames")


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
    assert U.preview(Image.new("RGB", (60000, 1))).size == (480, 1)
    assert U.preview(Image.new("RGB", (300, 200))).size == (300, 200)
    assert U.preview(Image.new("RGB", (1448, 1448)), 240).size == (240, 240)


@pytest.mark.parametrize("name, shown", [
    ("cat.png", "`cat.png`"),
    ("**bold** [link](http://evil.example) :red[x] $x^2$ <b>.png", None),
    ("a`b``c.png", "```a`b``c.png```"),
    ("`tick.png", "`` `tick.png ``"),
    ("nul\x00byte\nline.png", "`nul\ufffdbyte\ufffdline.png`"),
    ("x" * 300, "`" + "x" * 99 + "\u2026`"),
])
def test_names_become_literal_markdown(name, shown):
    literal = U.markdown_literal(name)
    if shown is not None:
        assert literal == shown
    # A code span: the same run of backticks opens and closes, and none longer inside.
    fence = literal[:len(literal) - len(literal.lstrip("`"))]
    assert literal.endswith(fence)
    inner = literal[len(fence):-len(fence)]
    assert fence not in inner and "\n" not in inner and "\x00" not in inner
