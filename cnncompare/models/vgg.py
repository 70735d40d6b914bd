"""VGG (Simonyan and Zisserman, 2014): stacks of 3x3 convolutions, one table of configs.

``vgg11``/``vgg13``/``vgg16``/``vgg19`` are the paper's configurations A, B, D and E;
the ``_bn`` forms add batch normalisation after every convolution (as torchvision does).
At 3x224x224 with 1000 classes the counts equal torchvision's (vgg11 132,863,336; vgg16
138,357,544).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model

PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition"
PAPER_URL = "https://arxiv.org/abs/1409.1556"

# Output channels of each 3x3 convolution; "M" is a 2x2 stride-2 max pooling.
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
ADAPT = (
    "The last max pooling is dropped (four halvings instead of five), the feature map is "
    "averaged to 1x1, and the classifier's hidden layers have 512 x width units instead "
    "of 4096."
)


def _layout(cfg_name: str, small: bool) -> list[int | str]:
    cfg = list(CFGS[cfg_name])
    if small:
        cfg = cfg[:-1]  # drop the fifth pooling
    return cfg


def _plan_for(cfg_name: str):
    def plan(input_size: int, small: bool) -> list[Reduction]:
        return [maxpool(2, 2) if v == "M" else conv(3, 1, 1) for v in _layout(cfg_name, small)]

    return plan


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, pooled: int, last: int, hidden: int,
                 num_classes: int):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(last * pooled * pooled, hidden)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(0.5)),
                    ("fc7", nn.Linear(hidden, hidden)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(0.5)),
                    ("fc8", nn.Linear(hidden, num_classes)),
                ]
            )
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and hidden >= 4096:
                # torchvision's init, made for 4096-wide layers; a narrow classifier keeps
                # PyTorch's default, which N(0, 0.01) would starve.
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def _build(cfg_name: str, batch_norm: bool, *, num_classes, in_channels, input_size, width,
           small) -> VGG:
    layers: list[tuple[str, nn.Module]] = []
    block, idx, c_in = 1, 1, in_channels
    for v in _layout(cfg_name, small):
        if v == "M":
            layers.append((f"pool{block}", nn.MaxPool2d(2, 2)))
            block, idx = block + 1, 1
            continue
        c_out = scale(int(v), width)
        layers.append((f"conv{block}_{idx}", nn.Conv2d(c_in, c_out, 3, padding=1)))
        if batch_norm:
            layers.append((f"bn{block}_{idx}", nn.BatchNorm2d(c_out)))
        layers.append((f"relu{block}_{idx}", nn.ReLU(inplace=True)))
        c_in, idx = c_out, idx + 1
    pooled, hidden = (1, scale(512, width)) if small else (7, scale(4096, width))
    return VGG(nn.Sequential(OrderedDict(layers)), pooled, c_in, hidden, num_classes)


def _register(cfg_name: str, batch_norm: bool) -> None:
    name = cfg_name + ("_bn" if batch_norm else "")
    depth = int(cfg_name[3:])
    ideas = [
        "Depth from stacks of small 3x3 convolutions (two 3x3 see as far as one 5x5)",
        "Uniform blocks: double the channels each time the map is halved",
        "One configuration table describes every depth",
    ]
    if batch_norm:
        ideas.append("Batch normalisation after every convolution (added later, 2015)")
    info = ModelInfo(
        name=name,
        family="VGG",
        year=2014,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=tuple(ideas),
        version=2,  # 2: a narrow classifier keeps PyTorch's default init
        canonical={"input_size": 224, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 32, "in_channels": 3, "num_classes": 10, "width": 0.125},
        adaptation=ADAPT,
        notes=f"{depth} weight layers" + (", batch-normalised" if batch_norm else "") + ".",
    )

    def builder(**kw) -> nn.Module:
        return _build(cfg_name, batch_norm, **kw)

    builder.__name__ = name
    builder.__doc__ = f"VGG-{depth}{' with batch normalisation' if batch_norm else ''}."
    register_model(info, _plan_for(cfg_name))(builder)


for _cfg in CFGS:
    _register(_cfg, batch_norm=False)
    _register(_cfg, batch_norm=True)
