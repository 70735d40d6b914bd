"""Grad-CAM: where a network looked, as a heat map over its input.

Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391), our own few lines
with forward hooks: the gradient of the class score with respect to the last 4-D feature
map, averaged over space, weighs that map's channels. The target layer is found by one
rule for every family (see :func:`cam_layer`). :func:`colorize` and :func:`overlay` draw
the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from cnncompare.runtime import main_logits

# Modules that never hold a "stage output": global pooling, no-ops, element-wise activations.
_NOT_A_STAGE: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Flatten, nn.Dropout,
    nn.Dropout2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Mish,
)


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
        logits = main_logits(model(x))
    finally:
        for h in handles:
            h.remove()
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
