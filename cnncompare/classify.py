"""Classify one image with several networks: safe decoding, preprocessing, top-k, Grad-CAM.

The core takes an ``nn.Module``, its class names and an :class:`InputSpec` (channels,
size, normalisation, ink polarity); it knows nothing of the results store. Two adapters
build a :class:`Classifier` from a stored run (:func:`from_run`) or from torchvision's
ImageNet weights (:func:`load_pretrained`).

Uploads are hostile until proven otherwise. :func:`decode_image` accepts PNG, JPEG, WebP,
BMP and GIF (first frame) only, refuses files over a byte bound and images over a pixel
bound *before* any pixel is decoded (the header's size is checked first, so a
decompression bomb never expands), applies the EXIF orientation and turns every pixel
mode (alpha, palette, CMYK, 16 bit) into plain 8-bit RGB. Anything it cannot use raises
:class:`ImageError`, whose message is meant for people.

Saliency is Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391), our own
few lines with forward hooks: the gradient of the class score with respect to the last
4-D feature map, averaged over space, weighs that map's channels. The target layer is
found by one rule for every family (see :func:`cam_layer`).
"""

from __future__ import annotations

import io
import math
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn

FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
"""The image formats Pillow may parse here; every other plugin stays unused."""

DEFAULT_MAX_BYTES = 20 * 2**20
"""Largest upload accepted (20 MiB); the page passes Streamlit's own, smaller limit."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image accepted (50 megapixels: a 48 MP phone photo fits, a bomb does not)."""

# Ink polarity, as cnncompare.data names it for each dataset.
LIGHT_ON_DARK = "light-on-dark"  # digits, MNIST, Fashion-MNIST
DARK_ON_LIGHT = "dark-on-light"
NATURAL = "natural"  # photos: never inverted automatically
INKS = (LIGHT_ON_DARK, DARK_ON_LIGHT, NATURAL)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGENET_MODELS: tuple[str, ...] = (
    "alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "densenet121",
)
"""torchvision networks offered with ImageNet-pretrained weights."""


class ImageError(ValueError):
    """An upload that is not a usable image. ``str(err)`` is a message meant for people."""


class WeightsUnavailable(RuntimeError):
    """Pretrained weights that are neither in the torch cache nor downloadable now."""


# --------------------------------------------------------------------------- decoding


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


def _reduced(img: Image.Image, side: int = 256) -> Image.Image:
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
    small = np.asarray(_reduced(rgba), dtype=np.float32) / 255.0
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


# ----------------------------------------------------------------------- preprocessing

Resize = Literal["crop", "pad", "stretch"]


@dataclass(frozen=True)
class InputSpec:
    """What a network expects: channels, square size, normalisation, ink polarity.

    ``resize``: ``"crop"`` scales the shorter side to ``resize_size`` and takes the
    central ``input_size`` square (torchvision's ImageNet transform); ``"pad"`` fits the
    whole picture in the square and fills the rest with its background colour (a digit
    stays whole); ``"stretch"`` scales to the square directly.

    ``ink``: the polarity of the training images. ``"light-on-dark"`` (scikit-learn
    digits, MNIST) means a dark-on-light drawing gets inverted unless told otherwise, and
    the reverse for ``"dark-on-light"``.
    """

    in_channels: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: Resize = "crop"
    resize_size: int | None = None  # "crop" only; default input_size
    ink: str = NATURAL

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.input_size < 1:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        for name in ("mean", "std"):
            vals = getattr(self, name)
            if len(vals) not in (1, self.in_channels):
                raise ValueError(f"{name} needs 1 or {self.in_channels} values, got {vals}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.resize not in ("crop", "pad", "stretch"):
            raise ValueError(f"resize must be crop, pad or stretch, got {self.resize!r}")
        if self.ink not in INKS:
            raise ValueError(f"ink must be one of {', '.join(INKS)}, got {self.ink!r}")


IMAGENET_SPEC = InputSpec(resize_size=256)


@dataclass(frozen=True)
class Preprocessed:
    """The network's input tensor and the same pixels as a picture (before normalisation)."""

    tensor: Tensor  # (1, C, S, S), normalised
    shown: Image.Image  # exactly the pixels the network sees, de-normalised ("L" or "RGB")
    inverted: bool


def border_brightness(gray: np.ndarray) -> float:
    """Median brightness (0..1) of a frame around the image: its background, usually."""
    h, w = gray.shape
    b = max(1, round(min(h, w) * 0.05))
    frame = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(),
                            gray[:, :b].ravel(), gray[:, -b:].ravel()])
    return float(np.median(frame))


