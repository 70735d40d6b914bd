"""ResNet (He, Zhang, Ren and Sun, 2015): residual blocks with identity shortcuts.

Configuration as data: a block type and the number of blocks in each of four stages.
``resnet18``/``resnet34`` use basic blocks (two 3x3 convolutions), ``resnet50`` uses
bottlenecks (1x1, 3x3, 1x1 with 4x expansion; stride on the 3x3, as torchvision's v1.5).
At 3x224x224 with 1000 classes the counts equal torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """A 1x1 projection where the shape changes; the identity otherwise."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        OrderedDict(
            [("conv", nn.Conv2d(c_in, c_out, 1, stride, bias=False)), ("bn", nn.BatchNorm2d(c_out))]
        )
    )


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], *,
                 num_classes: int, in_channels: int, width: float, small: bool):
        super().__init__()
        c = scale(64, width)
        if small:
            self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, c, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        c_in = c
        for i, n_blocks in enumerate(layers):
            planes = scale(64 * 2**i, width)
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c_in, planes, stride))
                c_in = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _plan(input_size: int, small: bool) -> list[Reduction]:
    stem = [conv(3, 1, 1)] if small else [conv(7, 2, 3), maxpool(3, 2, 1)]
    return stem + [conv(3, 2, 1)] * 3


ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


def _register(name: str) -> None:
    block, layers = ARCHS[name]
    kind = "basic blocks" if block is BasicBlock else "bottleneck blocks"
    ideas = [
        "Residual shortcuts: each block learns a change to its input, x + F(x)",
        "Batch normalisation after every convolution",
        "Very deep networks that still train (gradients flow through the shortcuts)",
    ]
    if block is Bottleneck:
        ideas.append("Bottleneck blocks: 1x1 reduce, 3x3, 1x1 expand")
    info = ModelInfo(
        name=name,
        family="ResNet",
        year=2015,
        paper="Deep Residual Learning for Image Recognition",
        paper_url="https://arxiv.org/abs/1512.03385",
        key_ideas=tuple(ideas),
        canonical={"input_size": 224, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 32, "in_channels": 3, "num_classes": 10, "width": 0.25},
        adaptation="First convolution 3x3 stride 1 (instead of 7x7 stride 2), no max pooling.",
        notes=f"Stages of {layers} {kind}; stride 2 on the 3x3 convolution (v1.5).",
    )

    def builder(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
        return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels,
                      width=width, small=small)

    builder.__name__ = name
    register_model(info, _plan)(builder)


for _name in ARCHS:
    _register(_name)
