"""Network in Network (Lin, Chen and Yan, 2013).

Each NiN block is a spatial convolution followed by two 1x1 convolutions (a small
multilayer perceptron at every pixel). The last block outputs one channel per class and
global average pooling replaces the fully connected classifier. Layout as in Dive into
Deep Learning (ch. 8.3): blocks of 96, 256 and 384 channels, then a class block.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.geometry import Plan, Step, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, Preset, register_model


def _first_conv(small: bool) -> Step:
    """11x11 stride 4 on ImageNet inputs, 3x3 stride 1 on small ones."""
    return conv(3, 1, 1) if small else conv(11, 4, 0)


MLP = conv(1)
"""The two 1x1 convolutions of every block: a small MLP at each pixel."""

PITFALLS = (
    N_("The 1 x 1 layers of a block are convolutions with kernel_size=1, not linear layers: "
    "they apply the same small network at every pixel and keep the map."),
    N_("The last block must output one channel per class and be followed by global average "
    "pooling to 1 x 1 and a flatten; there is no fully connected classifier."),
    N_("The first block's 11 x 11 stride-4 convolution without padding does not fit a 224 px "
    "image evenly: (224 - 11) / 4 is not whole, and together with the first pooling the "
    "last 5 rows and columns of the image are never read."),
    N_("Dropout goes before the class block, and like every dropout it is only switched off "
    "by model.eval()."),
)


def _layout(small: bool) -> list[tuple[str, Step]]:
    """``(module name, step)``: each block's first convolution, and the poolings."""
    return [
        ("block1", _first_conv(small)),
        ("pool1", maxpool(3, 2)),
        ("block2", conv(5, 1, 2)),
        ("pool2", maxpool(3, 2)),
        ("block3", conv(3, 1, 1)),
        ("pool3", maxpool(3, 2)),
        ("block4", conv(3, 1, 1)),
    ]


def _block_steps(first: Step, prefix: str) -> tuple[Step, Step, Step]:
    """A block's three convolutions: ``first`` and the two 1x1 ``mlp`` layers."""
    return first.named(f"{prefix}.conv"), MLP.named(f"{prefix}.mlp1"), MLP.named(f"{prefix}.mlp2")


def _plan(input_size: int, small: bool) -> Plan:
    plan: list[Step] = []
    for name, step in _layout(small):
        plan += _block_steps(step, name) if step.kind == "conv" else [step.named(name)]
    return tuple(plan)


def nin_block(c_in: int, c_out: int, first: Step) -> nn.Sequential:
    """The convolution ``first`` and two 1x1 convolutions, each followed by ReLU."""
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", first.conv2d(c_in, c_out)),
                ("relu", nn.ReLU(inplace=True)),
                ("mlp1", MLP.conv2d(c_out, c_out)),
                ("relu1", nn.ReLU(inplace=True)),
                ("mlp2", MLP.conv2d(c_out, c_out)),
                ("relu2", nn.ReLU(inplace=True)),
            ]
        )
    )


@register_model(
    ModelInfo(
        name="nin",
        family="NiN",
        year=2013,
        paper="Network In Network",
        paper_url="https://arxiv.org/abs/1312.4400",
        key_ideas=(
            N_("1x1 convolutions: a small MLP applied at every pixel"),
            N_("Global average pooling instead of fully connected layers"),
            N_("Far fewer parameters than AlexNet for the same depth of features"),
        ),
        canonical=IMAGENET,
        small=Preset(input_size=28, in_channels=1, num_classes=10, width=0.25),
        adaptation=N_("First block 3x3 stride 1 (instead of 11x11 stride 4)."),
        notes=N_("Layout of Dive into Deep Learning's NiN; dropout 0.5 before the class block."),
        pitfalls=PITFALLS,
    ),
    _plan,
)
def nin(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    # Output channels of block1..block4; the class block gives one map per class.
    widths = iter([scale(96, width), scale(256, width), scale(384, width), num_classes])
    layers: list[tuple[str, nn.Module]] = []
    c_in = in_channels
    for name, step in _layout(small):
        if step.kind != "conv":
            layers.append((name, step.pool2d()))
            continue
        if name == "block4":
            layers.append(("dropout", nn.Dropout(0.5)))
        c_out = next(widths)
        layers.append((name, nin_block(c_in, c_out, step)))
        c_in = c_out
    layers += [("gap", nn.AdaptiveAvgPool2d((1, 1))), ("flatten", nn.Flatten())]
    return nn.Sequential(OrderedDict(layers))
