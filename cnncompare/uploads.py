"""Uploaded images, decoded safely: bounded in bytes, pixels, time and memory.

Uploads are hostile until proven otherwise. :func:`decode_image` accepts PNG, JPEG, WebP,
BMP and GIF (first frame) only and works in this order:

1. **Bytes.** Empty files and files over ``max_bytes`` are refused.
2. **Structure, read from the bytes without decoding a pixel** (:func:`inspect_image`):
   the size the header claims, the frames really present (an APNG header may lie), and for
   JPEG the number of scans and whether the data can possibly fill the claimed size.
   Refused here: more than ``max_pixels`` pixels or more than :data:`MAX_SIDE` on a side
   (a 6 KB PNG of 50,000,000 x 1), more than :data:`MAX_JPEG_SCANS` progressive scans (each
   scan is a pass over the whole picture: thousands of them take minutes), and a JPEG whose
   data is too small for its header's size (it would decode as filler).
3. **Pixels, at the size needed.** Nothing here needs more than a working copy of
   :data:`WORKING_PIXELS` pixels (the networks take at most 256 px, the page shows 240): a
   JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (Pillow's ``draft``), other
   formats are box-reduced (``Image.reduce``) right after decoding. Small decodes (at most
   :data:`INLINE_MEMORY` bytes expected, from the claimed size and a per-format cost
   measured once; at most :data:`INLINE_JPEG_SCANS` scans) run in this process: their
   cost is bounded by those numbers. Everything else is decoded in a separate worker
   process (this module run as a script) whose address space is capped at
   :data:`WORKER_MEMORY` bytes and whose run time is capped at :data:`WORKER_SECONDS`
   (wall clock, and CPU time through ``RLIMIT_CPU``); at most :data:`WORKERS` run at once.
   A worker that runs over is killed: unlike a thread, a process can be stopped, and the
   memory it used goes back to the system.
4. **Colour.** The EXIF orientation is applied (values 2-8; other values are invalid and
   change nothing), and every pixel mode (alpha, palette, CMYK, 16 bit) becomes 8-bit RGB.

Damage is reported, not hidden: truncated PNG, GIF, WebP and BMP files are refused by their
decoders. libjpeg instead fills missing data with flat grey and says nothing, so a JPEG
whose last rows are that grey, or a progressive JPEG whose scans stop before all of its
detail arrived, is decoded with a *warning* (the part that arrived is real picture and is
shown as the networks see it); a JPEG whose header claims far more pixels than its data can
hold is refused (there is no picture to speak of, only filler).

Anything unusable raises :class:`ImageError`, whose message is meant for people.
"""

from __future__ import annotations

import io
import json
import math
import re
import signal
import struct
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from cnncompare.i18n import N_, Text
from cnncompare.image_headers import (  # noqa: F401 - inspect_image is public here too
    MAX_JPEG_SCANS,
    ImageFacts,
    inspect_image,
    magic_format,
)

if TYPE_CHECKING:
    import numpy as np

FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
"""The image formats Pillow may parse here; every other plugin stays unused."""

DEFAULT_MAX_BYTES = 20 * 2**20
"""Largest upload accepted (20 MiB); the page passes its own, smaller limit."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image accepted (50 megapixels: a 48 MP phone photo fits, a bomb does not)."""

MAX_SIDE = 65_535
"""Longest side accepted, in pixels (JPEG's own maximum; browsers stop near it too)."""

WORKING_PIXELS = 2_097_152
"""Largest working copy kept after decoding (2 megapixels, e.g. 1448 x 1448)."""

WORKING_SIDE = 8192
"""Longest side of the working copy, in pixels."""

INLINE_MEMORY = 32 * 2**20
"""Largest decode done in the server's own process, in expected peak bytes (32 MiB: about
3 megapixels of PNG, 1.8 of WebP, any baseline JPEG up to the pixel limit)."""

INLINE_JPEG_SCANS = 16
"""Most JPEG scans decoded in the server's own process."""

WORKER_SECONDS = 10.0
"""Time limit of one decoding worker, wall clock and CPU."""

WORKER_MEMORY = 1024 * 2**20
"""Address-space limit of one decoding worker (1 GiB)."""

WORKERS = 2
"""Decoding workers allowed at the same time; more uploads wait for a free one."""

