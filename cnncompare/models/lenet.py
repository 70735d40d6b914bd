"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998).

Two registered forms, both 61,706 parameters at 1x28x28 (padding 2) or 1x32x32 with 10
classes:

* ``lenet5``: the network as textbooks show it (Dive into Deep Learning, ch. 7.6):
  sigmoid activations and average pooling. The paper's sparse C3 connection table,
  scaled tanh and RBF output layer are left out, as the textbooks do.
* ``lenet``: the modern form, with ReLU and max pooling.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnncompare.models._common import conv, maxpool, scale
from cnncompare.registry import ModelInfo, Reduction, register_model

PAPER = "Gradient-Based Learning Applied to Document Recognition"
PAPER_URL = "http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf"


def _padding(input_size: int) -> int:
    # MNIST's 28x28 digits are padded to the 32x32 the paper's first layer expects.
    return 2 if input_size <= 28 else 0


def _plan(input_size: int, small: bool) -> list[Reduction]:
    return [conv(5, 1, _padding(input_size)), maxpool(2, 2), conv(5), maxpool(2, 2)]


def _spatial_out(input_size: int) -> int:
    from cnncompare.registry import walk_plan

    return walk_plan(_plan(input_size, False), input_size)[-1]


def _lenet(
    *, classic: bool, num_classes: int, in_channels: int, input_size: int, width: float
) -> nn.Sequential:
    act = nn.Sigmoid if classic else nn.ReLU
    pool = (lambda: nn.AvgPool2d(2, 2)) if classic else (lambda: nn.MaxPool2d(2, 2))
    c1, c2 = scale(6, width), scale(16, width)
    f1, f2 = scale(120, width), scale(84, width)
    side = _spatial_out(input_size)
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, c1, 5, padding=_padding(input_size))),
                ("act1", act()),
                ("pool1", pool()),
                ("conv2", nn.Conv2d(c1, c2, 5)),
                ("act2", act()),
                ("pool2", pool()),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(c2 * side * side, f1)),
                ("act3", act()),
                ("fc2", nn.Linear(f1, f2)),
                ("act4", act()),
                ("fc3", nn.Linear(f2, num_classes)),
            ]
        )
    )


_CANON = {"input_size": 28, "in_channels": 1, "num_classes": 10}
_SMALL = {"input_size": 28, "in_channels": 1, "num_classes": 10, "width": 1.0}
_ADAPT = (
    "None needed: LeNet was designed for 32x32 digits. A 28x28 input gets padding 2 on "
    "the first convolution, so both give a 16x5x5 map before the classifier; other sizes "
    "change only the first linear layer's input."
)


@register_model(
    ModelInfo(
        name="lenet5",
        family="LeNet",
        year=1998,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=(
            "Convolutions with shared weights learn local features",
            "Subsampling (average pooling) between convolutions",
            "Trained end to end by backpropagation",
        ),
        canonical=_CANON,
        small=_SMALL,
        adaptation=_ADAPT,
        notes="Textbook form: sigmoid activations, average pooling, full C3 connectivity.",
    ),
    _plan,
)
def lenet5(**kw) -> nn.Module:
    kw.pop("small", None)
    return _lenet(classic=True, **kw)


@register_model(
    ModelInfo(
        name="lenet",
        family="LeNet",
        year=1998,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=(
            "LeNet-5's layout with modern parts: ReLU and max pooling",
            "Convolutions with shared weights learn local features",
        ),
        canonical=_CANON,
        small=_SMALL,
        adaptation=_ADAPT,
        notes="Modern form: ReLU activations and max pooling; same shapes as lenet5.",
    ),
    _plan,
)
def lenet(**kw) -> nn.Module:
    kw.pop("small", None)
    return _lenet(classic=False, **kw)
