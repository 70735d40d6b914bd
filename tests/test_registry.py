"""The registry: lookup, listing, errors, metadata."""

from __future__ import annotations

import pytest
from torch import nn

from cnncompare import get_model, list_models, model_info, register_model, resolve_config
from cnncompare.registry import ModelInfo

EXPECTED = {
    "lenet", "lenet5", "alexnet", "alexnet2012", "vgg11", "vgg13", "vgg16", "vgg19",
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
    assert set(info.canonical) == {"input_size", "in_channels", "num_classes"}
    assert set(info.small) == {"input_size", "in_channels", "num_classes", "width"}
    # The recommended small configuration is one that builds.
    cfg = resolve_config(name, **info.small)
    assert cfg.input_size == info.small["input_size"]
    assert info.as_dict()["key_ideas"] == list(info.key_ideas)


def test_config_key_is_stable_and_sensitive():
    a = resolve_config("resnet18", input_size=32, width=0.5)
    b = resolve_config("resnet18", input_size=32, width=0.5)
    c = resolve_config("resnet18", input_size=32, width=0.25)
    assert a.key() == b.key() != c.key()
    assert len(a.key()) == 16
