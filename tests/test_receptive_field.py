"""Receptive fields: closed forms, the plan against the traced network, and every layer of
every network against the gradient definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnncompare import list_models, model_info, resolve_config
from cnncompare.dataflow import trace
from cnncompare.geometry import Branches, conv, maxpool
from cnncompare.receptive_field import (
    Field,
    dataflow_fields,
    last_map_op,
    layer_fields,
    plan_field,
    plan_fields,
    receptive_field,
    union,
)
from cnncompare.registry import spatial_plan

ALL = list_models()
PROBE_WIDTH = 1 / 1024  # one channel a layer: the geometry does not depend on the width


# ---------------------------------------------------------------------- closed forms


def test_three_layer_chain_closed_form():
    # conv 3x3 s1 p1 -> maxpool 2x2 s2 -> conv 3x3 s1 p1 (dilation 2):
    # rf = 1 + 2*1 + 1*1 + (2*(3-1))*2 = 12, jump = 2, start = 0 - 1 - 0 - 2*2 = -5.
    plan = (conv(3, 1, 1), maxpool(2, 2), conv(3, 1, 2, dilation=2))
    f = plan_field(plan, 32)
    assert (f.size, f.jump, f.start, f.units) == (12, 2, -5, 16)
    rows = plan_fields(plan, 32)
    assert [(r["rf"], r["rf_jump"], r["rf_start"], r["depth"]) for r in rows] == [
        (3, 1, -1, 1), (4, 2, -1, 1), (12, 2, -5, 2)]


def test_two_branch_block_is_the_union():
    # Inception-like: a 1x1 path and a 5x5 (padding 2) path from a stride-2 stem: the
    # block's field is the wider path's; a 3x3 path shifted by its padding 0 starts later.
    stem = conv(3, 2, 1)  # rf 3, jump 2, start -1
    block = Branches(((conv(1),), (conv(5, 1, 2),)), "concat")
    f = plan_field((stem, block), 33)
    assert (f.size, f.jump, f.start) == (3 + 4 * 2, 2, -1 - 2 * 2)
    # Paths that do not nest: [start, end] is the hull of both.
    a = Field(5, 2, -4, 10, 0, 0)
    b = Field(3, 2, 0, 10, 0, 0)
    u = union([a, b])
    assert (u.size, u.jump, u.start) == (7, 2, -4)  # -4..0 with 0..2 -> -4..2


def test_adaptive_pooling_rules():
    f = Field(5, 4, -2, 6, -2 + 5 * 4 + 4, 20)
    assert f.adaptive(6) is f  # identity
    g = f.adaptive(1)  # global: the whole map
    assert (g.size, g.jump, g.start, g.units) == (5 + 5 * 4, 24, -2, 1)
    h = f.adaptive(3)  # 6 -> 3: windows of 2, stride 2: an ordinary pooling
    assert (h.size, h.jump, h.start) == (5 + 4, 8, -2)
    five = Field(5, 4, -2, 5, -2 + 4 * 4 + 4, 18)
    stretched = five.adaptive(6)  # 5 -> 6: windows of 1 and 2, unevenly spaced
    assert stretched.jump is None and stretched.size == 5 + 4 and stretched.units == 6


def test_a_traced_toy_network_matches_its_closed_form():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 2, 3, 2, 1)
            self.a = nn.Conv2d(2, 2, 1)
            self.b = nn.Sequential(nn.Conv2d(2, 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, 1, 1))
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([self.a(x), self.b(x)], 1) + 0.5
            return self.fc(torch.flatten(self.gap(self.pool(x)), 1))

    with torch.device("meta"):
        net = Toy()
    rows = {(r["layer"], r["call"]): r for r in layer_fields(net, (1, 1, 17, 17))}
    assert rows[("stem", 0)]["rf"] == 3
    assert rows[("a", 0)]["rf"] == 3
    assert rows[("b.2", 0)]["rf"] == 3 + 2 * 2 + 2 * 2
    # the pool reads the union (the b path): 11 + 2*2, jump 4, start -1 - 2 - 2 = -5
    assert (rows[("pool", 0)]["rf"], rows[("pool", 0)]["rf_jump"],
            rows[("pool", 0)]["rf_start"]) == (15, 4, -5)
    # 9 -> ceil((9 - 3) / 2) + 1 = 4 units; global pooling sees all of them
    assert (rows[("gap", 0)]["rf"], rows[("gap", 0)]["rf_jump"]) == (15 + 3 * 4, 16)
    assert rows[("fc", 0)]["rf"] == 27


# ---------------------------------------------------------------- the zoo, two ways


def _sizes(name: str) -> list[int]:
    info = model_info(name)
    return sorted({info.small.input_size, info.canonical.input_size})


@pytest.mark.parametrize("name", ALL)
def test_plan_and_trace_agree_on_the_last_feature_map(name):
    for size in (*_sizes(name), 96, 256):
        cfg = resolve_config(name, input_size=size, width=PROBE_WIDTH)
        with torch.device("meta"):
            net = cfg.build()
        flow = trace(net, (1, cfg.in_channels, size, size))
        fields = dataflow_fields(flow)
        traced = fields[last_map_op(flow)]
        planned = plan_field(spatial_plan(name, size, cfg.stem), size)
        assert traced == (planned, planned), (name, size)
        assert receptive_field(cfg) == planned.size


def test_the_design_cards_numbers():
    assert receptive_field("alexnet") == 195
    assert receptive_field("vgg16") == 212
    assert receptive_field("resnet18") == 435


# ------------------------------------------------- the gradient definition, every layer


def _probe(name: str, size: int) -> nn.Module:
    """The network with its geometry only: max pooling replaced by average pooling of the
    same geometry, positive averaging weights, float64 (nothing cancels or underflows)."""
    cfg = resolve_config(name, input_size=size, width=PROBE_WIDTH)
    torch.manual_seed(0)
    net = cfg.build().double().eval()
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, child_name, nn.AvgPool2d(
                    child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode))
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                setattr(parent, child_name, nn.AdaptiveAvgPool2d(child.output_size))
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "inplace"):
                m.inplace = False
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.uniform_(0.5, 1.5).div_(fan_in)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _extent(nonzero: torch.Tensor) -> tuple[int, int]:
    idx = torch.nonzero(nonzero).flatten()
    return (int(idx[0]), int(idx[-1])) if len(idx) else (-1, -1)


def _gradient_extents(net: nn.Module, size: int, channels: int, calls: list[int],
                      chunk: int = 48) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
    """For leaf-module calls ``calls`` (indices in execution order): the rows and columns
    of the input where the gradient of that call's central unit is non-zero. Image ``r``
    of a batch seeds the ``r``-th call: in eval mode the images do not interact, so one
    backward pass serves a whole chunk of calls."""
    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    out = {}
    for first in range(0, len(calls), chunk):
        part = calls[first:first + chunk]
        captured: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, o, into=captured: into.append(o))
                   for m in leaves]
        x = torch.rand(len(part), channels, size, size, dtype=torch.float64) + 0.5
        x.requires_grad_(True)
        try:
            net(x)
        finally:
            for h in handles:
                h.remove()
        seed = 0
        for r, call in enumerate(part):
            o = captured[call]
            if o.dim() == 4:
                c_h, c_w = (o.shape[2] - 1) // 2, (o.shape[3] - 1) // 2
                seed = seed + o[r, :, c_h, c_w].sum()
            else:
                seed = seed + o[r].reshape(-1)[0]
        (g,) = torch.autograd.grad(seed, x)
        for r, call in enumerate(part):
            mag = g[r].abs().sum(0)
            out[call] = (_extent(mag.sum(1) > 0), _extent(mag.sum(0) > 0))
    return out


def _expected(row: dict, field: Field, shape: tuple[int, ...]) -> tuple[int, int]:
    """The central unit's region from the table's columns, clipped to the image and to
    what the map reaches (pixels that no window reads affect nothing)."""
    c = (shape[2] - 1) // 2 if len(shape) == 4 else 0
    lo = row["rf_start"] + c * row["rf_jump"]
    return max(0, lo), min(field.reach, lo + row["rf"] - 1)


@pytest.mark.parametrize("name", ALL)
def test_every_layer_matches_the_gradient_definition(name):
    """Every row at the small size; at the canonical size (slower: 224 px) every row whose
    field differs from its input's (convolutions, poolings, merges, linear layers)."""
    small, canonical = model_info(name).small.input_size, model_info(name).canonical.input_size
    for size in sorted({small, canonical}):
        net = _probe(name, size)
        cfg = resolve_config(name, input_size=size, width=PROBE_WIDTH)
        shape = (1, cfg.in_channels, size, size)
        flow = trace(net, shape, device="cpu")
        rows = layer_fields(net, shape, device="cpu")
        fields = dataflow_fields(flow)
        ops = flow.module_ops()
        calls = list(range(len(rows)))
        if size != small:
            calls = [i for i, op in enumerate(ops) if fields[op.index] != fields[op.inputs[0]]
                     or op.inputs[0] != op.index - 1]
        extents = _gradient_extents(net, size, cfg.in_channels, calls)
        assert len(extents) == len(calls) > 0
        for i, (rows_ext, cols_ext) in extents.items():
            want = _expected(rows[i], fields[ops[i].index][0], ops[i].shape)
            assert rows_ext == want and cols_ext == want, (name, size, rows[i], ops[i].shape)


