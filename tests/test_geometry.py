"""cnncompare.geometry: the shape formula against PyTorch, branches, the smallest input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnncompare.geometry import (
    Branches,
    Step,
    avgpool,
    conv,
    maxpool,
    out_size,
    shape_arithmetic,
    smallest_input,
    steps,
    walk,
)


def _torch_side(module: nn.Module, n: int) -> int:
    """The side PyTorch gives for an ``n`` x ``n`` input, 0 where it refuses."""
    try:
        with torch.device("meta"):
            return module(torch.empty(1, 1, n, n)).shape[-1]
    except RuntimeError:
        return 0


@pytest.mark.parametrize("step", [
    conv(3, 1, 1), conv(11, 4, 2), conv(7, 2, 3), conv(3, 2, 0, dilation=2),
    conv(3, 1, 2, dilation=2), maxpool(3, 2), maxpool(3, 2, 1), maxpool(3, 2, ceil_mode=True),
    maxpool(2, 2, 1, ceil_mode=True), maxpool(3, 1, 1, ceil_mode=True), avgpool(2, 2),
    avgpool(3, 2, 1, ceil_mode=True),
])
def test_out_size_is_pytorchs(step):
    module = step.conv2d(1, 1) if step.kind == "conv" else step.pool2d()
    for n in range(1, 40):
        assert max(step.out_size(n), 0) == _torch_side(module, n), (step, n)


def test_steps_build_their_modules():
    c = conv(5, 2, 1, dilation=2).conv2d(3, 8, groups=1, bias=False)
    assert (c.kernel_size, c.stride, c.padding, c.dilation, c.bias) == ((5, 5), (2, 2), (1, 1),
                                                                         (2, 2), None)
    p = maxpool(3, 2, 1, ceil_mode=True).pool2d()
    assert isinstance(p, nn.MaxPool2d) and (p.kernel_size, p.stride, p.padding,
                                            p.ceil_mode) == (3, 2, 1, True)
    assert isinstance(avgpool(2, 2).pool2d(), nn.AvgPool2d)
    with pytest.raises(ValueError, match="not a convolution"):
        maxpool(2, 2).conv2d(1, 1)
    with pytest.raises(ValueError, match="not a pooling"):
        conv(3).pool2d()


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "upsample", "kernel": 2}, "step kind must be one of"),
    ({"kind": "conv", "kernel": 0}, "impossible step geometry"),
    ({"kind": "conv", "kernel": 3, "stride": 0}, "impossible step geometry"),
    ({"kind": "avgpool", "kernel": 2, "stride": 2, "dilation": 2}, "no dilation"),
])
def test_impossible_steps_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Step(**kwargs)


def test_names_are_not_geometry():
    assert conv(3, 1, 1, name="a") == conv(3, 1, 1).named("b")
    assert conv(3, 1, 1).named("b").name == "b"


def test_a_chain_walks_with_the_formula():
    # LeNet at 28 px: 28 (5x5, p2), 14, 10, 5.
    plan = (conv(5, 1, 2), maxpool(2, 2), conv(5), maxpool(2, 2))
    assert walk(plan, 28) == [28, 14, 10, 5]
    assert out_size(plan, 28) == 5
    assert walk(plan, 8) == [8, 4, 0, 0]  # conv2's 5x5 kernel does not fit in 4x4
    assert out_size((), 7) == 7


def test_branches_merge_equal_sides_only():
    residual = (conv(3, 2, 1, name="c1"), conv(3, 1, 1, name="c2"))
    block = Branches((residual, (conv(1, 2, name="down"),)), "add", name="block")
    assert block.out_size(56) == 28
    assert block.out_size(1) == 1
    # A stride-2 path beside the identity cannot be added: no output.
    assert Branches((residual, ()), "add").out_size(56) == 0
    assert [s.name for s in steps((conv(7, 2, 3, name="stem"), block))] == [
        "stem", "c1", "c2", "down"]
    with pytest.raises(ValueError, match="merge must be one of"):
        Branches(((),), "multiply")
    with pytest.raises(ValueError, match="at least one path"):
        Branches((), "add")


def test_smallest_input():
    plan = (conv(5), maxpool(2, 2), conv(5), maxpool(2, 2))
    need = smallest_input(lambda n: plan)
    assert need == 16
    assert out_size(plan, need) == 1 and out_size(plan, need - 1) == 0
    with pytest.raises(ValueError, match="no input size up to 8"):
        smallest_input(lambda n: plan, limit=8)


def test_shape_arithmetic_text():
    assert shape_arithmetic(224, 7, 2, 3) == "floor((224 + 2*3 - 7) / 2) + 1 = 112"
    dilated = nn.Conv2d(1, 1, 3, padding=2, dilation=2)(torch.zeros(1, 1, 10, 10)).shape[-1]
    assert shape_arithmetic(10, 3, 1, 2, d=2) == \
        f"floor((10 + 2*2 - (2*(3-1)+1)) / 1) + 1 = {dilated}"
    # Ceil mode: PyTorch drops a last window that would start in the padding.
    real = nn.MaxPool2d(2, 2, 1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape[-1]
    text = shape_arithmetic(5, 2, 2, 1, ceil_mode=True, n_out=real)
    assert text == "ceil((5 + 2*1 - 2) / 2) + 1 = 4 (PyTorch gives 3)"
