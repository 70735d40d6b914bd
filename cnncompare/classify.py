"""Classify one image with several networks: preprocessing matched to each, top-k, agreement.

The core takes an ``nn.Module``, its class names and an :class:`InputSpec` (channels,
size, normalisation, ink polarity); it knows nothing of the results store. :func:`from_run`
builds a :class:`Classifier` from a stored run, calibrated on the run's own held-out
images so that every prediction says how typical the input is of what the network was
trained on (:mod:`cnncompare.typicality`); :mod:`cnncompare.pretrained` builds one from
torchvision's ImageNet weights (no calibration data). Uploads are decoded by
:mod:`cnncompare.uploads`, saliency maps come from :mod:`cnncompare.gradcam`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn

from cnncompare import feature_maps, typicality
from cnncompare.gradcam import grad_cam
from cnncompare.i18n import N_, t
from cnncompare.runtime import main_logits
from cnncompare.uploads import small_copy

# Ink polarity, as cnncompare.data names it for each dataset.
LIGHT_ON_DARK = "light-on-dark"  # digits, MNIST, Fashion-MNIST
DARK_ON_LIGHT = "dark-on-light"
NATURAL = "natural"  # photos: never inverted automatically
INKS = (LIGHT_ON_DARK, DARK_ON_LIGHT, NATURAL)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

    ``native_size``: the side the training images had before they were scaled up to
    ``input_size`` (scikit-learn's digits: 8 px). An image is first brought to that side,
    then scaled up as they were, so that a sharp drawing looks like the blurred digits the
    network learned from. None: straight to ``input_size``.
    """

    in_channels: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: Resize = "crop"
    resize_size: int | None = None  # "crop" only; default input_size
    ink: str = NATURAL
    native_size: int | None = None

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
        if self.native_size is not None and not 1 <= self.native_size < self.input_size:
            raise ValueError(f"native_size must be from 1 to input_size - 1, "
                             f"got {self.native_size}")


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
    gray = np.asarray(small_copy(image.convert("L")), dtype=np.float32) / 255.0
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
        small = np.asarray(small_copy(img).convert("RGB"), dtype=np.float32) / 255.0
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
    if spec.native_size is not None:  # the way the training images were made
        img = _geometry(img, replace(spec, input_size=spec.native_size, native_size=None,
                                     resize_size=None))
        img = img.resize((spec.input_size,) * 2, Image.Resampling.BILINEAR)
    else:
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
    size = int(meta.get("input_size", 28))
    native = NATIVE_SIZES.get(str(meta.get("dataset", "")))
    return InputSpec(in_channels=channels, input_size=size, mean=mean, std=std,
                     resize="crop" if ink == NATURAL else "pad", ink=ink,
                     native_size=native if native is not None and native < size else None)


NATIVE_SIZES = {"digits": 8}
"""Datasets whose images are stored smaller than they are trained at: their side."""


def crop_to_ink(image: Image.Image, margin: float = 0.1, threshold: int = 40) -> Image.Image:
    """The square around a drawing's strokes, ``margin`` of its side added on each side,
    so that a digit drawn small in a corner fills the frame as the training digits do.

    Ink is whatever differs from the background (the border's brightness) by more than
    ``threshold`` grey levels; an image without ink comes back as it was.
    """
    gray = np.asarray(image.convert("L"), dtype=np.int16)
    background = border_brightness(gray.astype(np.float32) / 255.0) * 255
    ys, xs = np.nonzero(np.abs(gray - background) > threshold)
    if len(ys) == 0:
        return image
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    side = int(round((max(bottom - top, right - left) + 1) * (1 + 2 * margin)))
    cy, cx = (top + bottom + 1) / 2, (left + right + 1) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    fill = int(round(background))
    out = Image.new(image.mode, (side, side), fill if image.mode == "L" else (fill,) * len(
        image.getbands()))
    out.paste(image, (-x0, -y0))
    return out

def enlarge(image: Image.Image, min_side: int = 224) -> Image.Image:
    """Nearest-neighbour upscaling, so a 28 px input is visible pixel for pixel."""
    w, h = image.size
    k = max(1, math.ceil(min_side / max(1, min(w, h))))
    return image.resize((w * k, h * k), Image.Resampling.NEAREST) if k > 1 else image


# -------------------------------------------------------------------------- prediction

