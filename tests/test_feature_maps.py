"""Feature maps: one stage per spatial size, the most active channels, their tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncompare import get_model, list_models
from cnncompare.feature_maps import MAX_CHANNELS, stage_maps, stage_outputs, tile

# The stages every family shows at its small size (names and output sides).
EXPECTED = {
    "lenet": (28, [("act1", 28), ("pool1", 14), ("act2", 10), ("pool2", 5)]),
    "resnet18": (32, [("layer1", 32), ("layer2", 16), ("layer3", 8), ("layer4", 4)]),
    "resnet50": (32, [("layer1", 32), ("layer2", 16), ("layer3", 8), ("layer4", 4)]),
    "densenet121": (32, [("features.relu0", 32), ("features.denseblock1", 16),
                         ("features.denseblock2", 8), ("features.denseblock3", 4),
                         ("relu", 2)]),
    "googlenet": (28, [("conv3", 28), ("inception3b", 14), ("inception4e", 7),
                       ("inception5b", 4)]),
    "vgg16": (32, [("features.relu1_2", 32), ("features.relu2_2", 16),
                   ("features.relu3_3", 8), ("features.relu4_3", 4), ("features", 2)]),
    "alexnet": (28, [("features.relu1", 28), ("features.relu2", 14), ("features.relu5", 7),
                     ("features", 3)]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stages_are_the_last_map_at_each_size(name):
    size, stages = EXPECTED[name]
    model = get_model(name, input_size=size, in_channels=1, width=0.25)
    out = stage_outputs(model, torch.randn(1, 1, size, size))
    assert [(n, t.shape[-1]) for n, t in out] == stages


@pytest.mark.parametrize("name", list_models())
def test_every_network_gives_stages_with_the_requested_channels(name):
    size = 32 if name.startswith(("vgg", "resnet", "densenet")) else 28
    model = get_model(name, input_size=size, in_channels=1, width=0.25)
    stages = stage_maps(model, torch.randn(1, 1, size, size), top=5)
    assert len(stages) >= 3
    sides = [s.shape[1] for s in stages]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)
    for s in stages:
        k = min(5, s.shape[0])
        assert s.maps.shape == (k, s.shape[1], s.shape[2])
        assert len(s.channels) == len(set(s.channels)) == k
        assert list(s.activity) == sorted(s.activity, reverse=True)
        # the activity is the channel's mean, and no unshown channel is more active
        assert s.activity[0] == pytest.approx(float(s.maps[0].mean()), rel=1e-5, abs=1e-6)


def test_tiles_and_bad_requests():
    model = get_model("lenet")
    stages = stage_maps(model, torch.randn(1, 1, 28, 28), top=6)
    first = stages[0]  # 6 channels of 28 x 28: a 3 x 2 grid of 56 px cells, 2 px gaps
    img = tile(first, cell=56, gap=2)
    assert img.size == (3 * 58 - 2, 2 * 58 - 2) and img.mode == "RGB"
    assert np.asarray(img).std() > 0
    with pytest.raises(ValueError, match=f"top must be from 1 to {MAX_CHANNELS}"):
        stage_maps(model, torch.randn(1, 1, 28, 28), top=0)
    with pytest.raises(ValueError, match="expected one image"):
        stage_maps(model, torch.randn(2, 1, 28, 28))