def looks_dark_on_light(image: Image.Image) -> bool:
    """True when the background (the border) is bright: dark ink on light paper."""
    gray = np.asarray(_reduced(image.convert("L")), dtype=np.float32) / 255.0
    return border_brightness(gray) > 0.5


def _geometry(img: Image.Image, spec: InputSpec) -> Image.Image:
    """Scale (and pad or crop) to the square input without any intermediate larger than it.

    However elongated the picture (100,000 x 1 is legal), nothing bigger than the input
    square is ever allocated: crops use ``resize``'s source box, padding happens after
    the scaling.
    """
    size = spec.input_size
    bilinear = Image.Resampling.BILINEAR
    w, h = img.size
    if spec.resize == "stretch":
        return img.resize((size, size), bilinear)
    if spec.resize == "pad":
        if w == h:
            return img.resize((size, size), bilinear)
        k = size / max(w, h)
        inner = img.resize((max(1, round(w * k)), max(1, round(h * k))), bilinear)
        small = np.asarray(_reduced(img).convert("RGB"), dtype=np.float32) / 255.0
        fill = tuple(int(round(border_brightness(small[..., c]) * 255)) for c in range(3))
        canvas = Image.new(img.mode, (size, size), fill[0] if img.mode == "L" else fill)
        canvas.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
        return canvas
    # "crop": torchvision's Resize(resize_size) + CenterCrop(size), computed as one box of
    # the source image: the central square that the crop would keep.
    short = spec.resize_size or size
    side = min(w, h) * min(1.0, size / short)
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize((size, size), bilinear, box=(left, top, left + side, top + side))


def preprocess(image: Image.Image, spec: InputSpec, invert: bool | None = None) -> Preprocessed:
    """Channels, geometry, polarity and normalisation for one network.

    ``invert``: None decides automatically (for models trained on strokes, from the
    border's brightness: inverted when it is the opposite of the training images');
    True or False overrides.
    """
    img = image.convert("L" if spec.in_channels == 1 else "RGB")
    if invert is None:
        invert = spec.ink != NATURAL and looks_dark_on_light(img) == (spec.ink == LIGHT_ON_DARK)
    img = _geometry(img, spec)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if invert:
        arr = 1.0 - arr
    if arr.ndim == 2:
        arr = arr[..., None]
    pixels = np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8)
    shown = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    x = (torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))) - mean) / std
    return Preprocessed(tensor=x.unsqueeze(0), shown=shown, inverted=bool(invert))


def spec_from_meta(meta: Mapping[str, Any]) -> InputSpec:
    """An :class:`InputSpec` from a dataset's metadata (a stored run's ``data_meta``).

    Reads ``in_channels``, ``input_size``, ``mean``, ``std`` and ``ink`` (see
    :data:`INKS`; anything else counts as natural). Strokes (digits, clothes on black) are
    padded to a square so they stay whole; photos are centre-cropped.
    """
    ink = str(meta.get("ink", NATURAL)).lower()
    ink = ink if ink in INKS else NATURAL
    channels = int(meta.get("in_channels", 3))
    mean = tuple(float(v) for v in np.atleast_1d(meta.get("mean", (0.5,) * channels)))
    std = tuple(float(v) for v in np.atleast_1d(meta.get("std", (0.5,) * channels)))
    return InputSpec(in_channels=channels, input_size=int(meta.get("input_size", 28)),
                     mean=mean, std=std, resize="crop" if ink == NATURAL else "pad", ink=ink)


# ---------------------------------------------------------------------------- Grad-CAM

# Modules that never hold a "stage output": global pooling, no-ops, element-wise activations.
_NOT_A_STAGE: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Flatten, nn.Dropout,
    nn.Dropout2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Mish,
)


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    return None


def _trace_maps(model: nn.Module, x: Tensor, only: str | None = None
                ) -> tuple[Tensor, list[tuple[str, Tensor]]]:
    """Run ``model(x)`` recording every named module's 4-D output, in completion order."""
    records: list[tuple[str, Tensor]] = []

    def hook(name: str):
        def record(_module: nn.Module, _inp: Any, out: Any) -> None:
            t = out if isinstance(out, Tensor) else None
            if t is not None and t.dim() == 4:
                records.append((name, t))
        return record

    handles = []
    for name, module in model.named_modules():
        if not name or (only is None and isinstance(module, _NOT_A_STAGE)):
            continue
        if only is None or name == only:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        logits = _first_tensor(model(x))
    finally:
        for h in handles:
            h.remove()
    if logits is None:
        raise TypeError("the model returned no tensor")
    return logits, records