SINGLE_THREAD_MAX_INPUT = 64
"""Networks whose input is at most this many pixels a side run on the CPU with one
intra-op thread. At batch 1 their operators last microseconds, so splitting each over
threads costs more than it gains, and when another program (the browser drawing the page)
holds a core, every operator waits for it: on two cores the three small networks of
``benchmarks/classify_latency.py`` took 0.5-3 s with two threads and about 0.1 s with one.
Larger inputs (ImageNet's 224 px) keep the process's thread count: there two threads win."""

_POOL_NAME = "cnncompare-small-networks"
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _one_intra_op_thread() -> None:
    """Give the calling thread one intra-op thread and leave every other thread's as it was.

    ``torch.set_num_threads`` sets the calling thread's count and also the default that
    threads started later take; a short-lived helper thread puts that default back.
    """
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    helper = threading.Thread(target=torch.set_num_threads, args=(default,))
    helper.start()
    helper.join()


def _small_network_thread() -> ThreadPoolExecutor:
    """The one thread that runs small networks (see :data:`SINGLE_THREAD_MAX_INPUT`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_POOL_NAME,
                                       initializer=_one_intra_op_thread)
        return _pool


@dataclass
class Classifier:
    """A network ready to classify: the module (eval mode), its classes, its input spec.

    ``lock`` serialises predictions: Grad-CAM hooks the module, so two sessions sharing
    one cached classifier must not run it at the same time. ``saliency_layer`` remembers
    the module Grad-CAM chose the first time (the rule depends on the network alone), so
    later passes hook that module only. ``remembered`` keeps the last
    :data:`REMEMBERED_PREDICTIONS` predictions made for a caller's image key (see
    :func:`predict`); ``hits`` counts the times one was reused. ``calibration`` (None for
    networks without held-out data, with ``calibration_note`` saying why) lets every
    prediction say how typical its input is.
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
    saliency_layer: str | None = field(default=None, compare=False)
    remembered: OrderedDict[Hashable, Prediction] = field(
        default_factory=OrderedDict, repr=False, compare=False)
    hits: int = field(default=0, compare=False)
    calibration: typicality.Calibration | None = field(default=None, repr=False,
                                                       compare=False)
    calibration_note: str = ""


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
    threads: int = 1  # intra-op CPU threads it ran with
    typicality: typicality.Typicality | None = None  # None: no calibration data

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


REMEMBERED_PREDICTIONS = 16
"""Predictions a :class:`Classifier` keeps for images the caller named with a key."""


def predict(clf: Classifier, image: Image.Image, *, k: int = 5, invert: bool | None = None,
            saliency: bool = True, key: Hashable | None = None) -> Prediction:
    """Top-``k`` classes, the forward time and (optionally) the Grad-CAM map of one image.

    The Grad-CAM pass runs first and doubles as a warm-up, so ``time_ms`` is a warm
    forward pass (batch 1, under ``torch.inference_mode``) on the model's device. A small
    network on the CPU runs in a thread of its own with one intra-op thread (see
    :data:`SINGLE_THREAD_MAX_INPUT`); ``threads`` says how many it had.

    ``key`` names the image (an upload's id, say): the same key with the same settings
    returns the prediction made the first time, without running the network (a page that
    reruns for another widget, or another session with the same image, waits for nothing).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    memo = None if key is None else (key, k, invert, saliency)
    if memo is not None:
        with clf.lock:
            if memo in clf.remembered:
                clf.remembered.move_to_end(memo)
                clf.hits += 1
                return clf.remembered[memo]
    pred = _run(clf, image, k, invert, saliency)
    if memo is not None:
        with clf.lock:
            clf.remembered[memo] = pred
            while len(clf.remembered) > REMEMBERED_PREDICTIONS:
                clf.remembered.popitem(last=False)
    return pred


def _run(clf: Classifier, image: Image.Image, k: int, invert: bool | None,
         saliency: bool) -> Prediction:
    """:func:`_predict` in the thread that suits the network."""
    param = next(clf.module.parameters(), None)
    on_cpu = param is None or param.device.type == "cpu"
    if (on_cpu and clf.spec.input_size <= SINGLE_THREAD_MAX_INPUT
            and not threading.current_thread().name.startswith(_POOL_NAME)):
        return _small_network_thread().submit(_predict, clf, image, k, invert,
                                              saliency).result()
    return _predict(clf, image, k, invert, saliency)


def _predict(clf: Classifier, image: Image.Image, k: int, invert: bool | None,
             saliency: bool) -> Prediction:
    with clf.lock:
        return _predict_locked(clf, image, k, invert, saliency)


def _predict_locked(clf: Classifier, image: Image.Image, k: int, invert: bool | None,
                    saliency: bool) -> Prediction:
    model = clf.module.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    prep = preprocess(image, clf.spec, invert)
    x = prep.tensor.to(device)
    cam = grad_cam(model, x, layer=clf.saliency_layer) if saliency else None
    if cam is not None:
        clf.saliency_layer = cam.layer
    if cam is None:
        with torch.inference_mode():
            model(x)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        logits = main_logits(model(x))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = (time.perf_counter() - start) * 1000.0
    probs = torch.softmax(logits[0].float(), dim=0)
    if len(clf.class_names) != probs.numel():
        raise ValueError(f"{clf.name} has {probs.numel()} outputs but "
                         f"{len(clf.class_names)} class names")
    top = torch.topk(probs, min(k, probs.numel()))
    idx = [int(i) for i in top.indices]
    typical = (typicality.score(clf.calibration, x, logits[0].cpu())
               if clf.calibration is not None else None)
    return Prediction(model=clf.name, dataset=clf.dataset,
                      classes=[clf.class_names[i] for i in idx],
                      probs=[float(p) for p in top.values], indices=idx, time_ms=elapsed,
                      shown=prep.shown, inverted=prep.inverted,
                      saliency=cam.map if cam is not None else None,
                      cam_layer=cam.layer if cam is not None else None, arch=clf.arch,
                      device=device.type,
                      threads=torch.get_num_threads() if device.type == "cpu" else 0,
                      typicality=typical)


def feature_maps_for(clf: Classifier, image: Image.Image, *, top: int = 6,
                     invert: bool | None = None
                     ) -> tuple[Preprocessed, list[feature_maps.Stage]]:
    """The image as ``clf``'s network sees it and its stages' ``top`` most active channels
    (:func:`cnncompare.feature_maps.stage_maps`), under the classifier's lock."""
    prep = preprocess(image, clf.spec, invert)
    with clf.lock:
        return prep, feature_maps.stage_maps(clf.module, prep.tensor, top)


