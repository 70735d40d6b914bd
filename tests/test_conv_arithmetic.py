"""The convolution arithmetic explorer: its numbers against PyTorch, its page in AppTest."""

from __future__ import annotations

import itertools

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from cnncompare import conv_arithmetic as CA
from tests.conftest import REPO

PAGE = str(REPO / "views" / "conv_arithmetic.py")


def _module(layer: CA.Layer) -> nn.Module:
    if layer.kind == "conv":
        return nn.Conv2d(1, 1, layer.kernel, layer.stride, layer.padding, layer.dilation,
                         bias=False)
    if layer.kind == "maxpool":
        return nn.MaxPool2d(layer.kernel, layer.stride, layer.padding, layer.dilation,
                            ceil_mode=layer.ceil_mode)
    return nn.AvgPool2d(layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)


def _torch_side(layer: CA.Layer) -> int:
    try:
        return _module(layer)(torch.zeros(1, 1, layer.size, layer.size)).shape[-1]
    except RuntimeError:
        return 0


def _unread_by_gradient(layer: CA.Layer) -> int | None:
    """Rows of the image where the gradient of every output's sum is zero: unread.

    A max pooling's gradient reaches one pixel a window, so it is measured on an average
    pooling of the same geometry (or, dilated, on a convolution of ones); None for a
    dilated max pooling in ceil mode, which neither can stand in for."""
    m = _module(layer).double()
    if layer.kind == "maxpool":
        if layer.dilation == 1:
            m = nn.AvgPool2d(layer.kernel, layer.stride, layer.padding,
                             ceil_mode=layer.ceil_mode)
        elif not layer.ceil_mode:
            m = _module(CA.Layer(layer.size, layer.kernel, layer.stride, layer.padding,
                                 layer.dilation)).double()
        else:
            return None
    if isinstance(m, nn.Conv2d):
        with torch.no_grad():
            m.weight.fill_(1)
    x = torch.ones(1, 1, layer.size, layer.size, dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    return int((x.grad[0, 0].abs().sum(1) == 0).sum())


@pytest.mark.parametrize("preset", CA.PRESETS, ids=lambda p: p.title[:40])
def test_every_preset_is_what_pytorch_gives(preset):
    result = CA.explain(preset.layer)
    assert result.out == _torch_side(preset.layer)
    assert result.unread == _unread_by_gradient(preset.layer)
    assert result.formula.split(" = ")[-1].split(" ")[0].isdigit()
    assert all(not s[0].islower() and s.endswith(".") for s in result.sentences)


def test_the_alexnet_puzzle():
    at_224 = CA.explain(CA.preset(CA.PRESETS[0].title).layer)
    assert (at_224.out, float(at_224.quotient), at_224.whole) == (54, 53.25, False)
    assert "53.25 is not a whole number" in at_224.sentences[0]
    at_227 = CA.explain(CA.Layer(227, 11, 4, 0))
    padded = CA.explain(CA.Layer(224, 11, 4, 2))
    assert (at_227.out, at_227.whole, padded.out) == (55, True, 55)


def test_pytorchs_ceil_rule_is_explained():
    layer = CA.Layer(5, 2, 2, 1, kind="maxpool", ceil_mode=True)
    result = CA.explain(layer)
    assert result.out == 3 == _torch_side(layer)
    assert result.formula.endswith("= 4 (PyTorch gives 3)")
    assert any("right padding" in s for s in result.sentences)


def test_the_arithmetic_on_a_grid_of_settings():
    for size, k, s, p, d in itertools.product((5, 7, 12), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2),
                                              (1, 2)):
        for kind, ceil in (("conv", False), ("maxpool", False), ("maxpool", True),
                           ("avgpool", True)):
            if kind == "avgpool" and d > 1:
                continue
            try:
                layer = CA.Layer(size, k, s, p, d, kind, ceil)
            except ValueError as exc:  # pooling padding over half the kernel: PyTorch too
                assert "at most half" in str(exc)
                pool = (nn.MaxPool2d(k, s, p, d, ceil_mode=ceil) if kind == "maxpool"
                        else nn.AvgPool2d(k, s, p, ceil_mode=ceil))
                with pytest.raises(RuntimeError, match="half of"):
                    pool(torch.zeros(1, 1, size, size))
                continue
            result = CA.explain(layer)
            assert result.out == _torch_side(layer), layer
            if result.out:
                assert len(CA.windows(layer)) == result.out
                assert _unread_by_gradient(layer) in (result.unread, None), layer


def test_grids_mark_the_kernel_and_refuse_units_outside():
    layer = CA.Layer(7, 3, 2, 1, dilation=2)  # padded 9; windows of span 5, stride 2: 3 out
    padded, output = CA.grids(layer, (1, 2))
    assert len(padded) == 9 and len(output) == 3
    flat = [c for line in padded for c in line]
    assert flat.count(CA.TAP) + flat.count(CA.TAP_ON_PADDING) == 9
    assert flat.count(CA.HULL) == 25 - 9
    assert sum(map(sum, output)) == 1 and output[1][2] == 1
    with pytest.raises(ValueError, match="outside the 3 x 3 output"):
        CA.grids(layer, (3, 0))


@pytest.mark.parametrize("kwargs,match", [
    ({"size": 0, "kernel": 3}, "size must be a whole number"),
    ({"size": 8, "kernel": 3, "kind": "conv", "ceil_mode": True}, "ceil mode is for pooling"),
    ({"size": 8, "kernel": 2, "padding": 2, "kind": "maxpool"}, "at most half"),
    ({"size": 8, "kernel": 3, "kind": "upsample"}, "kind must be one of"),
    ({"size": 5000, "kernel": 3}, "at most 1024"),
])
def test_bad_settings_get_one_clear_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CA.Layer(**kwargs)


def test_the_page_renders_and_follows_presets():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.code[0].value.endswith("= 54")
    at.selectbox(key="ca-preset").set_value(CA.PRESETS[1].title).run()
    assert not at.exception and at.code[0].value.endswith("= 55")
    assert at.number_input(key="ca-size").value == 227
    # A pooling with too much padding: one clear message, no traceback.
    at.radio(key="ca-kind").set_value("maxpool").run()
    at.number_input(key="ca-padding").set_value(9).run()
    assert not at.exception
    assert len(at.error) == 1 and "at most half the kernel" in at.error[0].value