def _pick_stage(records: Sequence[tuple[str, Tensor]]) -> tuple[str, Tensor] | None:
    """The last 4-D map with more than one pixel (the last conv stage); else the last one."""
    for name, t in reversed(records):
        if t.shape[-1] * t.shape[-2] > 1:
            return name, t
    return records[-1] if records else None


def cam_layer(model: nn.Module, x: Tensor) -> str | None:
    """The module Grad-CAM looks at: the rule :func:`grad_cam` uses, for display and tests.

    Rule: among the named submodules that are not global pooling, dropout, identity,
    flatten or an element-wise activation, the one whose 4-D output (N, C, H, W) with
    H x W > 1 is produced *last* in the forward pass. Containers finish after their
    children, so this is a whole stage: ResNet's ``layer4``, VGG's and AlexNet's and
    DenseNet's ``features``, GoogLeNet's ``inception5b``, NiN's ``block4``, LeNet's
    ``pool2``. None for a network without 4-D maps.
    """
    with torch.no_grad():
        _, records = _trace_maps(model, x)
    picked = _pick_stage(records)
    return picked[0] if picked else None


@dataclass(frozen=True)
class CamResult:
    """A Grad-CAM map at the input's resolution, values in [0, 1]."""

    map: np.ndarray  # (H, W) float32
    layer: str
    target: int
    logits: Tensor  # (1, num_classes), from the same pass


def grad_cam(model: nn.Module, x: Tensor, target: int | None = None,
             layer: str | None = None) -> CamResult | None:
    """Grad-CAM for class ``target`` (default: the top class) of ``model`` on ``x`` (1, C, H, W).

    The weights of the feature map's channels are the spatial means of the class score's
    gradient; their weighted sum, passed through ReLU, is upsampled (bilinear) to the
    input's size and min-max scaled to [0, 1] (a map that is flat everywhere becomes all
    zeros: no evidence anywhere). ``layer`` names the module; by default the rule of
    :func:`cam_layer` chooses. Returns None when the network has no 4-D feature map.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(x.shape)}")
    if layer is not None and layer not in dict(model.named_modules()):
        raise ValueError(f"the model has no module named {layer!r}")
    with torch.enable_grad():
        # An input that requires grad keeps the graph even where the weights are frozen.
        xg = x.detach().clone().requires_grad_(True)
        logits, records = _trace_maps(model, xg, only=layer)
        picked = _pick_stage(records)
        if picked is None:
            return None
        name, act = picked
        if target is None:
            target = int(logits[0].argmax())
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"target class {target} outside 0..{logits.shape[1] - 1}")
        (grads,) = torch.autograd.grad(logits[0, target], act)
    with torch.no_grad():
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * act.detach()).sum(dim=1, keepdim=True))
        cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear",
                                        align_corners=False)[0, 0]
        cam = cam - cam.min()
        peak = float(cam.max())
        cam = cam / peak if peak > 0 else torch.zeros_like(cam)
        out = cam.clamp_(0, 1).float().cpu().numpy()
    return CamResult(map=out, layer=name, target=target, logits=logits.detach())


# Anchors of a perceptually ordered colour map (dark blue -> cyan -> yellow -> red).
_CMAP = np.array([[48, 18, 59], [70, 131, 249], [27, 229, 181], [164, 252, 60],
                  [250, 186, 57], [228, 70, 10], [122, 4, 3]], dtype=np.float32)


def colorize(cam: np.ndarray) -> np.ndarray:
    """A (H, W) map in [0, 1] as an (H, W, 3) uint8 heat map."""
    pos = np.linspace(0.0, 1.0, len(_CMAP))
    v = np.clip(np.nan_to_num(cam.astype(np.float32)), 0, 1)
    rgb = np.stack([np.interp(v, pos, _CMAP[:, c]) for c in range(3)], axis=-1)
    return rgb.astype(np.uint8)


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """``image`` (any mode, any size) blended with the heat map of ``cam``; RGB out."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image.convert("RGB")
    resized = Image.fromarray(cam.astype(np.float32), "F").resize(base.size,
                                                                 Image.Resampling.BILINEAR)
    heat = colorize(np.asarray(resized))
    mixed = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * heat.astype(np.float32)
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), "RGB")


