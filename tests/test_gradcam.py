"""cnncompare.gradcam: the layer rule on every family, the map's meaning, the overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnncompare import gradcam as G
from cnncompare.pretrained import IMAGENET_MODELS
from cnncompare.registry import get_model, list_models, model_info

EXPECTED_LAYER = {"LeNet": "pool2", "AlexNet": "features", "VGG": "features", "NiN": "block4",
                  "GoogLeNet": "inception5b", "ResNet": "layer4", "DenseNet": "features"}


@pytest.mark.parametrize("name", list_models())
def test_grad_cam_on_every_registered_model(name):
    torch.manual_seed(0)
    small = dict(model_info(name).small)
    model = get_model(name, **small).eval()
    side = small["input_size"]
    x = torch.randn(1, small["in_channels"], side, side)
    result = G.grad_cam(model, x)
    assert result is not None
    assert result.layer == EXPECTED_LAYER[model_info(name).family]
    assert result.map.shape == (side, side) and result.map.dtype == np.float32
    assert result.map.min() >= 0.0 and result.map.max() <= 1.0
    assert 0 <= result.target < small["num_classes"]


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_cam_layer_rule_on_torchvision_models(name):
    from torchvision import models as tvm

    extra = {"init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = tvm.get_model(name, weights=None, **extra).eval()
        layer = G.cam_layer(model, torch.empty(1, 3, 224, 224))
    family = {"alexnet": "AlexNet", "vgg16": "VGG", "googlenet": "GoogLeNet",
              "resnet18": "ResNet", "resnet50": "ResNet", "densenet121": "DenseNet"}[name]
    assert layer == EXPECTED_LAYER[family]


class _Spotlight(nn.Module):
    """Identity conv -> global average -> class 0 = +mean, class 1 = -mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_grad_cam_points_at_the_evidence():
    x = torch.zeros(1, 1, 16, 16)
    x[..., :6, :6] = 1.0  # evidence in the top-left corner only
    model = _Spotlight().eval().requires_grad_(False)  # frozen weights still work
    yes = G.grad_cam(model, x, target=0)
    assert yes.layer == "conv" and yes.map.shape == (16, 16)
    assert yes.map[:4, :4].min() > 0.9 and yes.map[10:, 10:].max() < 0.1
    no = G.grad_cam(model, x, target=1)  # negative evidence: ReLU leaves nothing
    assert no.map.max() == 0.0
    with pytest.raises(ValueError, match="no module"):
        G.grad_cam(model, x, layer="nope")
    with pytest.raises(ValueError, match="outside"):
        G.grad_cam(model, x, target=5)


def test_overlay_is_rgb_at_the_image_size():
    cam = np.zeros((28, 28), np.float32)
    cam[:14] = 1.0
    base = Image.new("L", (100, 60), 128)
    out = G.overlay(base, cam, alpha=0.5)
    assert out.mode == "RGB" and out.size == (100, 60)
    assert np.asarray(G.overlay(base, cam, alpha=0.0)).tolist() == np.asarray(
        base.convert("RGB")).tolist()
    heat = np.asarray(G.overlay(base, cam, alpha=1.0), dtype=int)
    assert heat[2, 50].tolist() == G.colorize(np.ones((1, 1)))[0, 0].tolist()
    assert heat[2, 50].tolist() != heat[58, 50].tolist()
