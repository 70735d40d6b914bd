"""Receptive fields: which input pixels can affect one unit of a layer, branches included.

For a layer's output map, along one side (every network here is square):

* ``rf``: the size, in input pixels, of the region that can affect one unit. It is not
  clipped to the image: it counts the padding positions a unit's region covers, so it can
  be larger than the input (ResNet-18's last map at 224 px: 435).
* ``rf_jump``: the distance in input pixels between the regions of two neighbouring units
  (the product of the strides so far, the "effective stride").
* ``rf_start``: the input coordinate of the first pixel of the first unit's region (unit
  0 along that side; pixel 0 is the image's first row or column). It is negative where
  padding puts that region partly outside the image. Unit ``i``'s region is
  ``[rf_start + i * rf_jump, rf_start + i * rf_jump + rf - 1]``.

Along a path each convolution or pooling (kernel ``k``, dilation ``d``, stride ``s``,
padding ``p``) maps ``(rf, jump, start)`` to ``(rf + (d(k-1)) jump, jump s, start - p
jump)``; ceil mode changes how many units there are, never a unit's region. Where paths
merge (Inception's concatenation, a residual sum, a dense layer's concatenation with its
input) a unit's region is the union over the paths: from the smallest start to the
largest end. Layers that leave the map's geometry alone (batch normalisation,
activations, dropout, local response normalisation, a layer called again) keep their
input's field.

Adaptive pooling from ``n`` to ``m`` units uses PyTorch's windows (unit ``i`` averages
input units ``floor(i n / m)`` to ``ceil((i + 1) n / m) - 1``): an identity when ``m ==
n``; an ordinary pooling when the windows are equal and evenly spaced; otherwise the units
are unevenly spaced, ``rf`` is the largest unit's and ``rf_jump`` is empty. A global
pooling (to 1 x 1) is a pooling whose window is the whole map: its unit sees the union of
every unit's region, ``rf = rf_in + (n - 1) jump_in``, and ``rf_jump = jump_in n``. A
flattening only lays the units out in a row: each element is still one unit and keeps
its field (the first element's is reported). A fully connected layer reads every element
of its input, so each of its units sees the union of all their regions, like a global
pooling; the layers after it keep that field. So after global pooling, or after the
first fully connected layer, every row reports the whole region the last feature map
sees, padding included.

The definition these numbers are held to: the field of a unit equals the extent (first
to last non-zero pixel) of the input gradient of that unit when every max pooling is
replaced by an average pooling of the same geometry (and the weights are positive, so that
nothing cancels); ``tests/test_receptive_field.py`` checks it on every network of the
zoo. Two ways to compute it live here:

* :func:`layer_fields`: from a recorded forward pass (:mod:`cnncompare.dataflow`), one
  field per executed leaf layer: the layer table's ``rf``, ``rf_jump``, ``rf_start``.
* :func:`plan_fields`: from a family's spatial plan (:mod:`cnncompare.geometry`), no
  network built: the field after every top-level step or block, with its depth, for the
  chart of field against depth; :func:`receptive_field` gives a configuration's last
  feature map's (the one global pooling or flattening reads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnncompare.dataflow import INPUT, Dataflow, Op, trace
from cnncompare.geometry import Branches, Plan, Step
from cnncompare.registry import as_config, spatial_plan

RF_COLUMNS = ("rf", "rf_jump", "rf_start")
"""The receptive-field columns of the layer table, in order."""


@dataclass(frozen=True)
class Field:
    """The receptive field of every unit along one side of a map (see the module docstring).

    ``units`` is the number of units along that side (1 after global pooling); ``end`` is
    the last input position the map's last unit covers, padding included. ``reach`` is the
    last *image* pixel any of its units can be affected by: a convolution or pooling whose
    windows do not fit the map evenly leaves its last rows out (NiN's 11x11 stride-4
    convolution on 224 px never reads the last 5), so a region can end in the image and
    still not affect the unit there. ``jump`` is None where the units are unevenly spaced
    (an adaptive pooling that stretches a map).
    """

    size: int
    jump: int | None
    start: int
    units: int
    end: int
    reach: int

    @classmethod
    def input(cls, side: int) -> Field:
        """The input image itself: every pixel sees itself."""
        return cls(1, 1, 0, side, side - 1, side - 1)

    @property
    def even(self) -> bool:
        return self.jump is not None

    def region(self, i: int) -> tuple[int, int]:
        """First and last input pixel of unit ``i``'s region (unclipped)."""
        if self.jump is None:
            raise ValueError("the units of this map are unevenly spaced")
        lo = self.start + i * self.jump
        return lo, lo + self.size - 1

    def pixels(self, i: int) -> tuple[int, int]:
        """First and last *image* pixel that can affect unit ``i``: its region clipped to
        the image and to what the map can reach (the gradient definition's extent)."""
        lo, hi = self.region(i)
        return max(0, lo), min(hi, self.reach)

    def window(self, kernel: int, stride: int, padding: int, units: int) -> Field | None:
        """After a convolution or pooling of effective kernel ``kernel`` (``d(k-1)+1``)."""
        if self.jump is None:
            if kernel == 1 and stride == 1 and padding == 0:
                return Field(self.size, None, self.start, units, self.end, self.reach)
            return None
        size = self.size + (kernel - 1) * self.jump
        jump = self.jump * stride
        start = self.start - padding * self.jump
        # The last unit's window ends at input unit `last`; past the map it is padding.
        last = (units - 1) * stride - padding + kernel - 1
        reach = self.reach
        if last < self.units - 1:
            reach = min(reach, self.start + last * self.jump + self.size - 1)
        return Field(size, jump, start, units, start + (units - 1) * jump + size - 1, reach)

    def adaptive(self, units: int) -> Field | None:
        """After an adaptive pooling to ``units`` (PyTorch's windows)."""
        n = self.units
        if units == n:
            return self
        lo = [math.floor(i * n / units) for i in range(units)]
        hi = [math.ceil((i + 1) * n / units) - 1 for i in range(units)]
        widths = {h - low + 1 for low, h in zip(lo, hi, strict=True)}
        steps = {b - a for a, b in zip(lo, lo[1:], strict=False)}
        if len(widths) == 1 and len(steps) <= 1:
            width = widths.pop()
            return self.window(width, steps.pop() if steps else width, 0, units)
        if self.jump is None:
            return None
        size = self.size + (max(widths) - 1) * self.jump
        return Field(size, None, self.start, units, self.end, self.reach)

    def whole(self) -> Field:
        """One unit that sees every unit of this map (global pooling, a linear layer)."""
        jump = None if self.jump is None else self.jump * self.units
        return Field(self.end - self.start + 1, jump, self.start, 1, self.end, self.reach)


