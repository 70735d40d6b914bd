"""Network in Network (Lin, Chen and Yan, 2013).

Each NiN block is a spatial convolution followed by two 1x1 convolutions (a small
multilayer perceptron at every pixel). The last block outputs one channel per class and
global average pooling replaces the fully connected classifier. Layout as in Dive into
Deep Learning (ch. 8.3): blocks of 96, 256 and 384 channels, then a class block.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model


def _plan(input_size: int, small: bool) -> list[Reduction]:
    first = conv(3, 1, 1) if small else conv(11, 4, 0)
    return [first, maxpool(3, 2), conv(5, 1, 2), maxpool(3, 2), conv(3, 1, 1), maxpool(3, 2),
            conv(3, 1, 1)]


def nin_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """A k x k convolution and two 1x1 convolutions, each followed by ReLU."""
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(c_in, c_out, kernel, stride, padding)),
                ("relu", nn.ReLU(inplace=True)),
                ("mlp1", nn.Conv2d(c_out, c_out, 1)),
                ("relu1", nn.ReLU(inplace=True)),
                ("mlp2", nn.Conv2d(c_out, c_out, 1)),
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
            "1x1 convolutions: a small MLP applied at every pixel",
            "Global average pooling instead of fully connected layers",
            "Far fewer parameters than AlexNet for the same depth of features",
        ),
        canonical={"input_size": 224, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 28, "in_channels": 1, "num_classes": 10, "width": 0.25},
        adaptation="First block 3x3 stride 1 (instead of 11x11 stride 4).",
        notes="Layout of Dive into Deep Learning's NiN; dropout 0.5 before the class block.",
    ),
    _plan,
)
def nin(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c1, c2, c3 = scale(96, width), scale(256, width), scale(384, width)
    k, s, p = (3, 1, 1) if small else (11, 4, 0)
    return nn.Sequential(
        OrderedDict(
            [
                ("block1", nin_block(in_channels, c1, k, s, p)),
                ("pool1", nn.MaxPool2d(3, 2)),
                ("block2", nin_block(c1, c2, 5, 1, 2)),
                ("pool2", nn.MaxPool2d(3, 2)),
                ("block3", nin_block(c2, c3, 3, 1, 1)),
                ("pool3", nn.MaxPool2d(3, 2)),
                ("dropout", nn.Dropout(0.5)),
                ("block4", nin_block(c3, num_classes, 3, 1, 1)),
                ("gap", nn.AdaptiveAvgPool2d((1, 1))),
                ("flatten", nn.Flatten()),
            ]
        )
    )
