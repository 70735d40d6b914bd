"""The structure of an image file, read from its bytes without decoding a pixel.

:func:`inspect_image` reads the headers, chunk, segment and block lists of PNG, JPEG, GIF,
WebP and BMP files: the size a header claims, the frames really present (an APNG header may
lie), and for JPEG the number of scans and whether the data can possibly fill the claimed
size. Every walk stops after :data:`_WALK_STEPS` steps, so its cost is bounded by the
file's length whatever it contains. :mod:`cnncompare.uploads` decides from these facts
what to refuse before a decoder runs.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have. Encoders write 1 (baseline) to about 10-20 (progressive)."""

_WALK_STEPS = 100_000  # segments, chunks or blocks read by inspect_image before it gives up


_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"\xff\xd8\xff", 0, "JPEG"), (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"), (b"WEBP", 8, "WebP"), (b"BM", 0, "BMP"), (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"), (b"%PDF", 0, "PDF"), (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"ftyphei", 4, "HEIC (an iPhone photo? export it as JPEG)"), (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
)


def magic_format(data: bytes) -> str | None:
    """The format a file's first bytes announce, if they announce one we know."""
    for magic, offset, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


@dataclass
class ImageFacts:
    """What the bytes of an image file say, read without decoding a pixel.

    ``width``/``height`` are None when the header could not be read (the decoder then
    gives the verdict). ``frames`` counts the frames really present (None: more than
    could be counted); ``claimed_frames`` is an APNG header's own count. For JPEG:
    ``scans``, ``progressive``, and two findings: ``too_little_data`` (a reason to
    refuse) and ``incomplete`` (a reason to warn). ``heavy`` marks files whose extra
    chunks, segments or blocks make a decode in the server's own process unwise (more
    than the walk's step limit, or over 256 KB of PNG side chunks).
    """

    format: str
    width: int | None = None
    height: int | None = None
    frames: int | None = 1
    claimed_frames: int | None = None
    scans: int = 0
    progressive: bool = False
    too_little_data: str | None = None
    incomplete: str | None = None
    heavy: bool = False

    @property
    def pixels(self) -> int | None:
        return None if self.width is None or self.height is None else self.width * self.height


def inspect_image(data: bytes) -> ImageFacts | None:
    """The structure of ``data`` (see :class:`ImageFacts`), or None for a format not accepted.

    Reads headers, chunk and segment lists only; every walk stops after a fixed number of
    steps, so the cost is bounded by the file's size whatever it contains.
    """
    fmt = magic_format(data)
    if fmt not in ("PNG", "JPEG", "GIF", "WebP", "BMP"):
        return None
    facts = ImageFacts(format=fmt)
    reader = {"PNG": _inspect_png, "JPEG": _inspect_jpeg, "GIF": _inspect_gif,
              "WebP": _inspect_webp, "BMP": _inspect_bmp}[fmt]
    try:
        reader(data, facts)
    except (struct.error, IndexError, ValueError, KeyError):
        pass  # a header this short or odd is the decoder's to judge
    return facts


def _inspect_png(data: bytes, facts: ImageFacts) -> None:
    pos, steps, fctl, extra = 8, 0, 0, 0
    while pos + 8 <= len(data) and steps < _WALK_STEPS:
        steps += 1
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            facts.width, facts.height = struct.unpack(">II", body[:8])
        elif kind == b"acTL":
            facts.claimed_frames = struct.unpack(">I", body[:4])[0]
        elif kind == b"fcTL":
            fctl += 1
        elif kind == b"IEND":
            break
        elif kind not in (b"IDAT", b"fdAT", b"PLTE", b"tRNS"):
            extra += length
        pos += 12 + length
    facts.heavy = steps >= _WALK_STEPS or extra > 256 * 1024
    if facts.claimed_frames is not None:
        facts.frames = max(1, fctl) if steps < _WALK_STEPS else None


_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_PROGRESSIVE_SOF = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_HUFFMAN_DCT_SOF = frozenset((0xC0, 0xC1, 0xC2))
# The end of entropy-coded data: 0xFF followed by a marker byte (not a stuffed 0x00, a
# restart marker 0xD0-0xD7 or a fill byte).
_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _inspect_jpeg(data: bytes, facts: ImageFacts) -> None:
    pos, steps, sof = 2, 0, 0
    components: dict[int, tuple[int, int]] = {}  # id -> (h, v) sampling factors
    scans: list[tuple[list[int], int, int, int, int, int]] = []  # ids, Ss, Se, Ah, Al, bytes
    while pos + 4 <= len(data) and steps < _WALK_STEPS:
        steps += 1
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:  # junk or fill: libjpeg skips it
            nxt = _MARKER.search(data, pos + 1)
            if nxt is None:
                break
            pos = nxt.start()
            continue
        marker = data[pos + 1]
        pos += 2
        if marker == 0xD9:  # end of image
            break
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            break
        seg = data[pos + 2:pos + length]
        if marker in _SOF and not sof:
            sof = marker
            facts.height, facts.width = struct.unpack(">HH", seg[1:5])
            for i in range(seg[5]):
                cid, sampling = seg[6 + 3 * i], seg[7 + 3 * i]
                components[cid] = (max(1, sampling >> 4), max(1, sampling & 15))
        elif marker == 0xDA:
            count = seg[0]
            ids = [seg[1 + 2 * i] for i in range(count)]
            ss, se, approx = seg[1 + 2 * count], seg[2 + 2 * count], seg[3 + 2 * count]
            start = pos + length
            end = _MARKER.search(data, start)
            stop = end.start() if end else len(data)
            scans.append((ids, ss, se, approx >> 4, approx & 15, stop - start))
            facts.scans = len(scans)
            if facts.scans > MAX_JPEG_SCANS:
                return  # refused on the count; the rest does not matter
            pos = stop
            continue
        pos += length
    facts.heavy = steps >= _WALK_STEPS  # Pillow's own reader would walk them all too
    facts.progressive = sof in _PROGRESSIVE_SOF
    if not (facts.width and facts.height and components):
        return
    if sof in _HUFFMAN_DCT_SOF:
        facts.too_little_data = _jpeg_data_too_small(facts, components, scans)
    if facts.progressive and scans and steps < _WALK_STEPS:
        facts.incomplete = _jpeg_refinement_missing(components, scans)


