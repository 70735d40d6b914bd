"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

* ``alexnet``: torchvision's single-tower variant (64/192/384/256/256 channels, from
  "One weird trick for parallelizing convolutional neural networks"), 61,100,840
  parameters at 3x224x224 with 1000 classes.
* ``alexnet2012``: the paper's two-tower network at 227 px (96/256/384/384/256 channels,
  local response normalisation). The split over two GPUs becomes grouped convolutions
  (``groups=2``) in conv2, conv4 and conv5; conv3 and the classifier see both towers.
  60,965,224 parameters.
* ``alexnet_onetower``: the AlexNet most study notes write: the paper's
  96/256/384/384/256 channels in one tower (no groups, no local response normalisation)
  and padding 2 on the first convolution, so that 224 px gives the paper's 55x55 map.
  62,378,344 parameters at 3x224x224 with 1000 classes.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.geometry import Plan, Step, conv, maxpool
from cnncompare.i18n import N_
from cnncompare.models._common import IMAGENET, scale
from cnncompare.registry import ModelInfo, Preset, register_model

PAPER = "ImageNet Classification with Deep Convolutional Neural Networks"
PAPER_URL = (
    "https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html"
)
KEY_IDEAS = (
    N_("ReLU activations instead of saturating sigmoid/tanh"),
    N_("Dropout in the fully connected layers"),
    N_("Overlapping max pooling (3x3, stride 2)"),
    N_("Data augmentation and training on GPUs"),
)
ADAPT = (
    N_("First convolution 3x3 stride 1 (instead of 11x11 stride 4); 2x2 stride-2 max "
    "pooling (instead of 3x3 stride 2); 3x3 pooled map before the classifier, whose "
    "hidden layers shrink with the width.")
)
PITFALLS = (
    N_("The classifier's input size depends on the image size: 256 x 6 x 6 = 9,216 features "
    "at 227 px, or at 224 px with padding 2 on the first convolution; at 224 px without "
    "padding the last map is 5 x 5 and a hard-coded 9,216 no longer fits."),
    N_("The paper says 224 x 224, but its layer sizes need 227 x 227: (224 - 11) / 4 + 1 = "
    "54.25 is not a whole number, while (227 - 11) / 4 + 1 = 55."),
    N_("The torchvision alexnet has 64, 192, 384, 256 and 256 channels, not the paper's 96, "
    "256, 384, 384 and 256, so its parameter count (61,100,840) is not the paper's "
    "network's."),
    N_("Dropout sits before the first two fully connected layers and is only switched off by "
    "model.eval(): evaluating in training mode gives noisy, lower accuracy."),
    N_("The max poolings overlap (3 x 3 windows, stride 2); a 2 x 2 stride-2 pooling changes "
    "every map size after it."),
)


def _layout(small: bool, first_padding: int) -> Plan:
    """The spatial steps of ``features``: five convolutions, three max poolings.

    The ImageNet stem is an 11x11 stride-4 convolution (torchvision pads it by 2, the
    paper by 0 at 227 px) and 3x3 stride-2 overlapping poolings; the small stem a 3x3
    stride-1 convolution and 2x2 stride-2 poolings.
    """
    first = conv(3, 1, 1) if small else conv(11, 4, first_padding)

    def pool(name: str) -> Step:
        return maxpool(2, 2, name=name) if small else maxpool(3, 2, name=name)

    return (
        first.named("features.conv1"), pool("features.pool1"),
        conv(5, 1, 2, name="features.conv2"), pool("features.pool2"),
        conv(3, 1, 1, name="features.conv3"),
        conv(3, 1, 1, name="features.conv4"),
        conv(3, 1, 1, name="features.conv5"), pool("features.pool5"),
    )


def _plan_tv(input_size: int, small: bool) -> Plan:
    return _layout(small, first_padding=2)


def _plan_2012(input_size: int, small: bool) -> Plan:
    return _layout(small, first_padding=0)


