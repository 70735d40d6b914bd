"""Uploaded images, decoded safely: bounded in bytes, pixels, time and memory.

Uploads are hostile until proven otherwise. :func:`decode_image` accepts PNG, JPEG, WebP,
BMP and GIF (first frame) only, refuses files over a byte bound and images over a pixel
bound *before* any pixel is decoded (the header's size is checked first, so a
decompression bomb never expands), applies the EXIF orientation and turns every pixel
mode (alpha, palette, CMYK, 16 bit) into plain 8-bit RGB. Anything it cannot use raises
:class:`ImageError`, whose message is meant for people.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
"""The image formats Pillow may parse here; every other plugin stays unused."""

DEFAULT_MAX_BYTES = 20 * 2**20
"""Largest upload accepted (20 MiB); the page passes Streamlit's own, smaller limit."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image accepted (50 megapixels: a 48 MP phone photo fits, a bomb does not)."""


class ImageError(ValueError):
    """An upload that is not a usable image. ``str(err)`` is a message meant for people."""


@dataclass(frozen=True)
class DecodedImage:
    """An upload turned into 8-bit RGB, upright, with what was done to get there."""

    image: Image.Image  # mode "RGB"
    format: str  # "PNG", "JPEG", ...
    mode: str  # the file's own pixel mode ("P", "CMYK", "I;16", ...)
    frames: int  # frames in the file; only the first is used
    notes: tuple[str, ...] = ()  # conversions worth telling the user about

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation was applied."""
        return self.image.size


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _what_text_is_this(data: bytes) -> str | None:
    """A name for bytes that are text (SVG, HTML, ...), or None if they do not look like text."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        return "an SVG drawing (vector graphics): export it as PNG first"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]:
        return "an HTML page, not an image"
    if head.startswith((b"<?xml", b"<")):
        return "an XML or markup document, not an image"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return "a text file, not an image" if head and printable / len(head) > 0.95 else None


def _accepted() -> str:
    return "PNG, JPEG, WebP, BMP or GIF"


_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"\xff\xd8\xff", 0, "JPEG"), (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"), (b"WEBP", 8, "WebP"), (b"BM", 0, "BMP"), (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"), (b"%PDF", 0, "PDF"), (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"ftyphei", 4, "HEIC (an iPhone photo? export it as JPEG)"), (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
)


def _magic_format(data: bytes) -> str | None:
    """The format a file's first bytes announce, if they announce one we know."""
    for magic, offset, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


def _unidentified(data: bytes) -> ImageError:
    """The clearest refusal for bytes that no accepted Pillow plugin would open."""
    fmt = _magic_format(data)
    if fmt in ("PNG", "JPEG", "GIF", "WebP", "BMP"):
        return ImageError(f"This file starts like a {fmt} image but its header is damaged "
                          "or incomplete, so it could not be read.")
    if fmt:
        return ImageError(f"This is a {fmt} file; upload a {_accepted()} image instead.")
    what = _what_text_is_this(data)
    if what:
        return ImageError(f"This file is {what}. Upload a {_accepted()} image.")
    return ImageError(f"This file is not a {_accepted()} image (its contents are not one of "
                      "these formats, whatever its name says).")


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` (header only) with the bomb checks; raises :class:`ImageError`."""
    with warnings.catch_warnings():
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both refuse here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(
                "The image claims more pixels than can be decoded safely "
                f"(a decompression bomb?): {err}"
            ) from None
        except UnidentifiedImageError:
            raise _unidentified(data) from None
        except Exception as err:  # noqa: BLE001 - hostile bytes can break any parser
            raise ImageError(f"The image header could not be read ({err}).") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width:,}x{height:,} pixels ({width * height / 1e6:,.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:,.0f} megapixels. Scale it down and upload again."
        )
    return img


def _load_pixels(img: Image.Image) -> None:
    """Decode the first frame; a damaged file raises :class:`ImageError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img.seek(0)
            img.load()
        except MemoryError:
            raise ImageError("The image is too large to decode in memory.") from None
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data, any plugin
            raise ImageError(
                f"The image data is damaged or incomplete ({err or type(err).__name__})."
            ) from None


def _scale_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Deep pixels to uint8. 16-bit modes map 0..65535 to 0..255; for 32-bit "I" and float
    "F" (whose range the file does not say) the peak decides: 1.0, 255 or 65535."""
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


def small_copy(img: Image.Image, side: int = 256) -> Image.Image:
    """A copy at most ``side`` pixels on its longer side (box-averaged): for statistics."""
    w, h = img.size
    if max(w, h) <= side:
        return img
    k = side / max(w, h)
    return img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX)


def _composite(rgba: Image.Image) -> tuple[Image.Image, str]:
    """Flatten transparency on a background that contrasts with the visible pixels.

    Dark strokes on a transparent canvas go on white; light strokes go on black.
    """
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
    return base, f"transparency flattened on {'black' if bg == (0, 0, 0) else 'white'}"


def to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """Any Pillow mode to 8-bit RGB, with notes on the conversions that change what one sees."""
    notes: list[str] = []
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        notes.append(f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} pixels "
                     "scaled to 8 bit")
        return Image.fromarray(_scale_to_8bit(np.asarray(img), mode), "L").convert("RGB"), notes
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        flat, note = _composite(img.convert("RGBA"))
        if note:
            notes.append(note)
        return flat, notes
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    try:
        return img.convert("RGB"), notes
    except (ValueError, OSError) as err:
        raise ImageError(f"Pixels in mode {mode!r} cannot be converted to RGB ({err}).") from None


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode an upload safely into an upright 8-bit RGB image (a GIF's first frame).

    Order of the checks: byte size, then the header (format, pixel count, Pillow's own
    decompression-bomb guard), and only then the pixels. Raises :class:`ImageError` for
    an empty, oversized, truncated, corrupt or non-image file.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageError(f"The file is {len(data):,} bytes ({_mib(len(data))}), over the "
                         f"limit of {max_bytes:,} bytes ({_mib(max_bytes)}).")
    img = _open_checked(data, max_pixels)
    fmt, mode = img.format or "?", img.mode
    notes: list[str] = []
    try:
        frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged later frame; the first may be fine
        frames = 1
        notes.append("later frames unreadable")
    _load_pixels(img)
    if frames > 1:
        notes.append(f"{frames} frames: the first one is used")
    try:
        orientation = img.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        orientation, upright = 1, img
        notes.append("EXIF orientation unreadable: shown as stored")
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation} applied")
    try:
        rgb, more = to_rgb(upright)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("The image is too large to convert in memory.") from None
    except Exception as err:  # noqa: BLE001 - e.g. a palette that does not parse
        raise ImageError(f"The image's pixels could not be converted to RGB ({err}).") from None
    return DecodedImage(image=rgb, format=fmt, mode=mode, frames=frames,
                        notes=tuple(notes + more))


def read_image_file(path: str | Path, **bounds: int) -> DecodedImage:
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


def preview(image: Image.Image, max_side: int = 480) -> Image.Image:
    """A copy for display, at most ``max_side`` on its longer side and at least 1 px on the
    shorter (a 100000x1 strip stays drawable; browsers and JPEG stop at 65,535)."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    k = max_side / max(w, h)
    return image.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR)
