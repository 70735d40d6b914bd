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

from cnncompare.geometry import Plan, avgpool, conv, maxpool, out_size
from cnncompare.i18n import N_
from cnncompare.models._common import scale
from cnncompare.registry import ModelInfo, Preset, register_model

PAPER = "Gradient-Based Learning Applied to Document Recognition"
PAPER_URL = "http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf"


def _padding(input_size: int) -> int:
    # MNIST's 28x28 digits are padded to the 32x32 the paper's first layer expects.
    return 2 if input_size <= 28 else 0


def _layout(input_size: int, classic: bool) -> Plan:
    """The four spatial steps; the textbook form pools by averaging, the modern by max."""
    pool = avgpool if classic else maxpool
    return (conv(5, 1, _padding(input_size), name="conv1"), pool(2, 2, name="pool1"),
            conv(5, name="conv2"), pool(2, 2, name="pool2"))


def _plan_classic(input_size: int, small: bool) -> Plan:
    return _layout(input_size, classic=True)


def _plan_modern(input_size: int, small: bool) -> Plan:
    return _layout(input_size, classic=False)


def _lenet(
    *, classic: bool, num_classes: int, in_channels: int, input_size: int, width: float
) -> nn.Sequential:
    act = nn.Sigmoid if classic else nn.ReLU
    c1, c2 = scale(6, width), scale(16, width)
    f1, f2 = scale(120, width), scale(84, width)
    plan = _layout(input_size, classic)
    conv1, pool1, conv2, pool2 = plan
    side = out_size(plan, input_size)
    return nn.Sequential(
        OrderedDict(
            [
                (conv1.name, conv1.conv2d(in_channels, c1)),
                ("act1", act()),
                (pool1.name, pool1.pool2d()),
                (conv2.name, conv2.conv2d(c1, c2)),
                ("act2", act()),
                (pool2.name, pool2.pool2d()),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(c2 * side * side, f1)),
                ("act3", act()),
                ("fc2", nn.Linear(f1, f2)),
                ("act4", act()),
                ("fc3", nn.Linear(f2, num_classes)),
            ]
        )
    )


_CANON = Preset(input_size=28, in_channels=1, num_classes=10)
_SMALL = Preset(input_size=28, in_channels=1, num_classes=10, width=1.0)
PITFALLS = (
    N_("MNIST's digits are 28 x 28 and the paper's first layer expects 32 x 32: without "
    "padding 2 on the first convolution the map before the classifier is 4 x 4, and the "
    "first linear layer needs 16 x 4 x 4 = 256 inputs instead of 400."),
    N_("Textbook LeNets connect every channel of S2 to every map of C3 and end with a linear "
    "layer; the paper's sparse C3 table and RBF output give other parameter counts."),
    N_("With sigmoid activations the network learns slowly at small learning rates: the "
    "textbook trains it with plain SGD at a learning rate of 0.9, far above what a ReLU "
    "network takes."),
    N_("Flatten before the first linear layer: nn.Linear applied to a 4-D map acts on its "
    "last dimension only and gives a wrong shape instead of an error."),
)
_ADAPT = (
    N_("None needed: LeNet was designed for 32x32 digits. A 28x28 input gets padding 2 on "
    "the first convolution, so both give a 16x5x5 map before the classifier; other sizes "
    "change only the first linear layer's input.")
)


@register_model(
    ModelInfo(
        name="lenet5",
        family="LeNet",
        year=1998,
        paper=PAPER,
        paper_url=PAPER_URL,
        key_ideas=(
            N_("Convolutions with shared weights learn local features"),
            N_("Subsampling (average pooling) between convolutions"),
            N_("Trained end to end by backpropagation"),
        ),
        canonical=_CANON,
        small=_SMALL,
        adaptation=_ADAPT,
        notes=N_("Textbook form: sigmoid activations, average pooling, full C3 connectivity."),
        pitfalls=PITFALLS,
    ),
    _plan_classic,
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
            N_("LeNet-5's layout with modern parts: ReLU and max pooling"),
            N_("Convolutions with shared weights learn local features"),
        ),
        canonical=_CANON,
        small=_SMALL,
        adaptation=_ADAPT,
        notes=N_("Modern form: ReLU activations and max pooling; same shapes as lenet5."),
        pitfalls=PITFALLS,
    ),
    _plan_modern,
)
def lenet(**kw) -> nn.Module:
    kw.pop("small", None)
    return _lenet(classic=False, **kw)
