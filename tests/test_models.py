"""Every model of the zoo: exact parameter counts, shapes, gradients, size checks, and the
spatial plan against the modules it describes."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from cnncompare import count_params, get_model, list_models, min_input_size, resolve_config
from cnncompare.geometry import Branches, steps, walk
from cnncompare.registry import spatial_plan

ALL = list_models()

# The design card's numbers: torchvision's counts at 3x224x224 with 1000 classes.
CANONICAL_COUNTS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
    "alexnet2012": 60_965_224,
    "alexnet_onetower": 62_378_344,  # the study notes' single tower with the paper's channels
    "lenet": 61_706,
    "lenet5": 61_706,
}

# Our names whose canonical form is torchvision's builder of the same name.
TORCHVISION_TWINS = [
    "alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "densenet121",
]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(CANONICAL_COUNTS))
def test_canonical_count_equals_literal(name):
    assert count_params(name) == CANONICAL_COUNTS[name]


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_canonical_count_equals_torchvision_builder(name):
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):
        theirs = getattr(tvm, name)(weights=None, **kwargs)
    assert count_params(name) == n_params(theirs)


def test_googlenet_aux_heads_match_torchvision():
    with torch.device("meta"):
        theirs = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert count_params("googlenet", aux_logits=True) == n_params(theirs)


@pytest.mark.parametrize("size", [28, 32])
def test_lenet_61706_at_both_digit_sizes(size):
    assert count_params("lenet", input_size=size) == 61_706
    assert count_params("lenet5", input_size=size) == 61_706


def test_count_params_matches_materialised_model():
    assert count_params("resnet18", input_size=32, width=0.5) == n_params(
        get_model("resnet18", input_size=32, width=0.5)
    )


@pytest.mark.parametrize("name", ALL)
def test_canonical_forward_shape(name):
    """At the canonical size on the meta device: shapes only, no memory (vgg19 is 143M)."""
    cfg = resolve_config(name)
    with torch.device("meta"):
        model = cfg.build().eval()
        y = model(torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size))
    assert y.shape == (1, cfg.num_classes)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_small_forward_and_backward_reach_every_parameter(name, channels, size):
    """Real numbers at width 0.25. With (1, 28) this is the issue's acceptance check: a
    2x1x28x28 batch gives logits of shape (2, 10) for every model."""
    torch.manual_seed(0)
    model = get_model(name, num_classes=10, in_channels=channels, input_size=size, width=0.25)
    model.train()
    x = torch.randn(2, channels, size, size)
    y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    y.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"


def test_small_input_defaults_to_ten_classes():
    cfg = resolve_config("resnet18", input_size=32)
    assert (cfg.stem, cfg.num_classes, cfg.in_channels) == ("small", 10, 3)
    assert resolve_config("resnet18").num_classes == 1000


def test_googlenet_aux_outputs_in_training_only():
    model = get_model("googlenet", input_size=32, width=0.25, aux_logits=True)
    x = torch.randn(2, 3, 32, 32)
    out = model.train()(x)
    assert len(out) == 3 and all(o.shape == (2, 10) for o in out)
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("width", [0.125, 0.5, 2.0])
def test_width_scales_parameters_monotonically(width):
    base = count_params("vgg11", input_size=32)
    scaled = count_params("vgg11", input_size=32, width=width)
    assert (scaled < base) if width < 1 else (scaled > base)


def _meta_forward_ok(name: str, size: int, stem: str) -> bool:
    """Build the network without the size check and push a meta tensor through it."""
    from cnncompare.registry import _entry

    with torch.device("meta"), warnings.catch_warnings():
        # Below its smallest size LeNet's first linear layer has no inputs; torch warns.
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        model = _entry(name).builder(num_classes=10, in_channels=3, input_size=size,
                                     width=0.25, small=stem == "small").eval()
        try:
            model(torch.empty(1, 3, size, size))
        except RuntimeError:
            return False
    return True


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_smallest_input_is_exact(name, stem):
    """The spatial plan's smallest size is where a real forward pass starts to work."""
    need = min_input_size(name, stem)
    assert _meta_forward_ok(name, need, stem)
    if need > 1:
        assert not _meta_forward_ok(name, need - 1, stem)
        with pytest.raises(ValueError, match=f"at least {need}x{need}"):
            get_model(name, input_size=need - 1, stem=stem)


def test_plan_walk_uses_the_shape_formula():
    # resnet18 at 224: 112 (7x7/2, p3), 56 (3x3/2 max pool, p1), then two blocks a stage,
    # the first block of stages 2-4 halving the map.
    assert walk(spatial_plan("resnet18", 224), 224) == [112, 56, 56, 56, 28, 28, 14, 14, 7, 7]
    assert walk(spatial_plan("resnet18", 32, "small"), 32) == [32, 32, 32, 16, 16, 8, 8, 4, 4]