def preview(image: Image.Image, max_side: int = 480) -> Image.Image:
    """A copy for display, at most ``max_side`` on its longer side and at least 1 px on the
    shorter (a 100000x1 strip stays drawable; browsers and JPEG stop at 65,535)."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    k = max_side / max(w, h)
    return image.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR)


def enlarge(image: Image.Image, min_side: int = 224) -> Image.Image:
    """Nearest-neighbour upscaling, so a 28 px input is visible pixel for pixel."""
    w, h = image.size
    k = max(1, math.ceil(min_side / max(1, min(w, h))))
    return image.resize((w * k, h * k), Image.Resampling.NEAREST) if k > 1 else image


# -------------------------------------------------------------------------- prediction


@dataclass
class Classifier:
    """A network ready to classify: the module (eval mode), its classes, its input spec.

    ``lock`` serialises predictions: Grad-CAM hooks the module, so two sessions sharing
    one cached classifier must not run it at the same time.
    """

    name: str
    module: nn.Module
    class_names: tuple[str, ...]
    spec: InputSpec
    arch: str = ""  # the registry or torchvision name, for colours
    source: str = ""  # "run <id>" or "torchvision <name> <weights>"
    dataset: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class Prediction:
    """One network's answer for one image."""

    model: str
    dataset: str
    classes: list[str]  # top-k class names, best first
    probs: list[float]
    indices: list[int]
    time_ms: float  # one forward pass under inference_mode, after a warm pass
    shown: Image.Image  # the input as the network sees it
    inverted: bool
    saliency: np.ndarray | None  # Grad-CAM for the top class, input size, [0, 1]
    cam_layer: str | None
    arch: str = ""  # the network's registry name, for its colour
    device: str = "cpu"  # where it ran

    @property
    def top1(self) -> str:
        return self.classes[0]

    @property
    def top1_prob(self) -> float:
        return self.probs[0]

    def frame(self) -> pd.DataFrame:
        """Columns rank, class, probability: the bars of the page."""
        return pd.DataFrame({"rank": range(1, len(self.classes) + 1), "class": self.classes,
                             "probability": self.probs})


def predict(clf: Classifier, image: Image.Image, *, k: int = 5, invert: bool | None = None,
            saliency: bool = True) -> Prediction:
    """Top-``k`` classes, the forward time and (optionally) the Grad-CAM map of one image.

    The Grad-CAM pass runs first and doubles as a warm-up, so ``time_ms`` is a warm
    forward pass (batch 1, under ``torch.inference_mode``) on the model's device.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    with clf.lock:
        return _predict(clf, image, k, invert, saliency)


def _predict(clf: Classifier, image: Image.Image, k: int, invert: bool | None,
             saliency: bool) -> Prediction:
    model = clf.module.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    prep = preprocess(image, clf.spec, invert)
    x = prep.tensor.to(device)
    cam = grad_cam(model, x) if saliency else None
    if cam is None:
        with torch.inference_mode():
            model(x)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        logits = _first_tensor(model(x))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = (time.perf_counter() - start) * 1000.0
    if logits is None:
        raise TypeError(f"{clf.name} returned no tensor")
    probs = torch.softmax(logits[0].float(), dim=0)
    if len(clf.class_names) != probs.numel():
        raise ValueError(f"{clf.name} has {probs.numel()} outputs but "
                         f"{len(clf.class_names)} class names")
    top = torch.topk(probs, min(k, probs.numel()))
    idx = [int(i) for i in top.indices]
    return Prediction(model=clf.name, dataset=clf.dataset,
                      classes=[clf.class_names[i] for i in idx],
                      probs=[float(p) for p in top.values], indices=idx, time_ms=elapsed,
                      shown=prep.shown, inverted=prep.inverted,
                      saliency=cam.map if cam is not None else None,
                      cam_layer=cam.layer if cam is not None else None, arch=clf.arch,
                      device=device.type)


def agreement(preds: Sequence[Prediction]) -> str:
    """One line: do the networks' top-1 answers agree?"""
    if not preds:
        return "No model selected."
    if len(preds) == 1:
        return f"One model: it says **{preds[0].top1}**."
    datasets = {p.dataset for p in preds}
    answers: dict[str, list[str]] = {}
    for p in preds:
        answers.setdefault(p.top1, []).append(p.model)
    if len(answers) == 1:
        return f"All {len(preds)} models agree: **{preds[0].top1}**."
    parts = "; ".join(f"**{label}** ({', '.join(models)})" for label, models in answers.items())
    note = (" (they were trained on different datasets, so their classes differ)"
            if len(datasets) > 1 else "")
    return f"The models disagree{note}: {parts}."


# ---------------------------------------------------------------- models: stored runs