def _jpeg_data_too_small(facts: ImageFacts, components: dict[int, tuple[int, int]],
                         scans: list[tuple[list[int], int, int, int, int, int]]) -> str | None:
    """Why the data cannot fill the header's size, or None.

    Every 8x8 block of a Huffman-coded scan that carries DC values (a baseline scan, or a
    progressive first DC pass) costs at least one bit: no Huffman code is shorter.
    """
    assert facts.width and facts.height
    hmax = max(h for h, _ in components.values())
    vmax = max(v for _, v in components.values())

    def blocks(cid: int) -> int:
        h, v = components[cid]
        return (math.ceil(math.ceil(facts.width * h / hmax) / 8)
                * math.ceil(math.ceil(facts.height * v / vmax) / 8))

    for ids, ss, _se, ah, _al, nbytes in scans:
        if ss != 0 or ah != 0:
            continue
        needed = math.ceil(sum(blocks(c) for c in ids if c in components) / 8)
        if nbytes < needed:
            return (f"The JPEG header says {facts.width:,} x {facts.height:,} pixels, but "
                    f"its image data is only {nbytes:,} bytes, while that size needs at "
                    f"least {needed:,}. The file is damaged or crafted, so it was not "
                    "decoded.")
    return None


def _jpeg_refinement_missing(components: dict[int, tuple[int, int]],
                             scans: list[tuple[list[int], int, int, int, int, int]]
                             ) -> str | None:
    """A warning when a progressive JPEG's scans never bring every coefficient to full
    precision (a scan with successive-approximation low bit ``Al`` 0), or None."""
    final = {cid: [False] * 64 for cid in components}
    for ids, ss, se, _ah, al, _n in scans:
        if al:
            continue
        for cid in ids:
            if cid in final:
                for k in range(ss, min(se, 63) + 1):
                    final[cid][k] = True
    if all(all(done) for done in final.values()):
        return None
    return (f"This progressive JPEG stops after {len(scans)} scans, before all of its detail "
            "arrived: the file is probably cut short, and the picture is blurrier than the "
            "original.")


def _inspect_gif(data: bytes, facts: ImageFacts) -> None:
    facts.width, facts.height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames, steps = 0, 0
    while pos < len(data) and steps < _WALK_STEPS:
        steps += 1
        kind = data[pos]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x2C:  # image descriptor (+ local colour table, LZW code size)
            frames += 1
            if frames == 1:  # Pillow grows the canvas to hold the first frame
                left, top, width, height = struct.unpack("<HHHH", data[pos + 1:pos + 9])
                facts.width = max(facts.width, left + width)
                facts.height = max(facts.height, top + height)
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif kind == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:
            break
        while pos < len(data) and steps < _WALK_STEPS:  # sub-blocks, until a 0 length
            steps += 1
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
    facts.frames = max(1, frames) if steps < _WALK_STEPS else None
    facts.heavy = steps >= _WALK_STEPS


def _inspect_webp(data: bytes, facts: ImageFacts) -> None:
    pos, steps, frames = 12, 0, 0
    while pos + 8 <= len(data) and steps < _WALK_STEPS:
        steps += 1
        kind, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + min(length, 30)]
        if kind == b"VP8X":
            facts.width = int.from_bytes(body[4:7], "little") + 1
            facts.height = int.from_bytes(body[7:10], "little") + 1
        elif kind == b"VP8 " and facts.width is None and body[3:6] == b"\x9d\x01\x2a":
            facts.width, facts.height = (struct.unpack("<H", body[6:8])[0] & 0x3FFF,
                                         struct.unpack("<H", body[8:10])[0] & 0x3FFF)
        elif kind == b"VP8L" and facts.width is None and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            facts.width, facts.height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"ANMF":
            frames += 1
        pos += 8 + length + (length & 1)
    facts.frames = max(1, frames) if steps < _WALK_STEPS else None
    facts.heavy = steps >= _WALK_STEPS


def _inspect_bmp(data: bytes, facts: ImageFacts) -> None:
    header = struct.unpack("<I", data[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER
        facts.width, facts.height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
        facts.width, facts.height = abs(width), abs(height)