def _lrn() -> nn.LocalResponseNorm:
    """The paper's local response normalisation (n=5, alpha=1e-4, beta=0.75, k=2)."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _features(plan: Plan, in_channels: int, channels: list[int], *,
              groups: dict[str, int] | None = None, lrn_after: tuple[str, ...] = ()
              ) -> nn.Sequential:
    """``features`` from its plan: each convolution ``convN`` followed by ``reluN`` (and
    ``normN`` after the convolutions in ``lrn_after``), each pooling as it is."""
    groups = groups or {}
    layers: list[tuple[str, nn.Module]] = []
    c_in, out_channels = in_channels, iter(channels)
    for step in plan:
        local = step.name.removeprefix("features.")
        if step.kind != "conv":
            layers.append((local, step.pool2d()))
            continue
        c_out, index = next(out_channels), local.removeprefix("conv")
        layers.append((local, step.conv2d(c_in, c_out, groups=groups.get(local, 1))))
        layers.append((f"relu{index}", nn.ReLU(inplace=True)))
        if local in lrn_after:
            layers.append((f"norm{index}", _lrn()))
        c_in = c_out
    return nn.Sequential(OrderedDict(layers))


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


def _with_classifier(feats: nn.Sequential, channels: int, num_classes: int, width: float,
                     small: bool) -> nn.Module:
    """The features followed by the pooling to 3x3 (small inputs) or 6x6 and the classifier."""
    pooled = 3 if small else 6
    return AlexNet(feats, pooled, _classifier(channels * pooled * pooled, scale(4096, width),
                                              num_classes))


@register_model(
    ModelInfo(
        name="alexnet",
        family="AlexNet",
        year=2012,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=KEY_IDEAS,
        canonical=IMAGENET,
        small=Preset(input_size=28, in_channels=1, num_classes=10, width=0.25),
        adaptation=ADAPT,
        notes=N_("torchvision's single-tower variant: 64/192/384/256/256 channels, no LRN."),
        pitfalls=PITFALLS,
    ),
    _plan_tv,
)
def alexnet(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c = [scale(ch, width) for ch in (64, 192, 384, 256, 256)]
    feats = _features(_plan_tv(input_size, small), in_channels, c)
    return _with_classifier(feats, c[4], num_classes, width, small)


@register_model(
    ModelInfo(
        name="alexnet2012",
        family="AlexNet",
        year=2012,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=KEY_IDEAS
        + (N_("Two GPU towers (grouped convolutions) and local response normalisation"),),
        canonical=Preset(input_size=227, in_channels=3, num_classes=1000),
        small=Preset(input_size=28, in_channels=1, num_classes=10, width=0.25),
        adaptation=ADAPT,
        notes=(
            N_("The paper's network: 96/256/384/384/256 channels at 227 px, LRN after conv1 "
            "and conv2, the two-GPU split as groups=2 in conv2, conv4 and conv5. Why 227: "
            "the paper writes 224 x 224, but its first convolution (11 x 11, stride 4, no "
            "padding) gives (224 - 11) / 4 + 1 = 54.25, not a whole number, while 227 gives "
            "exactly the 55 x 55 map the paper reports, then 27, 13 and 6 after the three "
            "poolings. At 224 px this network still runs (PyTorch rounds down to 54), but "
            "its last map is 5 x 5 and the adaptive pooling stretches it to the 6 x 6 the "
            "classifier expects.")
        ),
        pitfalls=PITFALLS,
    ),
    _plan_2012,
)
def alexnet2012(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c = [scale(ch, width, divisor=2) for ch in (96, 256, 384, 384, 256)]
    # The two GPU towers: conv2, conv4 and conv5 see only their own tower's half.
    feats = _features(_plan_2012(input_size, small), in_channels, c,
                      groups={"conv2": 2, "conv4": 2, "conv5": 2}, lrn_after=("conv1", "conv2"))
    return _with_classifier(feats, c[4], num_classes, width, small)


@register_model(
    ModelInfo(
        name="alexnet_onetower",
        family="AlexNet",
        year=2012,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=KEY_IDEAS,
        canonical=IMAGENET,
        small=Preset(input_size=28, in_channels=1, num_classes=10, width=0.25),
        adaptation=ADAPT,
        notes=(
            N_("The AlexNet most study notes write: the paper's 96/256/384/384/256 channels in "
            "one tower, and padding 2 on the first convolution so that a 224 px input gives "
            "the paper's 55 x 55 map (then 27, 13 and 6). It has 62,378,344 parameters at "
            "3 x 224 x 224 with 1000 classes. torchvision's alexnet (61,100,840) keeps the "
            "single tower but narrows it to 64/192/384/256/256 channels, after Krizhevsky's "
            "2014 'One weird trick' paper. The paper's own network, alexnet2012 "
            "(60,965,224), has the same channels split over two GPUs: conv2, conv4 and "
            "conv5 see only their own half, which saves parameters, and it normalises "
            "with LRN. Like the notes, this one has no LRN.")
        ),
        pitfalls=PITFALLS,
    ),
    _plan_tv,
)
def alexnet_onetower(*, num_classes, in_channels, input_size, width, small) -> nn.Module:
    c = [scale(ch, width) for ch in (96, 256, 384, 384, 256)]
    feats = _features(_plan_tv(input_size, small), in_channels, c)
    return _with_classifier(feats, c[4], num_classes, width, small)