_ORIENTATION = 0x0112  # EXIF tag
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}  # as PIL.ImageOps.exif_transpose


class ImageError(ValueError):
    """An upload that is not a usable image. ``str(err)`` is a message meant for people."""


@dataclass(frozen=True)
class DecodedImage:
    """An upload turned into an upright 8-bit RGB working copy, with what was done to it.

    ``image`` is at most :data:`WORKING_PIXELS` pixels (a larger picture is scaled down
    by a whole factor); ``size`` is the picture's own size, upright. ``notes`` describe
    conversions; ``warnings`` describe damage the user must know about.
    """

    image: Image.Image  # mode "RGB", upright, at most WORKING_PIXELS
    format: str  # "PNG", "JPEG", ...
    mode: str  # the file's own pixel mode ("P", "CMYK", "I;16", ...)
    frames: int  # frames in the file; only the first is used
    size: tuple[int, int]  # (width, height) of the picture, upright
    notes: tuple[str, ...] = ()  # conversions worth telling the user about
    warnings: tuple[str, ...] = ()  # damage: the picture is not what the file meant
    isolated: bool = False  # decoded in a worker process
    worker_peak: int | None = None  # the worker's peak resident memory, bytes (Linux)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _what_text_is_this(data: bytes) -> str | None:
    """The refusal for bytes that are text (SVG, HTML, ...), or None if they do not look
    like text."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        return N_("This file is an SVG drawing (vector graphics): export it as PNG first. "
                  "Upload a {accepted} image.", accepted=_accepted())
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]:
        return N_("This file is an HTML page, not an image. Upload a {accepted} image.",
                  accepted=_accepted())
    if head.startswith((b"<?xml", b"<")):
        return N_("This file is an XML or markup document, not an image. Upload a {accepted} "
                  "image.", accepted=_accepted())
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if head and printable / len(head) > 0.95:
        return N_("This file is a text file, not an image. Upload a {accepted} image.",
                  accepted=_accepted())
    return None


def _accepted() -> str:
    return "PNG, JPEG, WebP, BMP or GIF"


def _unidentified(data: bytes) -> ImageError:
    """The clearest refusal for bytes that no accepted Pillow plugin would open."""
    fmt = magic_format(data)
    if fmt in ("PNG", "JPEG", "GIF", "WebP", "BMP"):
        return ImageError(N_("This file starts like a {format} image but its header is "
                             "damaged or incomplete, so it could not be read.", format=fmt))
    if fmt:
        return ImageError(N_("This is a {format} file; upload a {accepted} image instead.",
                             format=fmt, accepted=_accepted()))
    what = _what_text_is_this(data)
    if what:
        return ImageError(what)
    return ImageError(N_("This file is not a {accepted} image (its contents are not one of "
                         "these formats, whatever its name says).", accepted=_accepted()))


def _size_refusal(facts: ImageFacts, max_pixels: int, nbytes: int) -> str | None:
    """Why the claimed size is refused before decoding, or None."""
    if facts.width is None or facts.height is None:
        return None
    w, h = facts.width, facts.height
    if w < 1 or h < 1:
        return N_("The image has no pixels ({width}x{height}).", width=w, height=h)
    if w * h > max_pixels:
        sizes = dict(width=f"{w:,}", height=f"{h:,}", megapixels=f"{w * h / 1e6:,.0f}",
                     limit=f"{max_pixels / 1e6:,.0f}")
        if nbytes * 100 < w * h:
            return N_("The image is {width}x{height} pixels ({megapixels} megapixels); the "
                      "limit is {limit} megapixels. Scale it down and upload again. A file "
                      "this small that claims so many pixels is a decompression bomb.",
                      **sizes)
        return N_("The image is {width}x{height} pixels ({megapixels} megapixels); the "
                  "limit is {limit} megapixels. Scale it down and upload again.", **sizes)
    if max(w, h) > MAX_SIDE:
        return N_("The image is {width}x{height} pixels; the longest side allowed is "
                  "{limit} pixels.", width=f"{w:,}", height=f"{h:,}", limit=f"{MAX_SIDE:,}")
    if facts.scans > MAX_JPEG_SCANS:
        return N_("This JPEG has more than {limit} scans (ordinary ones have 1 to about 20). "
                  "Each scan is another pass over the whole picture, so decoding it could "
                  "take minutes. Save it again as an ordinary JPEG.", limit=MAX_JPEG_SCANS)
    return facts.too_little_data


# ------------------------------------------------------------------------- the decoding


def working_factor(width: int, height: int) -> int:
    """The smallest whole factor that brings (width, height) within the working copy's
    bounds (:data:`WORKING_PIXELS`, :data:`WORKING_SIDE`)."""
    factor = max(1, math.ceil(max(width, height) / WORKING_SIDE))
    while math.ceil(width / factor) * math.ceil(height / factor) > WORKING_PIXELS:
        factor += 1
    return factor


def _jpeg_scale(factor: int) -> int:
    """The DCT scale libjpeg decodes at for a wanted reduction: 1, 2, 4 or 8."""
    return max(s for s in (1, 2, 4, 8) if s <= factor)


def _decoded_pixels(facts: ImageFacts) -> int | None:
    """Pixels (or, for a progressive JPEG, coefficients) the decoder will hold at once."""
    if facts.width is None or facts.height is None:
        return None
    if facts.format == "JPEG" and not facts.progressive:
        scale = _jpeg_scale(working_factor(facts.width, facts.height))
        return math.ceil(facts.width / scale) * math.ceil(facts.height / scale)
    return facts.width * facts.height  # a progressive JPEG buffers every coefficient


# Peak memory of a worker per decoded pixel, measured on 4000 x 4000 files of each format's
# costliest mode (PNG: palette with transparency; WebP: Pillow's animation decoder keeps two
# canvases), rounded up; plus the worker's own start (Python and Pillow).
_WORKER_BYTES_PER_PIXEL = {"PNG": 11, "GIF": 7, "BMP": 9, "WebP": 18, "JPEG": 6}
_WORKER_BASE_BYTES = 32 * 2**20


def _decode_memory(facts: ImageFacts) -> int | None:
    """The memory decoding this file is expected to take (see the table above), or None
    when its header could not be read."""
    decoded = _decoded_pixels(facts)
    return None if decoded is None else decoded * _WORKER_BYTES_PER_PIXEL[facts.format]


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` (header only) with the bomb checks; raises :class:`ImageError`."""
    with warnings.catch_warnings():
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both refuse here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(N_(
                "The image claims more pixels than can be decoded safely "
                "(a decompression bomb?): {error}", error=str(err))) from None
        except UnidentifiedImageError:
            raise _unidentified(data) from None
        except Exception as err:  # noqa: BLE001 - hostile bytes can break any parser
            raise ImageError(N_("The image header could not be read ({error}).",
                                error=str(err))) from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(N_("The image has no pixels ({width}x{height}).", width=width,
                            height=height))
    if width * height > max_pixels:
        raise ImageError(N_(
            "The image is {width}x{height} pixels ({megapixels} megapixels); the limit is "
            "{limit} megapixels. Scale it down and upload again.", width=f"{width:,}",
            height=f"{height:,}", megapixels=f"{width * height / 1e6:,.0f}",
            limit=f"{max_pixels / 1e6:,.0f}"))
    if max(width, height) > MAX_SIDE:
        raise ImageError(N_("The image is {width}x{height} pixels; the longest side allowed "
                            "is {limit} pixels.", width=f"{width:,}", height=f"{height:,}",
                            limit=f"{MAX_SIDE:,}"))
    return img


