"""A corpus of broken, hostile and awkward image files, made in memory for the tests.

Each entry is a :class:`Case`: a file name (what an upload would be called), its bytes,
and either ``usable=False`` with a phrase the refusal must contain, or ``usable=True``
with the size the decoded, upright image must have.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

PAGE_LIMIT_BYTES = 5 * 2**20  # .streamlit/config.toml's server.maxUploadSize


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    usable: bool
    expect: str = ""  # unusable: a phrase of the message (lower case)
    size: tuple[int, int] | None = None  # usable: decoded (width, height)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, bit_depth: int = 8, color_type: int = 0,
                 idat: bytes | None = None) -> bytes:
    """A PNG whose header says ``width`` x ``height``; its data is ``idat`` (default: none)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr)
    if idat is not None:
        body += _chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def png_bomb(side: int) -> bytes:
    """A real, valid 1-bit PNG of ``side`` x ``side`` zeros: a few hundred KB that expand
    to side^2 pixels. Compressed row by row, so making it costs no memory."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    return png_claiming(side, side, bit_depth=1, color_type=0, idat=b"".join(parts))


def _digit_like(size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).ellipse((size // 4, size // 6, 3 * size // 4, 5 * size // 6),
                                outline="black", width=max(2, size // 10))
    return img


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _exif_rotated_jpeg() -> bytes:
    """60 wide x 40 high as stored, left half red, EXIF orientation 6 (rotate 90 CW)."""
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img, "JPEG", quality=95, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("P", (32, 24), i) for i in range(3)]
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    for f in frames:
        f.putpalette(palette)
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                 loop=0)


def _palette_transparent_png() -> bytes:
    """Palette PNG: index 0 (white) transparent background, a dark ring in index 1."""
    img = Image.new("P", (40, 40), 0)
    img.putpalette([255, 255, 255, 20, 20, 20] + [0] * (254 * 3))
    ImageDraw.Draw(img).ellipse((8, 8, 32, 32), outline=1, width=4)
    return _save(img, "PNG", transparency=0)


def _rgba_light_strokes() -> bytes:
    """White strokes on a fully transparent canvas (a drawing app's export)."""
    img = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    ImageDraw.Draw(img).line((10, 40, 38, 8), fill=(255, 255, 255, 255), width=5)
    return _save(img, "PNG")


def _la_png() -> bytes:
    img = Image.new("LA", (30, 20), (0, 0))
    ImageDraw.Draw(img).rectangle((5, 5, 25, 15), fill=(30, 255))
    return _save(img, "PNG")


def _png16() -> bytes:
    """16-bit grey ramp, 256 wide: column x holds x * 257 (0 .. 65535)."""
    ramp = np.tile((np.arange(256, dtype=np.uint32) * 257).astype(np.uint16), (8, 1))
    return _save(Image.fromarray(ramp), "PNG")


@cache
def corpus() -> tuple[Case, ...]:
    """Every case, built once per test session."""
    good_png = _save(_noise(64, 64), "PNG")
    good_jpeg = _save(_noise(64, 64, 1), "JPEG", quality=90)
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # inside the IHDR chunk's CRC
    return (
        # ---- unusable: each must be refused with a clear message
        Case("empty.png", b"", False, "empty"),
        Case("truncated.png", good_png[: len(good_png) // 2], False, "damaged or incomplete"),
        Case("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], False, "damaged or incomplete"),
        Case("bad-crc.png", bytes(bad_crc), False, "header is damaged"),
        Case("text.png", b"Dear student, this is not a picture.\n" * 20, False, "text file"),
        Case("drawing.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
             b'width="10" height="10"><circle r="4" cx="5" cy="5"/></svg>\n', False, "svg"),
        Case("page.png", b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)>"
             b"</body></html>\n", False, "html"),
        Case("random.png", np.random.default_rng(7).bytes(4096), False, "not a png"),
        Case("gif-header-only.gif", b"GIF89a\x10\x00\x10\x00", False, "header is damaged"),
        Case("bomb-400mp.png", png_bomb(20000), False, "decompression bomb"),
        Case("bomb-81mp.png", png_bomb(9000), False, "megapixels"),
        Case("header-100000x100000.png", png_claiming(100000, 100000), False,
             "decompression bomb"),
        Case("tiff-renamed.png", _save(_noise(8, 8), "TIFF"), False, "tiff file"),
        Case("iphone.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
             False, "heic"),
        Case("huge-file.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * PAGE_LIMIT_BYTES, False,
             "over the limit"),
        # ---- usable: each must decode and be classified
        Case("one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), True,
             size=(1, 1)),
        Case("large-legal.png", _save(Image.new("L", (5000, 4000), 90), "PNG",
                                      compress_level=1), True, size=(5000, 4000)),
        Case("strip-100000x1.png", _save(Image.new("L", (100000, 1), 200), "PNG"), True,
             size=(100000, 1)),
        Case("tower-1x60000.png", _save(Image.new("RGB", (1, 60000), (9, 9, 9)), "PNG"), True,
             size=(1, 60000)),
        Case("animated.gif", _animated_gif(), True, size=(32, 24)),
        Case("cmyk.jpg", _save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG",
                               quality=95), True, size=(40, 30)),
        Case("gray16.png", _png16(), True, size=(256, 8)),
        Case("palette-transparent.png", _palette_transparent_png(), True, size=(40, 40)),
        Case("exif-rotated.jpg", _exif_rotated_jpeg(), True, size=(40, 60)),
        Case("rgba-light-strokes.png", _rgba_light_strokes(), True, size=(48, 48)),
        Case("la.png", _la_png(), True, size=(30, 20)),
        Case("digit.webp", _save(_digit_like(), "WEBP", lossless=True), True, size=(64, 64)),
        Case("digit.bmp", _save(_digit_like(), "BMP"), True, size=(64, 64)),
        Case("gray.jpg", _save(_digit_like().convert("L"), "JPEG"), True, size=(64, 64)),
        Case("one-bit.png", _save(_digit_like().convert("1"), "PNG"), True, size=(64, 64)),
    )


def usable() -> list[Case]:
    return [c for c in corpus() if c.usable]


def unusable() -> list[Case]:
    return [c for c in corpus() if not c.usable]
