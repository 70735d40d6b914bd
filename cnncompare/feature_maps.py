"""Feature maps: what a network's stages make of one image.

:func:`stage_maps` runs a network once on one preprocessed image and keeps, for each
*stage*, its most active channels. A stage output is the last map a network produces at
one spatial size, before the next size change, among its modules at the shallowest
nesting depth that gives at least :data:`MIN_STAGES` sizes: ResNet's ``layer1`` to
``layer4`` (its top-level modules), AlexNet's and VGG's ReLU before each pooling (inside
``features``), DenseNet's dense blocks, GoogLeNet's last Inception module at each size,
LeNet's ``act1``, ``pool1``, ``act2``, ``pool2``. Outputs of global or adaptive pooling,
flattening, dropout and identities are never stages.

A channel's activity is its mean over the map; the most active channels come first.
:func:`tile` draws a stage's channels side by side on one colour scale (the stage's
largest value), so a weak channel looks weak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from cnncompare.gradcam import colorize

NOT_STAGES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout,
              nn.Dropout2d, nn.Identity)
"""Modules whose output is never shown as a stage."""

MAX_CHANNELS = 64
"""The most channels a stage shows."""

MIN_STAGES = 3
"""Modules are looked at one nesting level deeper until they show this many sizes."""


@dataclass(frozen=True)
class Stage:
    """One stage's output for one image: its shape and its most active channels."""

    name: str  # the module whose output this is
    shape: tuple[int, int, int]  # channels, height, width
    channels: tuple[int, ...]  # indices of the channels shown, most active first
    activity: tuple[float, ...]  # their mean activation
    maps: np.ndarray  # (len(channels), H, W) float32

    @property
    def label(self) -> str:
        c, h, w = self.shape
        return f"{self.name}: {c} x {h} x {w}"


def stage_outputs(model: nn.Module, x: Tensor) -> list[tuple[str, Tensor]]:
    """``(module name, output)`` of every stage (see the module docstring), in order, for
    the batch ``x``; the outputs are copies, safe from later in-place layers."""
    records: list[tuple[str, int, Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if not name or isinstance(module, NOT_STAGES):
            continue

        def hook(_m, _i, out, name=name):
            if isinstance(out, Tensor) and out.dim() == 4:
                records.append((name, name.count(".") + 1, out.detach().clone()))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stages: list[tuple[str, Tensor]] = []
    for depth in range(1, max((d for _, d, _ in records), default=0) + 1):
        stages = []
        for name, d, t in records:
            if d > depth:
                continue
            if stages and stages[-1][1].shape[-2:] == t.shape[-2:]:
                stages[-1] = (name, t)
            else:
                stages.append((name, t))
        if len(stages) >= MIN_STAGES:
            break
    return stages


def stage_maps(model: nn.Module, x: Tensor, top: int = 6) -> list[Stage]:
    """The ``top`` most active channels (1 to :data:`MAX_CHANNELS`) of every stage of
    ``model`` for one image ``x`` of shape (1, C, H, W), already preprocessed."""
    if not 1 <= top <= MAX_CHANNELS:
        raise ValueError(f"top must be from 1 to {MAX_CHANNELS}, got {top}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(x.shape)}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stages = []
    for name, t in stage_outputs(model, x.to(device)):
        fmap = t[0].float().cpu()
        activity = fmap.mean(dim=(1, 2))
        order = torch.argsort(activity, descending=True)[:top]
        stages.append(Stage(name=name, shape=tuple(fmap.shape),
                            channels=tuple(int(i) for i in order),
                            activity=tuple(float(activity[i]) for i in order),
                            maps=fmap[order].numpy().astype(np.float32)))
    return stages


def tile(stage: Stage, cell: int = 56, gap: int = 2) -> Image.Image:
    """The stage's channels side by side (a near-square grid), each scaled up to ``cell``
    px with nearest neighbours, on one colour scale from the stage's smallest value
    (or 0) to its largest."""
    maps = stage.maps
    n = len(maps)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    lo = min(0.0, float(maps.min())) if n else 0.0
    hi = float(maps.max()) if n else 1.0
    scaled = (maps - lo) / (hi - lo) if hi > lo else np.zeros_like(maps)
    canvas = Image.new("RGB", (cols * (cell + gap) - gap, rows * (cell + gap) - gap),
                       (255, 255, 255))
    for i, m in enumerate(scaled):
        img = Image.fromarray(colorize(m)).resize((cell, cell), Image.Resampling.NEAREST)
        canvas.paste(img, ((i % cols) * (cell + gap), (i // cols) * (cell + gap)))
    return canvas
