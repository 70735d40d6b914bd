"""Network diagrams from the modules' own structure: counts, groups, shortcuts, figures."""

from __future__ import annotations

import pytest

from cnncompare import list_models, resolve_config
from cnncompare.dataflow import trace
from cnncompare.diagram import network_diagram
from cnncompare.plots_explain import diagram_figure
from cnncompare.registry import on_meta_device

ALL = list_models()


def _leaf_calls(name: str) -> int:
    """Calls of leaf modules in one forward pass, counted with plain forward hooks (ResNet's
    shared ReLU counts once per call)."""
    import torch

    with on_meta_device():
        model = resolve_config(name).build().eval()
    calls = []
    for m in model.modules():
        if next(m.children(), None) is None:
            m.register_forward_hook(lambda *_: calls.append(1))
    cfg = resolve_config(name)
    with torch.no_grad():
        model(torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta"))
    return len(calls)


def _check_graph(d) -> None:
    ids = [b.id for b in d.boxes]
    assert ids[0] == "input" and len(ids) == len(set(ids))
    index = {i: n for n, i in enumerate(ids)}
    for a, b in d.arrows:
        assert index[a] < index[b], (a, b)  # drawn in execution order: no cycle
    reached = {"input"}
    for a, b in d.arrows:
        if a in reached:
            reached.add(b)
    assert reached == set(ids)  # every box is fed from the input


@pytest.mark.parametrize("name", ALL)
def test_every_network_draws_readably_and_in_full(name):
    d = network_diagram(name)
    _check_graph(d)
    assert len(d.boxes) <= 40, [b.label for b in d.boxes]  # the default view stays readable
    cfg = resolve_config(name)
    assert d.boxes[-1].shape == str(cfg.num_classes)
    fig = diagram_figure(d)
    assert sum(s.type == "rect" for s in fig.layout.shapes) == len(d.boxes)
    # In full (every op its own box): one box per recorded op, one arrow per tensor passed.
    full = network_diagram(name, depth=99, group=False, fold=False)
    _check_graph(full)
    with on_meta_device():
        model = cfg.build()
    flow = trace(model, (1, cfg.in_channels, cfg.input_size, cfg.input_size))
    functions = [op for op in flow.ops if op.kind == "function"]
    assert {op.name for op in functions} <= {"add", "concat", "flatten"}
    assert len(full.boxes) == 1 + _leaf_calls(name) + len(functions)
    assert len(full.arrows) >= len(full.boxes) - 1


def test_counts_from_the_module_structure():
    # ResNet-18 in full: 20 convs, 20 BNs, 17 ReLU calls (1 + 2 per block), max pool,
    # avg pool, flatten, fc = 61 layer calls, 8 additions, the input: 70 boxes. Arrows:
    # one per input of each op: 61 + 2 x 8 = 77.
    full = network_diagram("resnet18", depth=99, group=False, fold=False)
    assert len(full.boxes) == 70 and len(full.arrows) == 77
    assert sum(b.label == "add (+)" for b in full.boxes) == 8
    # DenseNet-121: 58 dense layers each take a concatenation (58 concats) and each block
    # ends with one (4 more); 120 convs + 1 fc weighted.
    dense = network_diagram("densenet121", depth=99, group=False, fold=False)
    assert sum(b.label.startswith("concat") for b in dense.boxes) == 58 + 4
    assert sum(b.kind == "conv" for b in dense.boxes) == 120
    # GoogLeNet: 9 Inception modules, each one concatenation of 4 branches.
    g = network_diagram("googlenet", depth=99, group=False, fold=False)
    concats = [b for b in g.boxes if b.label.startswith("concat")]
    assert [b.label for b in concats] == ["concat (4)"] * 9


def test_lenet_is_one_chain_of_eight_boxes():
    d = network_diagram("lenet")
    assert [b.label for b in d.boxes] == [
        "input", "conv 5x5 + ReLU", "max pool 2x2, stride 2", "conv 5x5 + ReLU",
        "max pool 2x2, stride 2", "flatten", "fc 400→120 + ReLU", "fc 120→84 + ReLU",
        "fc 84→10"]
    assert [b.shape for b in d.boxes][:3] == ["1x28x28", "6x28x28", "6x14x14"]
    assert len(d.arrows) == 8 and max(d.ranks().values()) == 8


def test_densenet_collapses_its_repeated_layers_and_shows_the_concatenations():
    d = network_diagram("densenet121")
    groups = [b for b in d.boxes if b.kind == "group"]
    assert [b.repeat for b in groups] == [6, 12, 24, 16]
    assert groups[0].label == "denselayer1–denselayer6  ×6"
    concats = [b for b in d.boxes if b.label.startswith("concat")]
    assert [b.label for b in concats] == ["concat (7)", "concat (13)", "concat (25)",
                                          "concat (17)"]
    assert [b.shape for b in concats] == ["256x56x56", "512x28x28", "1024x14x14", "1024x7x7"]
    ids = [b.id for b in d.boxes]
    for g, c in zip(groups, concats, strict=True):
        before = ids[ids.index(g.id) - 1]  # the block's input reaches its concat directly
        assert (before, c.id) in d.arrows and (g.id, c.id) in d.arrows
    # Expanding a group shows its six layers, each a closed DenseLayer box.
    opened = network_diagram("densenet121", expand=[groups[0].id])
    layers = [b for b in opened.boxes if b.kind == "module"]
    assert [b.label for b in layers] == [f"denselayer{i}: DenseLayer" for i in range(1, 7)]
    assert [b.repeat for b in opened.boxes if b.kind == "group"] == [12, 24, 16]
    _check_graph(opened)


def test_resnet_shortcuts_and_repeats():
    d = network_diagram("resnet18")
    assert d.boxes[3].label == "layer1.0–1  ×2" and d.boxes[3].repeat == 2
    adds = [b for b in d.boxes if b.label.startswith("add (+)")]
    assert len(adds) == 6  # the blocks of layers 2 to 4, open at depth 2
    downsamples = [b for b in d.boxes if b.id.endswith("downsample")]
    assert len(downsamples) == 3
    for ds in downsamples:  # the projection shortcut feeds the block's addition
        assert any(a == ds.id and b.startswith("op:") for a, b in d.arrows)
    closed = network_diagram("resnet18", depth=0)
    assert [b.label for b in closed.boxes if b.kind == "module"] == [
        "layer1: Sequential", "layer2: Sequential", "layer3: Sequential", "layer4: Sequential"]
    assert network_diagram("resnet18", depth=0, expand=["layer2"]).box("layer2.0").label == \
        "layer2.0: BasicBlock"
    blocks = network_diagram("resnet18", depth=1)
    assert [b.label for b in blocks.boxes if b.kind in ("module", "group")][:3] == [
        "layer1.0–1  ×2", "layer2.0: BasicBlock", "layer2.1: BasicBlock"]
    with pytest.raises(KeyError):
        closed.box("layer2.0")


def test_googlenet_groups_inception_modules_between_poolings():
    d = network_diagram("googlenet")
    assert [(b.label, b.repeat) for b in d.boxes if b.kind == "group"] == [
        ("inception3a–inception3b  ×2", 2), ("inception4a–inception4e  ×5", 5),
        ("inception5a–inception5b  ×2", 2)]
    opened = network_diagram("googlenet", expand=["inception3a-inception3b", "inception3a"])
    branches = [b for b in opened.boxes if ".branch" in b.detail or "branch" in b.id]
    assert len(branches) >= 4
    concat = next(b for b in opened.boxes if b.label == "concat (4)")
    assert sum(1 for _, b in opened.arrows if b == concat.id) == 4


def test_a_small_configuration_is_drawn_too():
    d = network_diagram("vgg16", input_size=32)
    _check_graph(d)
    assert d.boxes[0].shape == "3x32x32"
    assert "32" in d.title
