"""A corpus of broken, hostile and awkward image files, made in memory for the tests.

Each entry of :func:`corpus` is a :class:`Case`: a file name (what an upload would be
called), its bytes, and either ``usable=False`` with a phrase the refusal must contain, or
``usable=True`` with the size the decoded, upright image must have. The builders below
also make the costly files of issue 12 (decompression bombs that are legal images, scan
bombs, lying headers) without ever holding their pixels: each is a few bytes to a few
hundred kilobytes, made in milliseconds.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

PAGE_LIMIT_BYTES = 5 * 2**20  # the Classify page's upload limit (views/classify.py)


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


# ------------------------------------------------------------------------------- PNG


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


def png_one_bit(width: int, height: int) -> bytes:
    """A real, valid 1-bit PNG of ``width`` x ``height`` zeros: a few KB that expand to
    width x height pixels. Compressed row by row, so making it costs no memory."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    return png_claiming(width, height, bit_depth=1, color_type=0, idat=b"".join(parts))


def png_bomb(side: int) -> bytes:
    """A square :func:`png_one_bit` (a few hundred KB that expand to side^2 pixels)."""
    return png_one_bit(side, side)


def apng_claiming(frames: int, real_frames: int = 2) -> bytes:
    """An animated PNG holding ``real_frames`` frames whose header (acTL) claims ``frames``."""
    images = [Image.new("RGB", (24, 16), (60 * i, 90, 200 - 60 * i)) for i in range(real_frames)]
    data = _save(images[0], "PNG", save_all=True, append_images=images[1:], duration=100)
    at = data.index(b"acTL")
    body = struct.pack(">II", frames, 0)
    return data[:at - 4] + _chunk(b"acTL", body) + data[at + 4 + 8 + 4:]


# ------------------------------------------------------------------------------ JPEG


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment before the first scan's data, and each scan
    (marker 0xDA) up to the next marker: enough to cut and splice JPEG files."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] not in (0x00, *range(0xD0, 0xD8)):
                    break
                end += 2
        out.append((marker, pos, end))
        pos = end
    return out


