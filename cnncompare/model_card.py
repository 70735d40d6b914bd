"""What the model card says beyond :class:`~cnncompare.registry.ModelInfo`: the depth, and
what a given input size does to the network.

* :func:`model_depth`: weighted layers (convolutions and fully connected layers) on the
  longest path from the input to the output, the number in a network's name (VGG-16,
  ResNet-18, DenseNet-121; GoogLeNet's 22; AlexNet's 8). Counted from one forward pass on
  the meta device (:mod:`cnncompare.dataflow`): a shortcut's 1x1 projection is beside
  the path, not on it.
* :func:`size_notes`: whole sentences about what a configuration's input size does that
  the family's adaptation note cannot know: convolutions that run on a 1 x 1 map (VGG at
  28 px: block 5's 3 x 3 kernels meet only padding around their centre), an adaptive
  pooling that stretches or shrinks the last map for the classifier (alexnet2012 at 224
  px: 5 x 5 stretched to 6 x 6), and the rows and columns of the image that no window
  ever reads (NiN at 224 px: the last 5).

The card's texts (key ideas, notes, pitfalls) are data in the family modules.
"""

from __future__ import annotations

import functools

from torch import nn

from cnncompare.dataflow import Dataflow, trace
from cnncompare.geometry import out_size
from cnncompare.i18n import t
from cnncompare.receptive_field import dataflow_fields, last_map_op
from cnncompare.registry import (
    ModelConfig,
    as_config,
    on_meta_device,
    resolve_config,
    spatial_plan,
)


def _flow(cfg: ModelConfig) -> Dataflow:
    with on_meta_device():
        model = cfg.build()
    return trace(model, (1, cfg.in_channels, cfg.input_size, cfg.input_size))


@functools.lru_cache(maxsize=64)
def model_depth(name: str) -> int:
    """Weighted layers on the longest input-to-output path of ``name`` (canonical size)."""
    return _flow(resolve_config(name)).depth()


def _last_side(cfg: ModelConfig, size: int) -> int:
    """The side of ``cfg``'s last feature map at ``size`` px, from its plan (0: too small)."""
    return out_size(spatial_plan(cfg.name, size, cfg.stem), size)


def _names(names: list[str]) -> str:
    return ", ".join(names)


def size_notes(model: ModelConfig | str, **config) -> list[str]:
    """Sentences about what ``model``'s input size does to it (empty when nothing is odd).

    ``model`` is a :class:`~cnncompare.registry.ModelConfig`, or a name plus
    :func:`~cnncompare.registry.resolve_config` arguments.
    """
    cfg = as_config(model, **config)
    size = cfg.input_size
    flow = _flow(cfg)
    fields = dataflow_fields(flow)
    notes: list[str] = []

    lonely: dict[int, list[str]] = {}
    for op in flow.module_ops():
        m = op.module
        if isinstance(m, nn.Conv2d) and op.input_shapes and op.input_shapes[0][-2:] == (1, 1):
            k = m.kernel_size[0]
            if k > 1:
                lonely.setdefault(k, []).append(op.name)
    for k, names in lonely.items():
        layers, padded, total = _names(names), k * k - 1, k * k
        notes.append(t(
            "At {size} px, {layers} run on a 1 x 1 map: {padded} of the {total} positions of "
            "each {k} x {k} kernel meet padding, so these layers act as 1 x 1 convolutions "
            "with extra weights.", size=size, layers=layers, padded=padded, total=total, k=k))

    for op in flow.module_ops():
        if not isinstance(op.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            continue
        n, m, layer = op.input_shapes[0][-1], op.shape[-1], op.name
        if m == n or m == 1:
            continue
        if n < m:
            best = next((s for s in range(size + 1, 4 * size + 64)
                         if _last_side(cfg, s) == m), None)
            if best is None:
                text = t("At {size} px the last feature map is {n} x {n}, and {layer} "
                         "stretches it to the {m} x {m} the classifier expects, so some of "
                         "its positions only repeat a neighbour.", size=size, n=n, layer=layer,
                         m=m)
            else:
                text = t("At {size} px the last feature map is {n} x {n}, and {layer} "
                         "stretches it to the {m} x {m} the classifier expects, so some of "
                         "its positions only repeat a neighbour. At {best} px the map is "
                         "{m} x {m} and nothing is stretched.", size=size, n=n, layer=layer,
                         m=m, best=best)
            notes.append(text)
        else:
            notes.append(t("At {size} px the last feature map is {n} x {n}, and {layer} "
                           "averages it down to the {m} x {m} the classifier expects.",
                           size=size, n=n, layer=layer, m=m))

    index = last_map_op(flow)
    if index is not None and fields[index] is not None:
        reach = fields[index][0].reach
        if reach < size - 1:
            cut = []
            for op in flow.module_ops():
                f_in = fields[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
                f_out = fields[op.index]
                before = f_in[0].reach if f_in is not None else size - 1
                if f_out is not None and f_out[0].reach < before:
                    cut.append(op.name)
            unread, layers = size - 1 - reach, _names(cut)
            notes.append(t(
                "At {size} px the network never reads the last {unread} rows and columns of "
                "the image: the windows of {layers} do not cover their inputs evenly, and "
                "what they leave out is lost.", size=size, unread=unread, layers=layers))
    return notes