def union(fields: Sequence[Field]) -> Field | None:
    """The field of a merge of paths (concatenation or sum): per unit, the union of the
    paths' regions. None where the paths do not line up unit for unit."""
    if len(fields) == 1:
        return fields[0]
    units = {f.units for f in fields}
    jumps = {f.jump for f in fields}
    if len(units) != 1:
        return None
    if len(jumps) != 1 or None in jumps:
        return fields[0] if all(f == fields[0] for f in fields) else None
    start = min(f.start for f in fields)
    last = max(f.start + f.size - 1 for f in fields)  # unit 0's last pixel
    return Field(last - start + 1, jumps.pop(), start, units.pop(), max(f.end for f in fields),
                 max(f.reach for f in fields))


Fields = tuple[Field, Field] | None
"""A map's field along its height and along its width; None where it cannot be known."""


# --------------------------------------------------------------------------------------
# From a recorded forward pass


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _spatial(shape: tuple[int, ...]) -> tuple[int, int] | None:
    return (shape[-2], shape[-1]) if len(shape) == 4 else None


def _module_field(op: Op, fin: Fields) -> Fields:
    """The field after leaf module ``op`` from its input's field ``fin``."""
    m = op.module
    out_hw = _spatial(op.shape)
    if fin is None:
        return None
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and out_hw is not None:
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        pad = m.padding
        if pad == "valid":
            p = (0, 0)
        elif pad == "same":
            p = tuple((d[a] * (k[a] - 1)) // 2 for a in range(2))
        else:
            p = _pair(pad)
        out = tuple(fin[a].window(d[a] * (k[a] - 1) + 1, s[a], p[a], out_hw[a])
                    for a in range(2))
        return None if None in out else out  # type: ignore[return-value]
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and out_hw is not None:
        out = tuple(fin[a].adaptive(out_hw[a]) for a in range(2))
        return None if None in out else out  # type: ignore[return-value]
    if isinstance(m, nn.Linear) and op.input_shapes and _spatial(op.input_shapes[0]) is None:
        return (fin[0].whole(), fin[1].whole())  # every output reads every element
    return _generic_field(op, [fin], [op.input_shapes[0]] if op.input_shapes else [])


def _generic_field(op: Op, fins: list[Fields], in_shapes: list[tuple[int, ...]]) -> Fields:
    """Any other op. Element-wise ops and merges keep (unite) the fields of inputs with the
    same map; a reshape of a map into a vector (flatten, view) keeps each unit's field;
    an op that reduces the map otherwise (a mean over it) sees the whole map; one that
    resizes the map in an unknown way gives None."""
    if any(f is None for f in fins) or not fins:
        return None
    out_hw = _spatial(op.shape)
    in_hw = [_spatial(s) for s in in_shapes] if len(in_shapes) == len(fins) else [None] * len(
        fins)
    if out_hw is not None:
        same = [f for f, hw in zip(fins, in_hw, strict=True) if hw == out_hw]
        if len(same) != len(fins):
            return None
        fins = same
    elif any(hw is not None for hw in in_hw):  # the map is gone
        reshaped = len(in_shapes) == 1 and math.prod(in_shapes[0][1:]) == math.prod(
            op.shape[1:])
        if not reshaped:  # reduced: each output saw all of the map
            fins = [(f[0].whole(), f[1].whole()) for f in fins]  # type: ignore[index]
    h = union([f[0] for f in fins])  # type: ignore[index]
    w = union([f[1] for f in fins])  # type: ignore[index]
    return None if h is None or w is None else (h, w)


def dataflow_fields(flow: Dataflow) -> list[Fields]:
    """The field after every op of ``flow``, in order (None where it cannot be known)."""
    hw = _spatial(flow.input_shape)
    start: Fields = (Field.input(hw[0]), Field.input(hw[1])) if hw else None
    fields: list[Fields] = []

    def of(i: int) -> Fields:
        return start if i == INPUT else fields[i]

    for op in flow.ops:
        if op.kind == "module" and op.inputs:
            fields.append(_module_field(op, of(op.inputs[0])))
        elif op.inputs:
            fields.append(_generic_field(op, [of(i) for i in op.inputs], list(op.input_shapes)))
        else:
            fields.append(None)
    return fields


def _columns(f: Fields) -> dict[str, int | None]:
    """``rf``, ``rf_jump``, ``rf_start`` of a square field; None where the height's and the
    width's differ or the field is unknown."""
    if f is None or f[0] != f[1]:
        return dict.fromkeys(RF_COLUMNS)
    return {"rf": f[0].size, "rf_jump": f[0].jump, "rf_start": f[0].start}


def layer_fields(model: nn.Module, input_shape: tuple[int, ...], *,
                 device: str | torch.device = "meta") -> list[dict[str, Any]]:
    """One row per executed leaf-module call, in execution order: ``layer`` (the dotted
    name, ``(model)`` for a network that is itself a leaf), ``call`` (0 for a module's first
    call) and the :data:`RF_COLUMNS`. ``device``: see :func:`cnncompare.dataflow.trace`."""
    flow = trace(model, input_shape, device=device)
    fields = dataflow_fields(flow)
    return [{"layer": op.name, "call": op.call, **_columns(fields[op.index])}
            for op in flow.ops if op.kind == "module"]


def fill_layer_fields(rows: list[dict[str, Any]], model: nn.Module,
                      input_shape: tuple[int, ...], *,
                      device: str | torch.device = "meta") -> None:
    """Add :data:`RF_COLUMNS` to the layer table's ``rows`` (one per executed leaf call, in
    execution order, keyed by ``layer``): the n-th row of a layer gets its n-th call's.
    A network that cannot be traced on ``device`` (one that reads its input's values on the
    meta device, say) gets empty columns rather than no layer table."""
    try:
        fields = layer_fields(model, input_shape, device=device)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        fields = []
    by_call = {(r["layer"], r["call"]): r for r in fields}
    seen: dict[str, int] = {}
    for row in rows:
        n = seen.get(row["layer"], 0)
        seen[row["layer"]] = n + 1
        found = by_call.get((row["layer"], n), {})
        for c in RF_COLUMNS:
            row[c] = found.get(c)


def last_map_op(flow: Dataflow) -> int | None:
    """The op whose output is the network's last feature map: the input of the first op
    that pools a map adaptively (globally or to a fixed size) or flattens it. None for a
    network that never does."""
    for op in flow.ops:
        if not op.inputs or _spatial(op.input_shapes[0] if op.input_shapes else ()) is None:
            continue
        adaptive = isinstance(op.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
        if adaptive or _spatial(op.shape) is None:
            return op.inputs[0]
    return None


# --------------------------------------------------------------------------------------
# From a spatial plan (no network built)


def _plan_walk(plan: Plan, f: Field) -> tuple[Field, int]:
    """The field after ``plan`` from ``f`` (sides from the steps' own arithmetic) and the
    plan's depth: convolutions on its longest path."""
    depth = 0
    for node in plan:
        f, d = _node(node, f)
        depth += d
    return f, depth


def _node(node: Step | Branches, f: Field) -> tuple[Field, int]:
    if isinstance(node, Step):
        units = node.out_size(f.units)
        out = f.window(node.effective_kernel, node.stride, node.padding, units)
        if out is None or units < 1:
            raise ValueError(f"{node.name or node.kind} has no output for a {f.units} px map")
        return out, int(node.kind == "conv")
    walked = [_plan_walk(path, f) for path in node.paths]
    merged = union([w[0] for w in walked])
    if merged is None:
        raise ValueError(f"the paths of {node.name or 'a block'} do not line up")
    return merged, max(w[1] for w in walked)


def plan_fields(plan: Plan, input_size: int) -> list[dict[str, Any]]:
    """The field after every top-level node of ``plan`` (a step, or a block of branches)
    for a square ``input_size``: ``layer`` (the node's name), ``kind`` (``conv``,
    ``maxpool``, ``avgpool``, or the block's merge: ``add``, ``concat``), ``depth``
    (convolutions on the longest path from the input up to and including the node),
    ``side`` (the output side in units), and :data:`RF_COLUMNS`.

    ``ValueError`` where the plan has no output at that size.
    """
    f, depth, rows = Field.input(input_size), 0, []
    for node in plan:
        f, d = _node(node, f)
        depth += d
        kind = node.kind if isinstance(node, Step) else node.merge
        rows.append({"layer": node.name, "kind": kind, "depth": depth, "side": f.units,
                     "rf": f.size, "rf_jump": f.jump, "rf_start": f.start})
    return rows


def plan_field(plan: Plan, input_size: int) -> Field:
    """The field of the plan's last feature map for a square ``input_size``."""
    return _plan_walk(plan, Field.input(input_size))[0]


def receptive_field(cfg: Any) -> int:
    """The receptive field (px) of a unit of configuration ``cfg``'s last feature map (the
    one global pooling, an adaptive pooling or the flattening reads); ``cfg`` is a
    :class:`~cnncompare.registry.ModelConfig` or a model name at its canonical size."""
    cfg = as_config(cfg)
    return plan_field(spatial_plan(cfg.name, cfg.input_size, cfg.stem), cfg.input_size).size


def field_by_depth(cfgs: Sequence[Any]) -> Any:
    """One row per top-level step or block of each configuration's plan (a
    :class:`~cnncompare.registry.ModelConfig`, or a name at its canonical size): ``model``,
    ``input_size``, then the columns of :func:`plan_fields`. The chart of receptive field
    against depth draws it."""
    import pandas as pd  # the layer table imports this module: keep its import light

    rows = []
    for cfg in cfgs:
        cfg = as_config(cfg)
        for row in plan_fields(spatial_plan(cfg.name, cfg.input_size, cfg.stem),
                               cfg.input_size):
            rows.append({"model": cfg.name, "input_size": cfg.input_size, **row})
    return pd.DataFrame(rows, columns=["model", "input_size", "layer", "kind", "depth", "side",
                                       *RF_COLUMNS])