def agreement(preds: Sequence[Prediction]) -> str:
    """One line: do the networks' top-1 answers agree? In the current language
    (:func:`cnncompare.i18n.t`); class names and network names stay as they are."""
    if not preds:
        return t("No model selected.")
    if len(preds) == 1:
        return t("One model: it says **{answer}**.", answer=preds[0].top1)
    datasets = {p.dataset for p in preds}
    answers: dict[str, list[str]] = {}
    for p in preds:
        answers.setdefault(p.top1, []).append(p.model)
    if len(answers) == 1:
        return t("All {n} models agree: **{answer}**.", n=len(preds), answer=preds[0].top1)
    parts = "; ".join(f"**{label}** ({', '.join(models)})" for label, models in answers.items())
    if len(datasets) > 1:
        return t("The models disagree (they were trained on different datasets, so their "
                 "classes differ): {answers}.", answers=parts)
    return t("The models disagree: {answers}.", answers=parts)


# ---------------------------------------------------------------- models: stored runs


def from_run(store: Any, run_id: str, device: str = "cpu", label: str | None = None, *,
             calibrate: bool = True, data_root: Any = None) -> Classifier:
    """A :class:`Classifier` from a run of the results store (``store.load_model``).

    ``label`` names it on the page (default: the model's name); ``ValueError`` from the
    store (unknown run, no finished epoch, damaged checkpoint) passes through. With
    ``calibrate`` the run's data is re-created (from ``data_root`` where it needs one) to
    calibrate :mod:`cnncompare.typicality`; where that fails the classifier still works
    and ``calibration_note`` says why.
    """
    model, record = store.load_model(run_id, device=device)
    calibration, note = None, ""
    if calibrate:
        try:
            calibration = typicality.calibrate_run(record, model, root=data_root)
        except (ValueError, OSError, RuntimeError) as exc:  # data missing or changed
            note = N_("How typical an image is cannot be said for this run: its data could "
                      "not be re-created ({reason}).",
                      reason=str(exc).splitlines()[0] if str(exc) else repr(exc))
    meta = record.data_meta
    names = meta.get("class_names") or []
    dataset = str(meta.get("dataset", record.dataset))
    arch = record.model
    return Classifier(name=label or arch or run_id, module=model.eval(),
                      class_names=tuple(map(str, names)), spec=spec_from_meta(meta), arch=arch,
                      source=f"run {run_id}", dataset=dataset,
                      details={"run_id": run_id, "test_acc": record.test_acc,
                               "epochs_done": record.epochs_done},
                      calibration=calibration, calibration_note=note)
