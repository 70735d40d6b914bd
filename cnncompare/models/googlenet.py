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

from cnncompare.geometry import Branches, Plan, Step, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, Preset, register_model

# After the stem, by module name: an Inception module's output channels (1x1, 3x3
# reduce, 3x3, 5x5 reduce, 5x5, pool projection), or a max pooling between stages.
INCEPTIONS: list[tuple[str, tuple[int, int, int, int, int, int] | Step]] = [
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool3", maxpool(3, 2, ceil_mode=True)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool4", maxpool(2, 2, ceil_mode=True)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
]

# The four branches of every Inception module: 1x1; 1x1 then 3x3; 1x1 then the "5x5"
# (3x3, as in torchvision); 3x3 stride-1 max pooling then a 1x1 projection.
BRANCHES: tuple[tuple[Step, ...], ...] = (
    (conv(1),),
    (conv(1), conv(3, 1, 1)),
    (conv(1), conv(3, 1, 1)),
    (maxpool(3, 1, 1, ceil_mode=True), conv(1)),
)

PITFALLS = (
    N_("In torchvision, GoogLeNet uses a 3 x 3 kernel in the branch the paper calls 5 x 5 (kept "
    "for its pretrained weights); a true 5 x 5 branch has more parameters than "
    "torchvision's 6,624,904."),
    N_("The four branches must keep the map's size (padding 1 for a 3 x 3 kernel, 2 for a "
    "5 x 5, and a stride-1 3 x 3 max pooling with padding 1), or torch.cat fails."),
    N_("The max poolings between stages round up (ceil_mode=True): at 224 px the first one "
    "gives 56 x 56, and rounding down gives 55 x 55 and different sizes after it."),
    N_("The two auxiliary classifiers only run in training mode, their losses weighted by "
    "0.3; in eval mode the network returns the main logits only."),
)


class GoogLeNetOutputs(NamedTuple):
    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


def _stem(small: bool) -> list[tuple[str, Step | None]]:
    """The stem's steps by module name; the small stem has no ``maxpool1`` (None)."""
    return [
        ("conv1", conv(3, 1, 1) if small else conv(7, 2, 3)),
        ("maxpool1", None if small else maxpool(3, 2, ceil_mode=True)),
        ("conv2", conv(1)),
        ("conv3", conv(3, 1, 1)),
        ("maxpool2", maxpool(3, 2, ceil_mode=True)),
    ]


def _module_path(name: str, step: Step) -> str:
    """A convolution step is performed by the ``conv`` inside a :class:`BasicConv2d`."""
    return f"{name}.conv" if step.kind == "conv" else name


def _inception_plan(name: str) -> Branches:
    """Inception module ``name`` as four paths merged by concatenation.

    A branch of one step is that step's module; a longer one is an ``nn.Sequential``.
    """
    paths = []
    for i, branch in enumerate(BRANCHES, start=1):
        prefix = f"{name}.branch{i}"
        if len(branch) == 1:
            paths.append((branch[0].named(_module_path(prefix, branch[0])),))
        else:
            paths.append(tuple(step.named(_module_path(f"{prefix}.{j}", step))
                               for j, step in enumerate(branch)))
    return Branches(tuple(paths), "concat", name=name)


def _plan(input_size: int, small: bool) -> Plan:
    plan: list[Step | Branches] = [step.named(_module_path(name, step))
                                   for name, step in _stem(small) if step is not None]
    for name, spec in INCEPTIONS:
        plan.append(spec.named(name) if isinstance(spec, Step) else _inception_plan(name))
    return tuple(plan)


class BasicConv2d(nn.Sequential):
    """The convolution ``step`` without bias, batch normalisation, ReLU."""

    def __init__(self, c_in: int, c_out: int, step: Step):
        super().__init__(
            OrderedDict(
                [
                    ("conv", step.conv2d(c_in, c_out, bias=False)),
                    ("bn", nn.BatchNorm2d(c_out, eps=0.001)),
                    ("relu", nn.ReLU(inplace=True)),
                ]
            )
        )


class Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int):
        super().__init__()
        (b1,), (b2a, b2b), (b3a, b3b), (b4_pool, b4_proj) = BRANCHES
        self.branch1 = BasicConv2d(c_in, c1, b1)
        self.branch2 = nn.Sequential(BasicConv2d(c_in, c3r, b2a), BasicConv2d(c3r, c3, b2b))
        self.branch3 = nn.Sequential(BasicConv2d(c_in, c5r, b3a), BasicConv2d(c5r, c5, b3b))
        self.branch4 = nn.Sequential(b4_pool.pool2d(), BasicConv2d(c_in, pp, b4_proj))
        self.out_channels = c1 + c3 + c5 + pp

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, c_in: int, num_classes: int, width: float):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(c_in, scale(128, width), conv(1))
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
        stem = dict(_stem(small))
        self.conv1 = BasicConv2d(in_channels, c64, stem["conv1"])
        self.maxpool1 = nn.Identity() if stem["maxpool1"] is None else stem["maxpool1"].pool2d()
        self.conv2 = BasicConv2d(c64, c64, stem["conv2"])
        self.conv3 = BasicConv2d(c64, c192, stem["conv3"])
        self.maxpool2 = stem["maxpool2"].pool2d()
        c_in = c192
        aux_in = {}
        for name, spec in INCEPTIONS:
            if isinstance(spec, Step):
                setattr(self, name, spec.pool2d())
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
            N_("Inception module: parallel 1x1, 3x3, 5x5 and pooling branches, concatenated"),
            N_("1x1 convolutions reduce channels before the expensive branches"),
            N_("Global average pooling; auxiliary classifiers during training"),
        ),
        version=2,  # 2: the small-input stem keeps one 2x downsampling
        canonical=IMAGENET,
        small=Preset(input_size=28, in_channels=1, num_classes=10, width=0.25),
        adaptation=(
            N_("Stem is a 3x3 stride-1 convolution (instead of 7x7 stride 2) and only the second "
            "of its two max poolings is kept, so a 28 px map reaches the Inception modules at "
            "14x14 (the ImageNet stem hands them 28x28 from 224).")
        ),
        notes=(
            N_("torchvision's layout: batch normalisation after every convolution and a 3x3 "
            "kernel in the '5x5' branch. Auxiliary heads off unless aux_logits=True.")
        ),
        pitfalls=PITFALLS,
    ),
    _plan,
)
def googlenet(*, num_classes, in_channels, input_size, width, small, aux_logits=False) -> nn.Module:
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, width=width, small=small,
                     aux_logits=aux_logits)
