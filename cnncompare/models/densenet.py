"""DenseNet (Huang, Liu, van der Maaten and Weinberger, 2016).

Inside a dense block every layer receives the concatenation of all earlier feature maps
and adds ``growth_rate`` new channels; transition layers (1x1 convolution, 2x2 average
pooling) halve the channels and the map between blocks. ``densenet121``: blocks of
6, 12, 24 and 16 layers, growth 32, bottleneck 4x; 7,978,856 parameters at 3x224x224.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnncompare.geometry import Branches, Plan, Step, avgpool, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, Preset, register_model

BLOCKS = (6, 12, 24, 16)
"""densenet121: the number of layers in each dense block."""

LAYER_STEPS = {"conv1": conv(1), "conv2": conv(3, 1, 1)}
"""A dense layer's convolutions by module name: 1x1 bottleneck, then 3x3."""

TRANSITION_STEPS = {"conv": conv(1), "pool": avgpool(2, 2)}
"""A transition's 1x1 convolution and 2x2 average pooling by module name."""

PITFALLS = (
    N_("Each dense layer reads the concatenation of the block's input and every earlier "
    "layer's output, so its input channels grow by the growth rate each time; a fixed "
    "channel count fails at the first 1 x 1 convolution."),
    N_("A transition halves the channels (compression 0.5) and the map, with 2 x 2 average "
    "pooling, not max pooling."),
    N_("Every layer is pre-activation (batch normalisation, ReLU, then the convolution), and "
    "the network ends with one more batch normalisation and ReLU before global pooling."),
    N_("The concatenations keep every earlier map alive, so DenseNet-121 needs more "
    "activation memory than its 8 million parameters suggest."),
)


def _stem(small: bool) -> dict[str, Step]:
    """``conv0`` (7x7 stride 2, or 3x3 stride 1 on small inputs) and ``pool0``."""
    return {"conv0": conv(3, 1, 1) if small else conv(7, 2, 3), "pool0": maxpool(3, 2, 1)}


class DenseLayer(nn.Sequential):
    """BN-ReLU-Conv1x1 (to bn_size x growth) then BN-ReLU-Conv3x3 (to growth)."""

    def __init__(self, c_in: int, growth: int, bn_size: int):
        super().__init__(
            OrderedDict(
                [
                    ("norm1", nn.BatchNorm2d(c_in)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("conv1", LAYER_STEPS["conv1"].conv2d(c_in, bn_size * growth, bias=False)),
                    ("norm2", nn.BatchNorm2d(bn_size * growth)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("conv2", LAYER_STEPS["conv2"].conv2d(bn_size * growth, growth, bias=False)),
                ]
            )
        )


class DenseBlock(nn.ModuleDict):
    def __init__(self, n_layers: int, c_in: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(n_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(c_in + i * growth, growth, bn_size)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            OrderedDict(
                [
                    ("norm", nn.BatchNorm2d(c_in)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("conv", TRANSITION_STEPS["conv"].conv2d(c_in, c_out, bias=False)),
                    ("pool", TRANSITION_STEPS["pool"].pool2d()),
                ]
            )
        )


class DenseNet(nn.Module):
    def __init__(self, block_config: tuple[int, ...], *, growth_rate: int = 32,
                 init_features: int = 64, bn_size: int = 4, num_classes: int,
                 in_channels: int, width: float, small: bool):
        super().__init__()
        growth, c = scale(growth_rate, width), scale(init_features, width)
        steps = _stem(small)
        stem = [("conv0", steps["conv0"].conv2d(in_channels, c, bias=False)),
                ("norm0", nn.BatchNorm2d(c)), ("relu0", nn.ReLU(inplace=True)),
                ("pool0", steps["pool0"].pool2d())]
        self.features = nn.Sequential(OrderedDict(stem))
        for i, n_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n_layers, c, growth, bn_size))
            c += n_layers * growth
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.features(x))
        return self.classifier(self.flatten(self.avgpool(x)))


def _plan(input_size: int, small: bool) -> Plan:
    """The stem; each dense layer as its input beside its new maps (concatenated: the
    block's output is its input and every layer's maps); the transitions."""
    nodes: list[Step | Branches] = [step.named(f"features.{name}")
                                    for name, step in _stem(small).items()]
    for i, n_layers in enumerate(BLOCKS, start=1):
        for j in range(1, n_layers + 1):
            layer = f"features.denseblock{i}.denselayer{j}"
            new_maps = tuple(step.named(f"{layer}.{name}") for name, step in LAYER_STEPS.items())
            nodes.append(Branches(((), new_maps), "concat", name=layer))
        if i != len(BLOCKS):
            nodes += [step.named(f"features.transition{i}.{name}")
                      for name, step in TRANSITION_STEPS.items()]
    return tuple(nodes)


@register_model(
    ModelInfo(
        name="densenet121",
        family="DenseNet",
        year=2016,
        paper="Densely Connected Convolutional Networks",
        paper_url="https://arxiv.org/abs/1608.06993",
        key_ideas=(
            N_("Dense connectivity: each layer sees the concatenation of all earlier maps"),
            N_("A small growth rate: every layer adds only a few channels"),
            N_("Transition layers (1x1 conv + 2x2 average pooling) compress between blocks"),
        ),
        version=2,  # 2: the small-input stem keeps one 2x downsampling
        canonical=IMAGENET,
        small=Preset(input_size=32, in_channels=3, num_classes=10, width=0.25),
        adaptation=(
            N_("First convolution 3x3 stride 1 (instead of 7x7 stride 2), then the usual 3x3 "
            "stride-2 max pooling, so a 32 px input reaches the first dense block at 16x16.")
        ),
        notes=N_("Blocks of 6, 12, 24, 16 layers; growth 32; 1x1 bottlenecks of 4 x growth."),
        pitfalls=PITFALLS,
    ),
    _plan,
)
def densenet121(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    return DenseNet(BLOCKS, num_classes=num_classes, in_channels=in_channels,
                    width=width, small=small)
