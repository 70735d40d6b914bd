"""ResNet (He, Zhang, Ren and Sun, 2015): residual blocks with identity shortcuts.

Configuration as data: a block type and the number of blocks in each of four stages.
``resnet18``/``resnet34`` use basic blocks (two 3x3 convolutions), ``resnet50`` uses
bottlenecks (1x1, 3x3, 1x1 with 4x expansion; stride on the 3x3, as torchvision's v1.5).
At 3x224x224 with 1000 classes the counts equal torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from torch import Tensor, nn

from cnncompare.geometry import Branches, Plan, Step, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, PlanFunction, Preset, register_model

PITFALLS = (
    N_("When a stage halves the map and changes the channels, the shortcut needs a 1 x 1 "
    "convolution with stride 2 (and batch normalisation); an identity shortcut then fails "
    "with a shape mismatch at the addition."),
    N_("The last ReLU of a block comes after the addition, relu(F(x) + x), not inside F "
    "before it."),
    N_("Convolutions followed by batch normalisation need no bias (bias=False): the "
    "normalisation subtracts the mean and cancels it."),
    N_("In torchvision, ResNet-50 (v1.5) puts the stride on the 3 x 3 convolution of a "
    "bottleneck, the paper on the first 1 x 1: the same parameters, different MACs and "
    "accuracy."),
    N_("On 32 px images the 7 x 7 stride-2 stem and the max pooling leave a 1 x 1 map in the "
    "last stage; CIFAR versions use a 3 x 3 stride-1 stem without pooling."),
)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first with the block's stride) beside the shortcut."""

    expansion = 1

    @staticmethod
    def steps(stride: int) -> dict[str, Step]:
        """The residual path's convolutions by module name."""
        return {"conv1": conv(3, stride, 1), "conv2": conv(3, 1, 1)}

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        steps = self.steps(stride)
        self.conv1 = steps["conv1"].conv2d(c_in, planes, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = steps["conv2"].conv2d(planes, planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 with the block's stride, 1x1 expand (x4), beside the shortcut."""

    expansion = 4

    @staticmethod
    def steps(stride: int) -> dict[str, Step]:
        """The residual path's convolutions by module name."""
        return {"conv1": conv(1), "conv2": conv(3, stride, 1), "conv3": conv(1)}

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        steps = self.steps(stride)
        self.conv1 = steps["conv1"].conv2d(c_in, planes, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = steps["conv2"].conv2d(planes, planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = steps["conv3"].conv2d(planes, c_out, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut_step(c_in: int, c_out: int, stride: int) -> Step | None:
    """The shortcut's 1x1 projection where the shape changes; None for the identity."""
    return None if stride == 1 and c_in == c_out else conv(1, stride)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """``downsample``: the projection (convolution and batch norm), or None."""
    step = _shortcut_step(c_in, c_out, stride)
    if step is None:
        return None
    return nn.Sequential(
        OrderedDict([("conv", step.conv2d(c_in, c_out, bias=False)),
                     ("bn", nn.BatchNorm2d(c_out))])
    )


Block = type[BasicBlock] | type[Bottleneck]


def _stem(small: bool) -> dict[str, Step | None]:
    """The stem's steps by module name; the small stem has no max pooling (None)."""
    if small:
        return {"conv1": conv(3, 1, 1), "maxpool": None}
    return {"conv1": conv(7, 2, 3), "maxpool": maxpool(3, 2, 1)}


def _stages(block: Block, layers: list[int], width: float
            ) -> Iterator[tuple[str, int, int, int]]:
    """``(module name, c_in, planes, stride)`` of every block, stage by stage.

    Stage ``i`` has ``planes = 64 * 2**i`` (times the width); its first block halves the
    map, except in the first stage, which follows the stem's downsampling.
    """
    c_in = scale(64, width)
    for i, n_blocks in enumerate(layers):
        planes = scale(64 * 2**i, width)
        for j in range(n_blocks):
            yield f"layer{i + 1}.{j}", c_in, planes, 2 if (i > 0 and j == 0) else 1
            c_in = planes * block.expansion


class ResNet(nn.Module):
    def __init__(self, block: Block, layers: list[int], *, num_classes: int, in_channels: int,
                 width: float, small: bool):
        super().__init__()
        c = scale(64, width)
        stem = _stem(small)
        self.conv1 = stem["conv1"].conv2d(in_channels, c, bias=False)
        self.maxpool = nn.Identity() if stem["maxpool"] is None else stem["maxpool"].pool2d()
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        stages: dict[str, list[nn.Module]] = {}
        for name, c_in, planes, stride in _stages(block, layers, width):
            stages.setdefault(name.split(".")[0], []).append(block(c_in, planes, stride))
        for stage, blocks in stages.items():
            setattr(self, stage, nn.Sequential(*blocks))
        c_last = scale(64 * 2 ** (len(layers) - 1), width) * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_last, num_classes)
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


def _plan_for(block: Block, layers: list[int]) -> PlanFunction:
    """The plan: the stem, then each block as its residual path beside its shortcut."""

    def plan(input_size: int, small: bool) -> Plan:
        nodes: list[Step | Branches] = [step.named(name) for name, step in _stem(small).items()
                                        if step is not None]
        # Whether a shortcut projects does not depend on the width: plan at width 1.
        for name, c_in, planes, stride in _stages(block, layers, 1.0):
            residual = tuple(step.named(f"{name}.{conv_name}")
                             for conv_name, step in block.steps(stride).items())
            projection = _shortcut_step(c_in, planes * block.expansion, stride)
            shortcut = () if projection is None else (
                projection.named(f"{name}.downsample.conv"),)
            nodes.append(Branches((residual, shortcut), "add", name=name))
        return tuple(nodes)

    return plan


ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


def _register(name: str) -> None:
    block, layers = ARCHS[name]
    ideas = [
        N_("Residual shortcuts: each block learns a change to its input, x + F(x)"),
        N_("Batch normalisation after every convolution"),
        N_("Very deep networks that still train (gradients flow through the shortcuts)"),
    ]
    if block is Bottleneck:
        ideas.append(N_("Bottleneck blocks: 1x1 reduce, 3x3, 1x1 expand"))
    info = ModelInfo(
        name=name,
        family="ResNet",
        year=2015,
        paper="Deep Residual Learning for Image Recognition",
        paper_url="https://arxiv.org/abs/1512.03385",
        key_ideas=tuple(ideas),
        canonical=IMAGENET,
        small=Preset(input_size=32, in_channels=3, num_classes=10, width=0.25),
        adaptation=N_("First convolution 3x3 stride 1 (instead of 7x7 stride 2), no max "
                      "pooling."),
        notes=(N_("Stages of {layers} basic blocks; stride 2 on the 3x3 convolution (v1.5).",
                  layers=layers) if block is BasicBlock else
               N_("Stages of {layers} bottleneck blocks; stride 2 on the 3x3 convolution "
                  "(v1.5).", layers=layers)),
        pitfalls=PITFALLS,
    )

    def builder(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
        return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels,
                      width=width, small=small)

    builder.__name__ = name
    register_model(info, _plan_for(block, layers))(builder)


for _name in ARCHS:
    _register(_name)