def jpeg_flat(width: int, height: int) -> bytes:
    """A valid baseline grey JPEG of ``width`` x ``height`` in one flat tone (160), built
    bit by bit: two bits per 8x8 block, so 7000 x 7000 is 191 KB, made without pixels."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([255] + [1] * 63)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    # DC table: category 0 -> "0", category 1 -> "10"; AC table: end of block -> "0".
    counts_dc, counts_ac = bytes([1, 1] + [0] * 14), bytes([1] + [0] * 15)
    dc = b"\xff\xc4" + struct.pack(">H", 2 + 17 + 2) + b"\x00" + counts_dc + b"\x00\x01"
    ac = b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x10" + counts_ac + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    # First block: DC difference +1 (x 255 = level 160), then end of block: "1010".
    # Every later block: difference 0, end of block: "00". Pad the last byte with ones.
    bits = 4 + 2 * (blocks - 1)
    body = bytearray((bits + 7) // 8)
    body[0] = 0b10100000
    if bits % 8:
        body[-1] |= (1 << (8 - bits % 8)) - 1
    return b"\xff\xd8" + dqt + sof + dc + ac + sos + bytes(body) + b"\xff\xd9"


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _photo(w: int = 160, h: int = 120, seed: int = 0) -> Image.Image:
    """Smooth shapes on a gradient: JPEG-friendly, unlike noise, and never mid-grey rows."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 235, w, dtype=np.float32)[None, :, None]
    img = Image.fromarray((ramp * np.array([1.0, 0.6, 0.3])).repeat(h, axis=0)
                          .astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.ellipse((x, y, x + w // 4, y + h // 4),
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 64 x 64 JPEG whose frame header is rewritten to say ``width`` x ``height``."""
    data = bytearray(_save(_noise(64, 64, 3), "JPEG", quality=90))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_cut_short(fraction: float = 0.5, progressive: bool = False) -> bytes:
    """A 160 x 120 photo-like JPEG cut after ``fraction`` of its bytes, with the end marker
    appended (what a broken download or a crafted file looks like). Progressive files are
    cut at a scan boundary near ``fraction``."""
    data = _save(_photo(), "JPEG", quality=92, progressive=progressive)
    cut = int(len(data) * fraction)
    if progressive:
        cut = max(end for marker, _, end in _segments(data) if marker == 0xDA and end <= cut)
    return data[:cut] + b"\xff\xd9"


def jpeg_scan_bomb(scans: int) -> bytes:
    """A small progressive JPEG of ``scans`` scans in all, its last scan repeated: legal
    syntax, and libjpeg makes one pass over the picture per scan."""
    data = _save(_photo(32, 24), "JPEG", quality=80, progressive=True)
    own = [s for s in _segments(data) if s[0] == 0xDA]  # Pillow writes 10
    _, start, end = own[-1]
    return data[:end] + data[start:end] * (scans - len(own)) + b"\xff\xd9"


def jpeg_with_orientation(value: int) -> bytes:
    """A 30 x 20 JPEG whose EXIF orientation tag says ``value`` (valid: 1-8)."""
    exif = Image.Exif()
    exif[0x0112] = value
    return _save(_photo(30, 20), "JPEG", quality=90, exif=exif.tobytes())


# ------------------------------------------------------------------------------ WebP


class _Bits:
    """A little-endian bit writer, as WebP's lossless format reads bits."""

    def __init__(self) -> None:
        self.value, self.count = 0, 0

    def put(self, value: int, count: int) -> None:
        self.value |= (value & ((1 << count) - 1)) << self.count
        self.count += count

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.count + 7) // 8, "little")


def webp_flat(width: int, height: int, rgb: tuple[int, int, int] = (30, 160, 90)) -> bytes:
    """A valid lossless WebP of ``width`` x ``height`` in one colour: about 34 bytes.

    No transforms, no colour cache, and five prefix codes of a single symbol each, so
    every pixel costs zero bits: the file's size does not depend on the picture's.
    """
    bits = _Bits()
    bits.put(0x2F, 8)
    bits.put(width - 1, 14)
    bits.put(height - 1, 14)
    bits.put(0, 1 + 3)  # no alpha, version 0
    bits.put(0, 1 + 1 + 1)  # no transform, no colour cache, no meta prefix codes
    for symbol in (rgb[1], rgb[0], rgb[2], 255, 0):  # green, red, blue, alpha, distance
        bits.put(0b101, 3)  # simple code with one 8-bit symbol
        bits.put(symbol, 8)
    payload = bits.bytes()
    payload += b"\0" * (len(payload) % 2)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


# ---------------------------------------------------------------------- the corpus


def _digit_like(size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).ellipse((size // 4, size // 6, 3 * size // 4, 5 * size // 6),
                                outline="black", width=max(2, size // 10))
    return img


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
    """Every case, built once per test session (about 1 MB in all, in under a second)."""
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
        Case("one-bit-50000000x1.png", png_one_bit(50_000_000, 1), False,
             "longest side allowed is 65,535"),
        Case("strip-100000x1.png", _save(Image.new("L", (100000, 1), 200), "PNG"), False,
             "longest side allowed"),
        Case("scan-bomb.jpg", jpeg_scan_bomb(20_000), False, "more than 100 scans"),
        Case("header-lies-7000.jpg", jpeg_claiming(7000, 7000), False,
             "damaged or crafted"),
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
        Case("flat-7000x7000.jpg", jpeg_flat(7000, 7000), True, size=(7000, 7000)),
        Case("strip-60000x1.png", _save(Image.new("L", (60000, 1), 200), "PNG"), True,
             size=(60000, 1)),
        Case("tower-1x60000.png", _save(Image.new("RGB", (1, 60000), (9, 9, 9)), "PNG"), True,
             size=(1, 60000)),
        Case("animated.gif", _animated_gif(), True, size=(32, 24)),
        Case("apng-claims-2147483647-frames.png", apng_claiming(2_147_483_647), True,
             size=(24, 16)),
        Case("cmyk.jpg", _save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG",
                               quality=95), True, size=(40, 30)),
        Case("gray16.png", _png16(), True, size=(256, 8)),
        Case("palette-transparent.png", _palette_transparent_png(), True, size=(40, 40)),
        Case("exif-rotated.jpg", _exif_rotated_jpeg(), True, size=(40, 60)),
        Case("exif-orientation-99.jpg", jpeg_with_orientation(99), True, size=(30, 20)),
        Case("cut-short.jpg", jpeg_cut_short(0.5), True, size=(160, 120)),
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