@pytest.mark.parametrize("name,size", [("alexnet", 320), ("vgg16", 320), ("resnet18", 512),
                                       ("lenet", 64), ("nin", 320)])
def test_the_last_map_unclipped(name, size):
    """At a size where the central unit's region lies inside the image, the gradient's
    extent is the whole field: 195, 212 and 435 px are measured, not only bounded."""
    net = _probe(name, size)
    cfg = resolve_config(name, input_size=size, width=PROBE_WIDTH)
    shape = (1, cfg.in_channels, size, size)
    flow = trace(net, shape, device="cpu")
    last = last_map_op(flow)
    field = dataflow_fields(flow)[last][0]
    c = (flow.ops[last].shape[2] - 1) // 2
    lo, hi = field.region(c)
    assert 0 <= lo and hi <= size - 1, "choose a larger size for this network"
    call = [op.index for op in flow.module_ops()].index(last)
    assert _gradient_extents(net, size, cfg.in_channels, [call]) == {call: ((lo, hi), (lo, hi))}
    assert hi - lo + 1 == field.size == receptive_field(cfg)


# ----------------------------------------------------------------------- the CLI columns


def _cli_csv(capsys, args: list[str]):
    import io

    import pandas as pd

    from cnncompare.cli import main

    assert main(args) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_profile_models_gains_receptive_field(capsys):
    frame = _cli_csv(capsys, ["profile", "--models", "alexnet,vgg16,resnet18", "--format",
                              "csv"])
    assert dict(zip(frame["model"], frame["receptive_field"], strict=True)) == {
        "alexnet": 195, "vgg16": 212, "resnet18": 435}


@pytest.mark.parametrize("name,size", [("googlenet", 64), ("alexnet", 224), ("lenet", 32)])
def test_profile_layers_gains_rf_columns(capsys, name, size):
    frame = _cli_csv(capsys, ["profile", "--model", name, "--layers", "--input-size",
                              str(size), "--format", "csv"])
    cfg = resolve_config(name, input_size=size)
    with torch.device("meta"):
        net = cfg.build()
    want = layer_fields(net, (1, cfg.in_channels, size, size))
    assert list(frame["layer"]) == [r["layer"] for r in want]
    for c in ("rf", "rf_jump", "rf_start"):
        assert list(frame[c]) == [r[c] for r in want], c


def test_a_network_that_cannot_be_traced_gets_empty_columns():
    from cnncompare.receptive_field import fill_layer_fields

    class ReadsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(x) if float(x.sum()) >= 0 else x  # no value on meta

    with torch.device("meta"):
        net = ReadsValues()
    rows = [{"layer": "conv"}]
    fill_layer_fields(rows, net, (1, 1, 8, 8))
    assert rows == [{"layer": "conv", "rf": None, "rf_jump": None, "rf_start": None}]