_MODULE_TYPES = {"conv": nn.Conv2d, "maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}


def _first(v):
    return v[0] if isinstance(v, tuple) else v


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("stem,size", [("small", 32), ("imagenet", 227)])
def test_plan_names_every_spatial_module_with_its_geometry(name, stem, size):
    """Each plan step is the module it names, with the same kernel, stride, padding,
    dilation and ceil mode; every convolution and pooling of the network is a step,
    once (GoogLeNet's auxiliary heads are side outputs, not on the main path)."""
    extra = {"aux_logits": True} if name == "googlenet" else {}
    cfg = resolve_config(name, input_size=size, stem=stem, width=0.25, **extra)
    with torch.device("meta"):
        model = cfg.build()
    plan = spatial_plan(name, size, stem)
    named = [step.name for step in steps(plan)]
    assert len(named) == len(set(named))
    for step in steps(plan):
        module = model.get_submodule(step.name)
        assert type(module) is _MODULE_TYPES[step.kind], step
        geometry = (_first(module.kernel_size), _first(module.stride), _first(module.padding),
                    _first(getattr(module, "dilation", 1)), bool(getattr(module, "ceil_mode",
                                                                         False)))
        assert geometry == (step.kernel, step.stride, step.padding, step.dilation,
                            step.ceil_mode), step
    spatial = {n for n, m in model.named_modules()
               if isinstance(m, tuple(_MODULE_TYPES.values())) and not n.startswith("aux")}
    assert spatial == set(named)


def test_plan_branches_where_paths_merge():
    def merges(name: str) -> list[tuple[str, str, int]]:
        return [(node.name, node.merge, len(node.paths)) for node in spatial_plan(name, 224)
                if isinstance(node, Branches)]

    googlenet = merges("googlenet")
    assert len(googlenet) == 9 and googlenet[0] == ("inception3a", "concat", 4)
    resnet = merges("resnet18")
    assert [n for n, _, _ in resnet] == [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    assert {(m, p) for _, m, p in resnet} == {("add", 2)}
    # Projection shortcuts where a block halves the map, the identity elsewhere.
    shortcuts = [node.paths[1] for node in spatial_plan("resnet18", 224)
                 if isinstance(node, Branches)]
    assert [len(s) for s in shortcuts] == [0, 0, 1, 0, 1, 0, 1, 0]
    assert len(merges("densenet121")) == 6 + 12 + 24 + 16
    assert merges("vgg16") == merges("alexnet") == merges("lenet") == []


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"input_size": 0}, "input_size must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"in_channels": -1}, "in_channels must be a positive integer"),
        ({"width": 0}, "width must be a number"),
        ({"input_size": 28.5}, "input_size must be a positive integer"),
        ({"stem": "tiny"}, "stem must be one of"),
    ],
)
def test_impossible_configs_are_refused_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_model("resnet18", **kwargs)


# The depth in a network's name (or paper): weighted layers on the longest path.
DEPTHS = {"lenet": 5, "lenet5": 5, "alexnet": 8, "alexnet2012": 8, "alexnet_onetower": 8,
          "nin": 12, "googlenet": 22, "vgg11": 11, "vgg13_bn": 13, "vgg16": 16, "vgg19": 19,
          "resnet18": 18, "resnet34": 34, "resnet50": 50, "densenet121": 121}


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_depth_is_the_weighted_layers_on_the_longest_path(name):
    from cnncompare.model_card import model_depth

    assert model_depth(name) == DEPTHS[name]


@pytest.mark.parametrize("name", ALL)
def test_every_card_has_pitfalls_in_whole_sentences(name):
    from cnncompare import model_info

    pitfalls = model_info(name).pitfalls
    assert 3 <= len(pitfalls) <= 6
    for text in pitfalls:
        assert text[0].isupper() and text.endswith("."), text
    assert model_info(name).as_dict()["pitfalls"] == list(pitfalls)


def test_onetower_alexnet_has_the_papers_channels_in_one_tower():
    with torch.device("meta"):
        model = get_model("alexnet_onetower")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert {c.groups for c in convs} == {1}
    assert convs[0].padding == (2, 2)
    y = model(torch.empty(1, 3, 224, 224, device="meta"))
    assert y.shape == (1, 1000)
    assert model.features(torch.empty(1, 3, 224, 224, device="meta")).shape[-1] == 6


def test_size_notes_say_what_an_input_size_does():
    from cnncompare.model_card import size_notes

    # alexnet2012 at 224: 54 -> 26 -> 12 -> 5, stretched to the classifier's 6x6; 227 fits.
    notes = size_notes("alexnet2012", input_size=224)
    assert any("5 x 5" in n and "stretches it to the 6 x 6" in n and "At 227 px" in n
               for n in notes), notes
    assert size_notes("alexnet2012", input_size=227) == []
    # VGG-16 at 28 px (small stem): block 5 runs on a 1x1 map.
    (note,) = size_notes("vgg16", input_size=28)
    assert "features.conv5_1, features.conv5_2, features.conv5_3 run on a 1 x 1 map" in note
    assert "8 of the 9 positions" in note
    # NiN at 224: 11x11 stride 4 then 3x3 stride 2 never read the last 5 rows and columns.
    (note,) = size_notes("nin", input_size=224)
    assert "last 5 rows and columns" in note and "block1.conv, pool1" in note
    assert size_notes("resnet18") == [] and size_notes("densenet121", input_size=32) == []
