"""The effective receptive field: where a unit's input gradient really is, against the
theoretical field.

For one unit in the middle of a network's last feature map (the map global pooling or
flattening reads), the gradient of its activation (summed over channels) with respect to
the input, in absolute value, averaged over a few images: Luo et al., 2016, "Understanding
the Effective Receptive Field in Deep Convolutional Neural Networks"
(https://arxiv.org/abs/1701.04128). The theoretical field (:mod:`cnncompare.receptive_field`)
bounds it exactly; the lesson is how much of that square the gradient actually fills.

:func:`effective_field` works on any network and images; :func:`run_effective_field`
uses a stored run and its own test images, and the same architecture freshly
initialised beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnncompare.dataflow import trace
from cnncompare.receptive_field import dataflow_fields, last_map_op

MASS = 0.9
"""The share of the gradient's mass the effective size is measured at."""


@dataclass(frozen=True)
class EffectiveField:
    """The averaged absolute input gradient of the central unit, and its theoretical field.

    ``map`` is (H, W), scaled so that its largest value is 1. ``region`` is the
    theoretical field clipped to the image: (top, bottom, left, right), inclusive.
    ``effective`` is the side (px) of the smallest square around the gradient's centre of
    mass that holds :data:`MASS` of it; ``theoretical`` the field's size (unclipped).
    """

    map: np.ndarray
    layer: str
    unit: tuple[int, int]
    region: tuple[int, int, int, int]
    theoretical: int
    effective: int
    images: int


def _last_map_module(model: nn.Module, shape: tuple[int, ...]) -> tuple[nn.Module, str, Any]:
    """The module that reads the last feature map, its name, and the map's field."""
    flow = trace(model, shape, device=next(model.parameters()).device)
    last = last_map_op(flow)
    if last is None:
        raise ValueError("this network has no feature map before its classifier")
    reader = next(op for op in flow.ops if last in op.inputs and op.index > last)
    if reader.module is None:
        raise ValueError("the last feature map is read by a function, not a module")
    return reader.module, flow.ops[last].name, dataflow_fields(flow)[last]


def _square_side(grad: np.ndarray, mass: float) -> int:
    """Side of the smallest square around the centre of mass holding ``mass`` of ``grad``."""
    total = grad.sum()
    if total <= 0:
        return 0
    ys, xs = np.indices(grad.shape)
    cy, cx = (grad * ys).sum() / total, (grad * xs).sum() / total
    dist = np.maximum(np.abs(ys - cy), np.abs(xs - cx)).ravel()  # Chebyshev: squares
    order = np.argsort(dist)
    cum = np.cumsum(grad.ravel()[order]) / total
    radius = dist[order][np.searchsorted(cum, mass)]
    return int(2 * np.floor(radius) + 1)


def effective_field(model: nn.Module, images: Tensor) -> EffectiveField:
    """The effective field of the central unit of ``model``'s last feature map, averaged
    over ``images`` (N, C, H, W, normalised as the network expects). The model runs in
    eval mode (put back as it was); nothing about it changes."""
    if images.dim() != 4 or len(images) < 1:
        raise ValueError(f"expected a batch of images (N, C, H, W), got {tuple(images.shape)}")
    device = next(model.parameters()).device
    reader, name, field = _last_map_module(model, (1, *images.shape[1:]))
    captured: list[Tensor] = []
    handle = reader.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().to(device).float().requires_grad_(True)
            model(x)
            fmap = captured[0]
            r, c = (fmap.shape[-2] - 1) // 2, (fmap.shape[-1] - 1) // 2
            (grad,) = torch.autograd.grad(fmap[:, :, r, c].sum(), x)
    finally:
        handle.remove()
        model.train(was_training)
    g = grad.abs().sum(dim=1).mean(dim=0).cpu().numpy().astype(np.float64)
    peak = g.max()
    top, bottom = field[0].pixels(r)
    left, right = field[1].pixels(c)
    return EffectiveField(map=(g / peak if peak > 0 else g).astype(np.float32), layer=name,
                          unit=(r, c), region=(top, bottom, left, right),
                          theoretical=field[0].size, effective=_square_side(g, MASS),
                          images=len(images))


def run_effective_field(store: Any, run_id: str, *, images: int = 16, root: Any = None
                        ) -> tuple[EffectiveField, EffectiveField]:
    """The effective field of a stored run on its first ``images`` test images, and of the
    same architecture freshly initialised (seed 0) on the same images."""
    from cnncompare import data  # scikit-learn loads on first use

    if not 1 <= images <= 256:
        raise ValueError(f"images must be from 1 to 256, got {images}")
    model, record = store.load_model(run_id)
    s = record.settings or {}
    try:
        td = data.load(record.dataset, train_size=int(s["train_size"]),
                       test_size=int(s["test_size"]), input_size=int(s["input_size"]),
                       in_channels=int(s["in_channels"]), seed=int(s["seed"]),
                       val_size=int(s.get("val_size") or 0) or None, root=root)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"run {run_id} does not record its data ({exc})") from None
    x = td.normalize(td.x_test[:images])
    torch.manual_seed(0)
    fresh = record.model_cfg().build()
    return effective_field(model, x), effective_field(fresh, x)
