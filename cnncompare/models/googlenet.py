"""GoogLeNet / Inception v1 (Szegedy et al., 2014).

Nine Inception modules, each four parallel branches (1x1; 1x1 then 3x3; 1x1 then a
"5x5"; 3x3 max pooling then 1x1) concatenated along channels. As in torchvision, every
convolution is followed by batch normalisation, and the "5x5" branch uses a 3x3 kernel
(torchvision kept that slip for its pretrained weights; we keep it so that the parameter
count, 6,624,904 at 3x224x224 without auxiliary heads, matches).

``aux_logits=True`` adds the two auxiliary classifiers after inception4a and 4d; in
training mode the model then returns ``(logits, aux2, aux1)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model

# in -> (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), by module name.
INCEPTIONS: list[tuple[str, tuple[int, int, int, int, int, int]]] = [
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool3", ()),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool4", ()),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
]


class GoogLeNetOutputs(NamedTuple):
    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


def _plan(input_size: int, small: bool) -> list[Reduction]:
    stem = [conv(3, 1, 1), conv(1), conv(3, 1, 1), maxpool(3, 2, ceil_mode=True)] if small else [
        conv(7, 2, 3), maxpool(3, 2, ceil_mode=True), conv(1), conv(3, 1, 1),
        maxpool(3, 2, ceil_mode=True)]
    return stem + [maxpool(3, 2, ceil_mode=True), maxpool(2, 2, ceil_mode=True)]


class BasicConv2d(nn.Sequential):
    """Convolution without bias, batch normalisation, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)),
                    ("bn", nn.BatchNorm2d(c_out, eps=0.001)),
                    ("relu", nn.ReLU(inplace=True)),
                ]
            )
        )


class Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int):
        super().__init__()
        self.branch1 = BasicConv2d(c_in, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(c_in, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(c_in, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(c_in, pp, 1)
        )
        self.out_channels = c1 + c3 + c5 + pp

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, c_in: int, num_classes: int, width: float):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(c_in, scale(128, width), 1)
        self.fc1 = nn.Linear(scale(128, width) * 16, scale(1024, width))
        self.fc2 = nn.Linear(scale(1024, width), num_classes)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.avgpool(x)), 1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, width: float, small: bool,
                 aux_logits: bool = False, dropout: float = 0.2):
        super().__init__()
        c64, c192 = scale(64, width), scale(192, width)
        if small:
            self.conv1 = BasicConv2d(in_channels, c64, 3, padding=1)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, c64, 7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(c64, c64, 1)
        self.conv3 = BasicConv2d(c64, c192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        c_in = c192
        aux_in = {}
        for name, spec in INCEPTIONS:
            if not spec:
                pool = nn.MaxPool2d(3, 2, ceil_mode=True) if name == "maxpool3" else nn.MaxPool2d(
                    2, 2, ceil_mode=True)
                setattr(self, name, pool)
                continue
            block = Inception(c_in, *(scale(c, width) for c in spec))
            setattr(self, name, block)
            c_in = block.out_channels
            aux_in[name] = c_in
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = InceptionAux(aux_in["inception4a"], num_classes, width)
            self.aux2 = InceptionAux(aux_in["inception4d"], num_classes, width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux_logits and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux_logits and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


@register_model(
    ModelInfo(
        name="googlenet",
        family="GoogLeNet",
        year=2014,
        paper="Going Deeper with Convolutions",
        paper_url="https://arxiv.org/abs/1409.4842",
        key_ideas=(
            "Inception module: parallel 1x1, 3x3, 5x5 and pooling branches, concatenated",
            "1x1 convolutions reduce channels before the expensive branches",
            "Global average pooling; auxiliary classifiers during training",
        ),
        version=2,  # 2: the small-input stem keeps one 2x downsampling
        canonical={"input_size": 224, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 28, "in_channels": 1, "num_classes": 10, "width": 0.25},
        adaptation=(
            "Stem is a 3x3 stride-1 convolution (instead of 7x7 stride 2) and only the second "
            "of its two max poolings is kept, so a 28 px map reaches the Inception modules at "
            "14x14 (the ImageNet stem hands them 28x28 from 224)."
        ),
        notes=(
            "torchvision's layout: batch normalisation after every convolution and a 3x3 "
            "kernel in the '5x5' branch. Auxiliary heads off unless aux_logits=True."
        ),
    ),
    _plan,
)
def googlenet(*, num_classes, in_channels, input_size, width, small, aux_logits=False) -> nn.Module:
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, width=width, small=small,
                     aux_logits=aux_logits)
