"""VGG (Simonyan and Zisserman, 2014): stacks of 3x3 convolutions, one table of configs.

``vgg11``/``vgg13``/``vgg16``/``vgg19`` are the paper's configurations A, B, D and E;
the ``_bn`` forms add batch normalisation after every convolution (as torchvision does).
At 3x224x224 with 1000 classes the counts equal torchvision's (vgg11 132,863,336; vgg16
138,357,544).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.geometry import Plan, Step, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, PlanFunction, Preset, register_model

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
    N_("The last max pooling is dropped (four halvings instead of five), the feature map is "
    "averaged to 1x1, and the classifier's hidden layers have 512 x width units instead "
    "of 4096.")
)

PITFALLS = (
    N_("Configurations A, B, D and E (VGG-11, 13, 16 and 19) differ only in how many "
    "convolutions each block has; copying the wrong list gives another depth with the "
    "same shapes, so nothing fails."),
    N_("Every 3 x 3 convolution needs padding 1; without it each one shrinks the map by two "
    "pixels and the 7 x 7 map before the classifier is lost."),
    N_("The classifier reads 512 x 7 x 7 = 25,088 features at 224 px; a 32 px image leaves a "
    "1 x 1 map after five poolings, so a classifier sized for 7 x 7 fails unless an "
    "adaptive pooling (or a smaller classifier) is used."),
    N_("Most parameters are in the classifier: in VGG-16, 123,642,856 of 138,357,544 are in "
    "its three linear layers."),
    N_("The versions with batch normalisation (vgg16_bn) are a later addition, not the "
    "paper's; they train much more easily from scratch."),
)


def _layout(cfg_name: str, small: bool) -> list[tuple[int | None, Step]]:
    """``(out_channels, step)`` for every entry of the config, in order.

    A number is a 3x3 padding-1 convolution ``features.conv{block}_{i}`` to that many
    channels (at width 1); ``"M"`` is the 2x2 stride-2 max pooling ``features.pool{block}``
    that ends block ``block``. The small stem drops the fifth pooling.
    """
    cfg = CFGS[cfg_name][:-1] if small else CFGS[cfg_name]
    layout: list[tuple[int | None, Step]] = []
    block, idx = 1, 1
    for v in cfg:
        if v == "M":
            layout.append((None, maxpool(2, 2, name=f"features.pool{block}")))
            block, idx = block + 1, 1
        else:
            layout.append((int(v), conv(3, 1, 1, name=f"features.conv{block}_{idx}")))
            idx += 1
    return layout


def _plan_for(cfg_name: str) -> PlanFunction:
    def plan(input_size: int, small: bool) -> Plan:
        return tuple(step for _, step in _layout(cfg_name, small))

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
    c_in = in_channels
    for channels, step in _layout(cfg_name, small):
        local = step.name.removeprefix("features.")
        if channels is None:
            layers.append((local, step.pool2d()))
            continue
        c_out, index = scale(channels, width), local.removeprefix("conv")  # "1_2"
        layers.append((local, step.conv2d(c_in, c_out)))
        if batch_norm:
            layers.append((f"bn{index}", nn.BatchNorm2d(c_out)))
        layers.append((f"relu{index}", nn.ReLU(inplace=True)))
        c_in = c_out
    pooled, hidden = (1, scale(512, width)) if small else (7, scale(4096, width))
    return VGG(nn.Sequential(OrderedDict(layers)), pooled, c_in, hidden, num_classes)


def _register(cfg_name: str, batch_norm: bool) -> None:
    name = cfg_name + ("_bn" if batch_norm else "")
    depth = int(cfg_name[3:])
    ideas = [
        N_("Depth from stacks of small 3x3 convolutions (two 3x3 see as far as one 5x5)"),
        N_("Uniform blocks: double the channels each time the map is halved"),
        N_("One configuration table describes every depth"),
    ]
    if batch_norm:
        ideas.append(N_("Batch normalisation after every convolution (added later, 2015)"))
    info = ModelInfo(
        name=name,
        family="VGG",
        year=2014,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=tuple(ideas),
        version=2,  # 2: a narrow classifier keeps PyTorch's default init
        canonical=IMAGENET,
        small=Preset(input_size=32, in_channels=3, num_classes=10, width=0.125),
        adaptation=ADAPT,
        notes=(N_("{depth} weight layers, batch-normalised.", depth=depth) if batch_norm
               else N_("{depth} weight layers.", depth=depth)),
        pitfalls=PITFALLS,
    )

    def builder(**kw) -> nn.Module:
        return _build(cfg_name, batch_norm, **kw)

    builder.__name__ = name
    builder.__doc__ = f"VGG-{depth}{' with batch normalisation' if batch_norm else ''}."
    register_model(info, _plan_for(cfg_name))(builder)


for _cfg in CFGS:
    _register(_cfg, batch_norm=False)
    _register(_cfg, batch_norm=True)