def _load_pixels(img: Image.Image) -> None:
    """Decode the first frame; a damaged file raises :class:`ImageError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img.seek(0)
            img.load()
        except MemoryError:
            raise ImageError(N_("The image is too large to decode in memory.")) from None
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data, any plugin
            raise ImageError(N_("The image data is damaged or incomplete ({error}).",
                                error=str(err or type(err).__name__))) from None


def _grey_tail(img: Image.Image) -> int:
    """How many bottom rows are entirely libjpeg's filler grey (128, give or take 1)."""
    width, height = img.size

    def grey(rows: int) -> bool:
        extrema = img.crop((0, height - rows, width, height)).getextrema()
        bands = [extrema] if isinstance(extrema[0], int) else extrema
        return all(127 <= lo and hi <= 129 for lo, hi in bands)  # type: ignore[misc]

    if not grey(1):
        return 0
    low, high = 1, height  # grey(low) holds; find the largest such count
    while low < high:
        mid = (low + high + 1) // 2
        if grey(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _jpeg_cut_short(img: Image.Image, scale: int) -> str | None:
    """A warning when the decoded JPEG ends in libjpeg's filler: flat grey over at least
    one whole row of 8x8 blocks at the bottom, but not over the whole picture."""
    if img.mode not in ("L", "RGB"):
        return None
    layers = getattr(img, "layer", None) or [(0, 1, 1, 0)]
    block_rows = max(1, 8 * max(v for _, _, v, _ in layers) // scale)
    rows, height = _grey_tail(img), img.size[1]
    if rows < min(block_rows, height) or rows >= height:
        return None
    return N_("The JPEG data ends early: the bottom {share} of the picture ({rows} of "
              "{height} rows) is the flat grey a decoder fills in for missing data. The file "
              "is probably cut short; the networks see it as it is.",
              share=f"{rows / height:.0%}", rows=f"{rows:,}", height=f"{height:,}")


@dataclass
class _Pixels:
    """What :func:`_decode_pixels` hands back: a small upright image in a reducible mode."""

    image: Image.Image
    format: str
    mode: str
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    worker_peak: int | None = None  # bytes, when decoded in a worker


# Modes Image.reduce cannot take, and what they become first.
def _reducible(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        return img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    if mode in ("L", "RGB") and "transparency" in img.info:
        return img.convert("RGBA")
    if mode.startswith("I;16"):
        return img.convert("I")
    return img


def _decode_pixels(data: bytes, max_pixels: int,
                   expected: tuple[int, int] | None = None) -> _Pixels:
    """Open, decode at the size needed, reduce, turn upright: the work a worker does.

    ``expected`` is the size :func:`inspect_image` read; a decoder that finds another one
    (a second JPEG frame header, say) is not trusted with the pixels. Uses Pillow only (no
    numpy), so that a worker process starts fast.
    """
    img = _open_checked(data, max_pixels)
    fmt, mode = img.format or "?", img.mode
    width, height = img.size
    if expected is not None and tuple(expected) != (width, height):
        raise ImageError(N_("The file's headers disagree about the picture's size ({one} in "
                            "one place, {other} in another): it is damaged or crafted, so it "
                            "was not decoded.", one=f"{expected[0]:,} x {expected[1]:,}",
                            other=f"{width:,} x {height:,}"))
    factor = working_factor(width, height)
    scale = 1
    if fmt == "JPEG" and factor > 1:
        img.draft(mode, (math.ceil(width / factor), math.ceil(height / factor)))
        scale = max(1, round(width / img.size[0]))
    _load_pixels(img)
    out = _Pixels(image=img, format=fmt, mode=mode, size=(width, height))
    if fmt == "JPEG":
        cut = _jpeg_cut_short(img, scale)
        if cut:
            out.warnings.append(cut)
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        orientation = 1
        out.notes.append(N_("EXIF orientation unreadable: shown as stored"))
    try:
        small = _reducible(img)
        rest = working_factor(*small.size)
        if rest > 1:
            small = small.reduce(rest)
    except MemoryError:
        raise ImageError(N_("The image is too large to convert in memory.")) from None
    except Exception as err:  # noqa: BLE001 - e.g. a palette that does not parse
        raise ImageError(N_("The image's pixels could not be converted ({error}).",
                            error=str(err))) from None
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
        out.notes.append(N_("EXIF orientation {value} applied", value=orientation))
        if orientation >= 5:
            out.size = (height, width)
    elif orientation not in (None, 1):
        out.notes.append(N_("EXIF orientation {value} is not a valid value: shown as stored",
                            value=orientation))
    out.image = small
    return out


# ------------------------------------------------------------------ the decoding worker

_WORKER_SLOTS = threading.BoundedSemaphore(WORKERS)


def _decode_in_worker(data: bytes, max_pixels: int, seconds: float, memory: int,
                      expected: tuple[int, int] | None = None) -> _Pixels:
    """:func:`_decode_pixels` in a fresh process with a memory cap and a deadline."""
    if not _WORKER_SLOTS.acquire(timeout=seconds):
        raise ImageError(N_("The server is busy decoding other large images; try again in a "
                            "moment."))
    try:
        header = json.dumps({"max_pixels": max_pixels, "seconds": seconds,
                             "memory": memory, "expected": expected}).encode()
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and this very file
            [sys.executable, "-I", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, _err = proc.communicate(struct.pack(">I", len(header)) + header + data,
                                         timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ImageError(N_("Decoding this image took longer than {seconds} seconds, "
                                "the limit for one upload, so it was stopped. Save it again "
                                "as an ordinary PNG or JPEG.", seconds=f"{seconds:g}")) from None
    finally:
        _WORKER_SLOTS.release()
    try:
        (size,) = struct.unpack(">I", out[:4])
        reply = json.loads(out[4:4 + size])
    except (struct.error, ValueError):
        if proc.returncode == -getattr(signal, "SIGXCPU", 0):  # its CPU-time limit
            raise ImageError(N_("Decoding this image took longer than {seconds} seconds, the "
                                "limit for one upload, so it was stopped.",
                                seconds=f"{seconds:g}")) from None
        raise ImageError(N_("This image could not be decoded within the limits for one upload "
                            "({seconds} seconds and {megabytes} MB).", seconds=f"{seconds:g}",
                            megabytes=f"{memory / 2**20:,.0f}")) from None
    if not reply.get("ok"):
        raise ImageError(_from_wire(reply.get("message")))
    pixels = out[4 + size:]
    image = Image.frombytes(reply["image_mode"], tuple(reply["image_size"]), pixels)
    return _Pixels(image=image, format=reply["format"], mode=reply["mode"],
                   size=tuple(reply["size"]), notes=[_from_wire(n) for n in reply["notes"]],
                   warnings=[_from_wire(w) for w in reply["warnings"]],
                   worker_peak=reply.get("peak_bytes"))


def _to_wire(text: str) -> str | dict:
    """A message for the worker's JSON reply: a marked :class:`~cnncompare.i18n.Text` as its
    msgid and arguments (so that it is still translated where it is shown), else the text."""
    if isinstance(text, Text):
        return {"msgid": text.msgid, "kwargs": {k: v if isinstance(v, (int, float)) else str(v)
                                                for k, v in text.kwargs.items()}}
    return str(text)


def _from_wire(value) -> str:
    """The message :func:`_to_wire` sent, a :class:`~cnncompare.i18n.Text` again."""
    if isinstance(value, dict):
        return Text(str(value["msgid"]), **value["kwargs"])
    return str(value)


def _peak_rss() -> int | None:
    """This process's peak resident memory in bytes (Linux's VmHWM), or None elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _worker_main() -> None:
    """Entry point of a decoding worker: limits, then one image from stdin to stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    (size,) = struct.unpack(">I", stdin.read(4))
    job: dict[str, Any] = json.loads(stdin.read(size))
    try:
        import resource  # Unix only: elsewhere the parent's deadline is the only bound

        memory = int(job["memory"])
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = math.ceil(float(job["seconds"]))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ImportError, ValueError, OSError):
        pass
    data = stdin.read()
    try:
        result = _decode_pixels(data, int(job["max_pixels"]), job.get("expected"))
        reply = {"ok": True, "format": result.format, "mode": result.mode,
                 "size": list(result.size), "notes": [_to_wire(n) for n in result.notes],
                 "warnings": [_to_wire(w) for w in result.warnings],
                 "image_mode": result.image.mode,
                 "image_size": list(result.image.size)}
        pixels = result.image.tobytes()
        reply["peak_bytes"] = _peak_rss()
    except MemoryError:
        reply, pixels = {"ok": False, "message": _to_wire(N_(
            "Decoding this image needed more than {megabytes} MB of memory, the limit for one "
            "upload, so it was stopped.", megabytes=f"{int(job['memory']) / 2**20:,.0f}"))}, b""
    except ImageError as err:
        reply, pixels = {"ok": False, "message": _to_wire(err.args[0] if err.args
                                                          else str(err))}, b""
    encoded = json.dumps(reply).encode()
    stdout.write(struct.pack(">I", len(encoded)) + encoded + pixels)
    stdout.flush()


# ------------------------------------------------------------------------------ colour


def _scale_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Deep pixels to uint8. 16-bit modes map 0..65535 to 0..255; for 32-bit "I" and float
    "F" (whose range the file does not say) the peak decides: 1.0, 255 or 65535."""
    import numpy as np  # kept out of the decoding worker's start (about 0.1 s per upload)

    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float32))
    peak = float(arr.max()) if arr.size else 0.0
    if mode.startswith("I;16") or peak > 255:
        top = 65535.0
    elif is_float and peak <= 1.0:
        top = 1.0
    else:
        top = 255.0
    return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _shrunk(img: Image.Image, side: int, resample: Image.Resampling) -> Image.Image:
    """``img`` itself when it fits in ``side`` x ``side``; else a copy whose longer side is
    ``side`` and shorter side at least 1 px. Reduced by whole factors first
    (``reducing_gap``), so the resampling's coefficient tables stay small whatever the
    aspect ratio."""
    w, h = img.size
    if max(w, h) <= side:
        return img
    k = side / max(w, h)
    return img.resize((max(1, round(w * k)), max(1, round(h * k))), resample,
                      reducing_gap=3.0)


def small_copy(img: Image.Image, side: int = 256) -> Image.Image:
    """A copy at most ``side`` pixels on its longer side (box-averaged): for statistics."""
    return _shrunk(img, side, Image.Resampling.BOX)


def _composite(rgba: Image.Image) -> tuple[Image.Image, str]:
    """Flatten transparency on a background that contrasts with the visible pixels.

    Dark strokes on a transparent canvas go on white; light strokes go on black.
    """
    import numpy as np  # kept out of the decoding worker's start (about 0.1 s per upload)

    if rgba.getchannel("A").getextrema()[0] == 255:
        return rgba.convert("RGB"), ""
    small = np.asarray(small_copy(rgba), dtype=np.float32) / 255.0
    alpha = small[..., 3]
    luma = small[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    weight = float(alpha.sum())
    visible = float((luma * alpha).sum() / weight) if weight > 0 else 0.0
    bg = (0, 0, 0) if visible > 0.5 else (255, 255, 255)
    base = Image.new("RGB", rgba.size, bg)
    base.paste(rgba, mask=rgba.getchannel("A"))
    if bg == (0, 0, 0):
        return base, N_("transparency flattened on black")
    return base, N_("transparency flattened on white")


def to_rgb(img: Image.Image, file_mode: str | None = None) -> tuple[Image.Image, list[str]]:
    """Any Pillow mode to 8-bit RGB, with notes on the conversions that change what one sees.

    ``file_mode`` is the mode the file had, when ``img`` was already converted for
    reducing (16-bit pixels travel as "I"; their scale is the file's, not the values').
    """
    import numpy as np  # kept out of the decoding worker's start (about 0.1 s per upload)

    notes: list[str] = []
    mode = img.mode
    depth = file_mode if file_mode and file_mode.startswith("I;16") else mode
    if mode.startswith("I") or mode == "F":
        notes.append(N_("16-bit pixels scaled to 8 bit") if depth.startswith("I;16") else
                     N_("{mode}-mode pixels scaled to 8 bit", mode=mode))
        return Image.fromarray(_scale_to_8bit(np.asarray(img), depth), "L").convert("RGB"), notes
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        flat, note = _composite(img.convert("RGBA"))
        if note:
            notes.append(note)
        return flat, notes
    if mode == "CMYK":
        notes.append(N_("CMYK converted to RGB"))
    try:
        return img.convert("RGB"), notes
    except (ValueError, OSError) as err:
        raise ImageError(N_("Pixels in mode {mode} cannot be converted to RGB ({error}).",
                            mode=repr(mode), error=str(err))) from None


def _frame_notes(facts: ImageFacts | None) -> tuple[int, list[str]]:
    """The number of frames to report and the notes about them."""
    if facts is None:
        return 1, []
    if facts.frames is None:
        return 1, [N_("an animation with more frames than were counted: the first one is "
                      "used")]
    notes = []
    if facts.frames > 1:
        notes.append(N_("{n} frames: the first one is used", n=facts.frames))
    if facts.claimed_frames is not None and facts.claimed_frames != facts.frames:
        notes.append(N_("the header claims {claimed} frames, the file holds {held}",
                        claimed=f"{facts.claimed_frames:,}", held=f"{facts.frames:,}"))
    return facts.frames, notes


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    isolate: bool | None = None,
    worker_seconds: float = WORKER_SECONDS,
    worker_memory: int = WORKER_MEMORY,
) -> DecodedImage:
    """Decode an upload safely into an upright 8-bit RGB working copy (a GIF's first frame).

    Order of the checks: byte size, then the structure (:func:`inspect_image`: claimed
    size, sides, JPEG scans and data), then Pillow's header and decompression-bomb guard,
    and only then the pixels, at the size needed. ``isolate``: None decodes small images
    here and the rest in a worker process (see the module's docstring); True always uses
    a worker, within ``worker_seconds`` and ``worker_memory``. Raises :class:`ImageError`
    for an empty, oversized, truncated, corrupt, too costly or non-image file.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError(N_("The file is empty (0 bytes)."))
    if len(data) > max_bytes:
        raise ImageError(N_("The file is {size} bytes ({size_mb}), over the limit of {limit} "
                            "bytes ({limit_mb}).", size=f"{len(data):,}",
                            size_mb=_mib(len(data)), limit=f"{max_bytes:,}",
                            limit_mb=_mib(max_bytes)))
    facts = inspect_image(data)
    if facts is None:
        raise _unidentified(data)
    refusal = _size_refusal(facts, max_pixels, len(data))
    if refusal:
        raise ImageError(refusal)
    memory = _decode_memory(facts)
    inline = (isolate is not True and memory is not None and memory <= INLINE_MEMORY
              and facts.scans <= INLINE_JPEG_SCANS and not facts.heavy)
    expected = (None if facts.width is None or facts.height is None
                else (facts.width, facts.height))
    if inline:
        pixels = _decode_pixels(data, max_pixels, expected)
    else:
        needed = None if memory is None else _WORKER_BASE_BYTES + memory
        if needed is not None and needed > worker_memory:
            raise ImageError(f"Decoding this image would need about {needed / 2**20:,.0f} MB "
                             f"of memory, more than the {worker_memory / 2**20:,.0f} MB "
                             "allowed for one upload. Scale it down and upload again.")
        pixels = _decode_in_worker(data, max_pixels, worker_seconds, worker_memory, expected)
    frames, notes = _frame_notes(facts)
    try:
        rgb, more = to_rgb(pixels.image, pixels.mode)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("The image is too large to convert in memory.") from None
    except Exception as err:  # noqa: BLE001 - e.g. a palette that does not parse
        raise ImageError(f"The image's pixels could not be converted to RGB ({err}).") from None
    damage = ([facts.incomplete] if facts.incomplete else []) + list(pixels.warnings)
    return DecodedImage(image=rgb, format=pixels.format, mode=pixels.mode, frames=frames,
                        size=pixels.size, notes=tuple(notes + pixels.notes + more),
                        warnings=tuple(damage), isolated=not inline,
                        worker_peak=pixels.worker_peak)


def read_image_file(path: str | Path, **bounds: Any) -> DecodedImage:
    """:func:`decode_image` on a file's bytes (a sample image, say)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > bounds.get("max_bytes", DEFAULT_MAX_BYTES):
            raise ImageError(f"{path.name} is {_mib(size)}, over the limit.")
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"{path.name} cannot be read ({err.strerror or err}).") from None
    return decode_image(data, **bounds)


# ----------------------------------------------------------------------------- display


def preview(image: Image.Image, max_side: int = 480) -> Image.Image:
    """A copy for display, at most ``max_side`` on its longer side and at least 1 px on the
    shorter (a 60000x1 strip stays drawable; browsers and JPEG stop at 65,535)."""
    return _shrunk(image, max_side, Image.Resampling.BILINEAR)


def markdown_literal(text: str, max_chars: int = 100) -> str:
    """``text`` (a file name, say) as a Markdown code span that shows exactly its characters.

    Nothing inside is read as Markdown, a link, an emoji or icon shortcode, a colour
    directive or LaTeX. Characters that do not print (NUL, line breaks, direction
    overrides) become U+FFFD; longer names are cut to ``max_chars`` with an ellipsis.
    """
    clean = "".join(ch if ch.isprintable() else "\ufffd" for ch in text) or "\ufffd"
    if len(clean) > max_chars:
        clean = clean[:max_chars - 1] + "\u2026"
    fence = "`" * (max((len(run) for run in re.findall("`+", clean)), default=0) + 1)
    pad = " " if clean[0] in "` " or clean[-1] in "` " else ""
    return f"{fence}{pad}{clean}{pad}{fence}"


if __name__ == "__main__":
    _worker_main()
