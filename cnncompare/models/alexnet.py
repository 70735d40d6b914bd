"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

* ``alexnet``: torchvision's single-tower variant (64/192/384/256/256 channels, from
  "One weird trick for parallelizing convolutional neural networks"), 61,100,840
  parameters at 3x224x224 with 1000 classes.
* ``alexnet2012``: the paper's two-tower network at 227 px (96/256/384/384/256 channels,
  local response normalisation). The split over two GPUs becomes grouped convolutions
  (``groups=2``) in conv2, conv4 and conv5; conv3 and the classifier see both towers.
  60,965,224 parameters.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model

PAPER = "ImageNet Classification with Deep Convolutional Neural Networks"
PAPER_URL = (
    "https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html"
)
KEY_IDEAS = (
    "ReLU activations instead of saturating sigmoid/tanh",
    "Dropout in the fully connected layers",
    "Overlapping max pooling (3x3, stride 2)",
    "Data augmentation and training on GPUs",
)
ADAPT = (
    "First convolution 3x3 stride 1 (instead of 11x11 stride 4); 2x2 stride-2 max "
    "pooling (instead of 3x3 stride 2); 3x3 pooled map before the classifier, whose "
    "hidden layers shrink with the width."
)


def _plan_tv(input_size: int, small: bool) -> list[Reduction]:
    if small:
        return [conv(3, 1, 1), maxpool(2, 2), conv(5, 1, 2), maxpool(2, 2)] + [
            conv(3, 1, 1)
        ] * 3 + [maxpool(2, 2)]
    return [conv(11, 4, 2), maxpool(3, 2), conv(5, 1, 2), maxpool(3, 2)] + [
        conv(3, 1, 1)
    ] * 3 + [maxpool(3, 2)]


def _plan_2012(input_size: int, small: bool) -> list[Reduction]:
    if small:
        return _plan_tv(input_size, True)
    return [conv(11, 4, 0), maxpool(3, 2), conv(5, 1, 2), maxpool(3, 2)] + [
        conv(3, 1, 1)
    ] * 3 + [maxpool(3, 2)]


def _classifier(in_features: int, hidden: int, num_classes: int, dropout: float = 0.5):
    return nn.Sequential(
        OrderedDict(
            [
                ("drop6", nn.Dropout(dropout)),
                ("fc6", nn.Linear(in_features, hidden)),
                ("relu6", nn.ReLU(inplace=True)),
                ("drop7", nn.Dropout(dropout)),
                ("fc7", nn.Linear(hidden, hidden)),
                ("relu7", nn.ReLU(inplace=True)),
                ("fc8", nn.Linear(hidden, num_classes)),
            ]
        )
    )


class AlexNet(nn.Module):
    """Features, a fixed-size adaptive average pool, and a three-layer classifier."""

    def __init__(self, features: nn.Sequential, pooled: int, classifier: nn.Module):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.flatten = nn.Flatten()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def _features(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


@register_model(
    ModelInfo(
        name="alexnet",
        family="AlexNet",
        year=2012,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=KEY_IDEAS,
        canonical={"input_size": 224, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 28, "in_channels": 1, "num_classes": 10, "width": 0.25},
        adaptation=ADAPT,
        notes="torchvision's single-tower variant: 64/192/384/256/256 channels, no LRN.",
    ),
    _plan_tv,
)
def alexnet(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c = [scale(ch, width) for ch in (64, 192, 384, 256, 256)]
    k1, s1, p1 = (3, 1, 1) if small else (11, 4, 2)
    pool = (lambda: nn.MaxPool2d(2, 2)) if small else (lambda: nn.MaxPool2d(3, 2))
    feats = _features(
        [
            ("conv1", nn.Conv2d(in_channels, c[0], k1, s1, p1)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", pool()),
            ("conv2", nn.Conv2d(c[0], c[1], 5, padding=2)),
            ("relu2", nn.ReLU(inplace=True)),
            ("pool2", pool()),
            ("conv3", nn.Conv2d(c[1], c[2], 3, padding=1)),
            ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(c[2], c[3], 3, padding=1)),
            ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(c[3], c[4], 3, padding=1)),
            ("relu5", nn.ReLU(inplace=True)),
            ("pool5", pool()),
        ]
    )
    pooled = 3 if small else 6
    hidden = scale(4096, width)
    return AlexNet(feats, pooled, _classifier(c[4] * pooled * pooled, hidden, num_classes))


@register_model(
    ModelInfo(
        name="alexnet2012",
        family="AlexNet",
        year=2012,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=KEY_IDEAS
        + ("Two GPU towers (grouped convolutions) and local response normalisation",),
        canonical={"input_size": 227, "in_channels": 3, "num_classes": 1000},
        small={"input_size": 28, "in_channels": 1, "num_classes": 10, "width": 0.25},
        adaptation=ADAPT,
        notes=(
            "The paper's network: 96/256/384/384/256 channels at 227 px, LRN after conv1 "
            "and conv2, the two-GPU split as groups=2 in conv2, conv4 and conv5."
        ),
    ),
    _plan_2012,
)
def alexnet2012(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c = [scale(ch, width, divisor=2) for ch in (96, 256, 384, 384, 256)]
    k1, s1, p1 = (3, 1, 1) if small else (11, 4, 0)
    pool = (lambda: nn.MaxPool2d(2, 2)) if small else (lambda: nn.MaxPool2d(3, 2))

    def lrn():
        return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)

    feats = _features(
        [
            ("conv1", nn.Conv2d(in_channels, c[0], k1, s1, p1)),
            ("relu1", nn.ReLU(inplace=True)),
            ("norm1", lrn()),
            ("pool1", pool()),
            ("conv2", nn.Conv2d(c[0], c[1], 5, padding=2, groups=2)),
            ("relu2", nn.ReLU(inplace=True)),
            ("norm2", lrn()),
            ("pool2", pool()),
            ("conv3", nn.Conv2d(c[1], c[2], 3, padding=1)),
            ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(c[2], c[3], 3, padding=1, groups=2)),
            ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(c[3], c[4], 3, padding=1, groups=2)),
            ("relu5", nn.ReLU(inplace=True)),
            ("pool5", pool()),
        ]
    )
    pooled = 3 if small else 6
    hidden = scale(4096, width)
    return AlexNet(feats, pooled, _classifier(c[4] * pooled * pooled, hidden, num_classes))
