"""The effective receptive field: inside the theoretical square, smaller than it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncompare import get_model
from cnncompare.effective_field import _square_side, effective_field, run_effective_field


@pytest.mark.parametrize("name,size,channels", [("lenet", 28, 1), ("resnet18", 32, 3),
                                                ("googlenet", 28, 1), ("vgg11", 64, 3),
                                                ("densenet121", 32, 3)])
def test_the_gradient_lies_inside_the_theoretical_field(name, size, channels):
    torch.manual_seed(0)
    model = get_model(name, input_size=size, in_channels=channels, width=0.25)
    erf = effective_field(model, torch.randn(4, channels, size, size))
    top, bottom, left, right = erf.region
    assert erf.map.shape == (size, size) and erf.map.max() == pytest.approx(1.0)
    outside = erf.map.copy()
    outside[top:bottom + 1, left:right + 1] = 0
    assert outside.max() == 0  # nothing outside the theoretical field, exactly
    assert 1 <= erf.effective <= min(erf.theoretical, size)
    assert model.training  # put back as it was


def test_effective_size_of_known_maps():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1
    assert _square_side(delta, 0.9) == 1
    flat = np.zeros((9, 9))
    flat[2:7, 2:7] = 1
    assert _square_side(flat, 0.9) == 5
    assert _square_side(np.zeros((3, 3)), 0.9) == 0


def test_a_trained_run_against_its_fresh_twin(tmp_path_factory):
    from cnncompare.store import ResultsStore
    from tests.trained_lenet import quick_lenet

    home, run_id = quick_lenet(tmp_path_factory.getbasetemp())
    trained, fresh = run_effective_field(ResultsStore(home), run_id, images=8)
    assert trained.images == fresh.images == 8
    assert trained.layer == fresh.layer == "pool2"
    # LeNet at 28 px: the 5x5 map's central unit sees rows 6..21 (16 px from -2 + 2*4).
    assert trained.region == fresh.region == (6, 21, 6, 21)
    assert trained.theoretical == 16
    assert not np.array_equal(trained.map, fresh.map)
    with pytest.raises(ValueError, match="images must be from 1 to 256"):
        run_effective_field(ResultsStore(home), run_id, images=0)