def from_run(store: Any, run_id: str, device: str = "cpu", label: str | None = None
             ) -> Classifier:
    """A :class:`Classifier` from a run of the results store (``store.load_model``).

    ``label`` names it on the page (default: the model's name); ``ValueError`` from the
    store (unknown run, no finished epoch, damaged checkpoint) passes through.
    """
    model, record = store.load_model(run_id, device=device)
    meta = record.get("data_meta") or {}
    names = meta.get("class_names") or []
    dataset = str(meta.get("dataset", record.get("dataset", "")))
    arch = str(record.get("model", ""))
    return Classifier(name=label or arch or run_id, module=model.eval(),
                      class_names=tuple(map(str, names)), spec=spec_from_meta(meta), arch=arch,
                      source=f"run {run_id}", dataset=dataset,
                      details={"run_id": run_id, "test_acc": record.get("test_acc"),
                               "epochs_done": record.get("epochs_done")})


# ------------------------------------------------------ models: torchvision ImageNet weights


@dataclass(frozen=True)
class PretrainedStatus:
    """Where one network's ImageNet weights are (or would be) in the torch cache."""

    name: str
    weights: str  # the torchvision enum member, e.g. "IMAGENET1K_V1"
    url: str
    path: Path
    cached: bool


def _weight_choices(name: str) -> list[Any]:
    from torchvision import models as tvm

    if name not in IMAGENET_MODELS:
        raise ValueError(f"no ImageNet weights offered for {name!r}; "
                         f"choose from {', '.join(IMAGENET_MODELS)}")
    enum = tvm.get_model_weights(name)
    usable = [w for w in enum if w.meta.get("categories")]
    default = enum.DEFAULT
    return sorted(usable, key=lambda w: w is not default)  # the default first


def checkpoint_dir() -> Path:
    """torch's download cache for weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_status(name: str) -> PretrainedStatus:
    """The weights :func:`load_pretrained` would use: a cached file if any, else the default."""
    choices = _weight_choices(name)
    folder = checkpoint_dir()
    for w in choices:
        path = folder / Path(w.url).name
        if path.is_file():
            return PretrainedStatus(name, w.name, w.url, path, True)
    w = choices[0]
    return PretrainedStatus(name, w.name, w.url, folder / Path(w.url).name, False)


_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def load_pretrained(name: str, *, download: bool = False) -> Classifier:
    """torchvision's ``name`` with its ImageNet weights, from the torch cache.

    With ``download=True`` a missing file is fetched (hash-checked) into the cache first.
    The file is read with ``weights_only=True``. Raises :class:`WeightsUnavailable` when
    the weights are missing and cannot be fetched, or do not fit the network.
    """
    from torchvision import models as tvm

    status = pretrained_status(name)
    weights = getattr(tvm.get_model_weights(name), status.weights)
    if not status.cached and not download:
        raise WeightsUnavailable(
            f"The ImageNet weights for {name} are not in the torch cache "
            f"({status.path.parent}), and downloading is off."
        )
    try:
        state = torch.hub.load_state_dict_from_url(
            status.url, progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - network, disk, hash or pickle trouble alike
        verb = "read" if status.cached else "download"
        raise WeightsUnavailable(
            f"Could not {verb} the ImageNet weights for {name} ({status.url}): {err}"
        ) from err
    kwargs: dict[str, Any] = {}
    if name == "googlenet":  # torchvision's own settings for its pretrained GoogLeNet
        kwargs = {"aux_logits": True, "transform_input": True, "init_weights": False}
    if name.startswith("densenet"):  # old checkpoint keys, renamed as torchvision does
        state = {(_DENSE_KEY.sub(r"\1\2", k)): v for k, v in state.items()}
    model = tvm.get_model(name, weights=None, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsUnavailable(
            f"The cached file {status.path.name} does not fit torchvision's {name}: "
            f"{str(err).splitlines()[0]}"
        ) from err
    if name == "googlenet":
        model.aux_logits = False
        model.aux1 = model.aux2 = None
    tf = weights.transforms()
    spec = InputSpec(in_channels=3, input_size=int(tf.crop_size[0]),
                     mean=tuple(tf.mean), std=tuple(tf.std), resize="crop",
                     resize_size=int(tf.resize_size[0]))
    return Classifier(name=f"{name} (ImageNet)", module=model.eval(),
                      class_names=tuple(weights.meta["categories"]), spec=spec, arch=name,
                      source=f"torchvision {name} {status.weights}", dataset="imagenet",
                      details={"weights": status.weights, "file": str(status.path),
                               "acc@1": weights.meta.get("_metrics", {}).get(
                                   "ImageNet-1K", {}).get("acc@1")})
