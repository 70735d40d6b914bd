"""The layer table: one row per executed leaf layer of a network, from torchinfo.

Each row (columns: :data:`LAYER_COLUMNS`) gives the layer's dotted name, its top-level
block, type, kernel, stride and padding, input and output shapes (batch dimension
dropped), for convolutions and poolings the shape arithmetic
``out = floor((in + 2p - k) / s) + 1`` with the numbers filled in
(:func:`cnncompare.geometry.shape_arithmetic`), its receptive field ``rf``, ``rf_jump``
and ``rf_start`` (input pixels; defined in :mod:`cnncompare.receptive_field`), its
parameters, its MACs (filled in by :mod:`cnncompare.profiling` from fvcore) and its
output size in MB.

``output_mb`` is one image's output (batch 1) in the model's dtype, float32 here. A
module called twice (ResNet's shared ReLU) has a row per call; the later ones are marked
``shared`` and carry no parameters or MACs, so every column adds up to the model's total.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnncompare.geometry import shape_arithmetic
from cnncompare.receptive_field import fill_layer_fields

MB = 1e6
"""Megabytes are decimal here, as torchinfo prints them."""

LAYER_COLUMNS = [
    "layer", "block", "depth", "type", "kernel", "stride", "padding", "input_shape",
    "output_shape", "shape_arithmetic", "rf", "rf_jump", "rf_start", "params",
    "trainable_params", "macs", "output_mb", "shared",
]
"""The columns of the layer table, in order."""

_SPATIAL_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                  nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_TYPES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def layer_rows(model: nn.Module, shape: tuple[int, ...],
               device: torch.device) -> tuple[list[dict[str, Any]], int]:
    """The rows of ``model``'s layer table for an input of ``shape``, and the activation
    bytes of one forward pass: every executed leaf layer's output, except those of
    in-place layers (which overwrite their input). ``macs`` is left at 0."""
    from torchinfo import summary  # imported on first use: it is slow to import

    stats = summary(model, input_size=shape, device=device, verbose=0, depth=1_000,
                    mode="eval")
    names = {id(m): n for n, m in model.named_modules()}
    rows: list[dict[str, Any]] = []
    activation = 0
    for info in stats.summary_list:
        if not info.is_leaf_layer or not info.executed:
            continue
        module = info.module
        name = names.get(id(module), info.var_name) or "(model)"
        if not getattr(module, "inplace", False):
            activation += info.output_bytes
        kernel, stride, padding, arithmetic = _spatial(module, info.input_size,
                                                       info.output_size)
        rows.append({
            "layer": name,
            "block": name.split(".")[0],
            "depth": info.depth,
            "type": info.class_name,
            "kernel": kernel,
            "stride": stride,
            "padding": padding,
            "input_shape": _shape_text(info.input_size),
            "output_shape": _shape_text(info.output_size),
            "shape_arithmetic": arithmetic,
            "params": 0 if info.is_recursive else int(info.num_params),
            "trainable_params": 0 if info.is_recursive else int(info.trainable_params),
            "macs": 0,
            "output_mb": info.output_bytes / MB,
            "shared": bool(info.is_recursive),
        })
    fill_layer_fields(rows, model, shape, device=device)
    return rows, activation


def fill_layer_macs(rows: list[dict[str, Any]], module_macs: dict[str, int]) -> None:
    """A layer's MACs are fvcore's for its module; a shared module's go to its first call."""
    for row in rows:
        if not row["shared"]:
            path = "" if row["layer"] == "(model)" else row["layer"]
            row["macs"] = int(module_macs.get(path, 0))


def _shape_text(size: Any) -> str:
    """``[1, 64, 56, 56]`` -> ``"64x56x56"`` (the batch dimension dropped)."""
    if isinstance(size, (list, tuple)) and size and all(isinstance(s, int) for s in size):
        return "x".join(str(s) for s in size[1:]) if len(size) > 1 else str(size[0])
    return str(size)


def _pair(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _dims_text(v: Any, ndim: int = 1) -> str:
    """``(3, 3)`` -> ``"3x3"``; ``2`` with ``ndim=2`` -> ``"2x2"``."""
    t = _pair(v)
    if len(t) == 1:
        t = t * ndim
    return "x".join(str(int(x)) for x in t)


def _spatial(module: nn.Module, in_size: Any, out_size: Any) -> tuple[str, str, str, str]:
    """Kernel, stride, padding and the filled-in shape arithmetic of a conv or pool layer."""
    if isinstance(module, _ADAPTIVE_TYPES):
        out = _dims_text(module.output_size, int(type(module).__name__[-2]))
        return "", "", "", f"adaptive: output fixed at {out}"
    if not isinstance(module, _SPATIAL_TYPES):
        return "", "", "", ""
    k, s, p = module.kernel_size, module.stride, module.padding
    ndim = int(type(module).__name__[-2]) if type(module).__name__[-2].isdigit() else 1
    kernel, stride, padding = _dims_text(k, ndim), _dims_text(s, ndim), _dims_text(p, ndim)
    if isinstance(p, str):  # "same" / "valid"
        return kernel, stride, p, ""
    try:
        n_in = int(in_size[2])
        n_out = int(out_size[2])
    except (IndexError, TypeError, ValueError):
        return kernel, stride, padding, ""
    k0, s0, p0 = _pair(k)[0], _pair(s)[0], _pair(p)[0]
    d0 = _pair(getattr(module, "dilation", 1))[0]
    ceil_mode = bool(getattr(module, "ceil_mode", False))
    return kernel, stride, padding, shape_arithmetic(n_in, k0, s0, p0, d0, ceil_mode, n_out)
