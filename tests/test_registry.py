"""The registry: lookup, listing, errors, metadata."""

from __future__ import annotations

import pytest
from torch import nn

from cnncompare import get_model, list_models, model_info, register_model, resolve_config
from cnncompare.registry import (
    ModelConfig,
    ModelInfo,
    Preset,
    as_config,
    config_for,
    preset_config,
    zoo_frame,
)

EXPECTED = {
    "lenet", "lenet5", "alexnet", "alexnet2012", "alexnet_onetower", "vgg11", "vgg13", "vgg16",
    "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "nin", "googlenet", "resnet18",
    "resnet34", "resnet50", "densenet121",
}


def test_zoo_is_complete():
    assert set(list_models()) == EXPECTED


def test_list_models_pattern():
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]
    assert list_models("vgg*_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models("nothing*") == []


def test_list_models_in_year_order():
    years = [model_info(n).year for n in list_models()]
    assert years == sorted(years)


def test_unknown_name_names_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet19'.*resnet18"):
        get_model("resnet19")
    with pytest.raises(ValueError, match="Unknown model"):
        model_info("no-such-net")


def test_duplicate_registration_raises():
    info = model_info("lenet")

    def plan(n, small):
        return []

    with pytest.raises(ValueError, match="already registered"):
        register_model(info, plan)(lambda **kw: nn.Identity())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_info_is_complete(name):
    info = model_info(name)
    assert isinstance(info, ModelInfo) and info.name == name
    assert info.family and info.paper and info.adaptation
    assert info.paper_url.startswith(("http://", "https://"))
    assert 1989 <= info.year <= 2017
    assert info.key_ideas and all(isinstance(k, str) and k for k in info.key_ideas)
    assert isinstance(info.canonical, Preset) and isinstance(info.small, Preset)
    assert info.canonical.width == 1.0
    # The canonical preset is what every left-out argument defaults to.
    canon = resolve_config(name)
    assert (canon.input_size, canon.in_channels, canon.num_classes, canon.stem) == (
        info.canonical.input_size, info.canonical.in_channels, info.canonical.num_classes,
        "imagenet")
    # The recommended small configuration is one that builds.
    cfg = resolve_config(name, **info.small)
    assert cfg.input_size == info.small.input_size and cfg.width == info.small.width
    assert info.as_dict()["key_ideas"] == list(info.key_ideas)
    assert info.as_dict()["small"] == dict(info.small)


def test_preset_reads_as_a_mapping_too():
    small = model_info("resnet18").small
    assert small == Preset(input_size=32, in_channels=3, num_classes=10, width=0.25)
    assert small["input_size"] == small.input_size == 32
    assert dict(small) == {"input_size": 32, "in_channels": 3, "num_classes": 10, "width": 0.25}
    assert small.get("width", 1.0) == 0.25 and small.shape() == "3x32x32"
    with pytest.raises(KeyError):
        small["stem"]
    with pytest.raises(AttributeError):
        small.width = 1.0  # frozen


def test_preset_and_config_helpers():
    small = preset_config("vgg11", "small")
    assert (small.input_size, small.in_channels, small.width, small.stem) == (32, 3, 0.125,
                                                                               "small")
    assert preset_config("vgg11", "small", width=0.5, input_size=None).width == 0.5
    assert preset_config("vgg11") == resolve_config("vgg11")
    assert config_for("vgg11", "small") == small
    assert config_for("vgg11", None, input_size=64) == resolve_config("vgg11", input_size=64)
    assert as_config(small) is small
    assert as_config("lenet", width=0.5) == resolve_config("lenet", width=0.5)
    assert isinstance(as_config("lenet"), ModelConfig)


@pytest.mark.parametrize("call,match", [
    (lambda: preset_config("lenet", "huge"), "preset must be 'canonical' or 'small'"),
    (lambda: preset_config("resnet19"), "Unknown model 'resnet19'"),
    (lambda: as_config(resolve_config("lenet"), width=0.5), "not both"),
    (lambda: config_for("lenet", "small", input_size=4), "at least 12x12"),
])
def test_config_helpers_refuse_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_zoo_frame_one_row_per_model():
    frame = zoo_frame()
    assert list(frame["model"]) == list_models()
    assert list(frame.columns) == ["model", "family", "year", "paper", "paper_url", "params",
                                   "input", "num_classes", "key_idea"]
    row = frame.set_index("model").loc["alexnet2012"]
    assert (row["input"], row["num_classes"], row["params"]) == ("3x227x227", 1000, 60_965_224)


def test_config_key_is_stable_and_sensitive():
    a = resolve_config("resnet18", input_size=32, width=0.5)
    b = resolve_config("resnet18", input_size=32, width=0.5)
    c = resolve_config("resnet18", input_size=32, width=0.25)
    assert a.key() == b.key() != c.key()
    assert len(a.key()) == 16
