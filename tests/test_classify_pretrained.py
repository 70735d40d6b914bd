"""cnncompare.pretrained: torchvision's ImageNet weights from the torch cache, offline."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from PIL import Image

from cnncompare import pretrained as P
from cnncompare.classify import predict


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def test_offline_without_cache_says_so_plainly(torch_home):
    for name in P.IMAGENET_MODELS:
        status = P.pretrained_status(name)
        assert not status.cached and status.path.parent == P.checkpoint_dir()
        with pytest.raises(P.WeightsUnavailable, match="not in the torch cache"):
            P.load_pretrained(name)
    assert torch_home == []  # downloading off: the network was never asked
    with pytest.raises(P.WeightsUnavailable, match="Could not download"):
        P.load_pretrained("resnet18", download=True)
    assert len(torch_home) == 1 and torch_home[0].endswith("resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        P.pretrained_status("lenet")


def _cache(name: str, state: dict) -> None:
    path = P.pretrained_status(name).path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_cached_weights_load_with_imagenet_classes(torch_home):
    from torchvision import models as tvm

    torch.manual_seed(0)
    reference = tvm.resnet18()
    _cache("resnet18", reference.state_dict())
    assert P.pretrained_status("resnet18").cached
    clf = P.load_pretrained("resnet18")
    assert torch.equal(clf.module.fc.weight, reference.fc.weight)
    assert len(clf.class_names) == 1000 and clf.class_names[0] == "tench"
    assert clf.spec.input_size == 224 and clf.spec.resize_size == 256
    pred = predict(clf, Image.new("RGB", (320, 240), (120, 80, 40)), k=5)
    assert set(pred.classes) <= set(clf.class_names) and pred.cam_layer == "layer4"
    assert pred.saliency.shape == (224, 224)
    assert torch_home == []


def test_cached_googlenet_and_old_style_densenet_keys_load(torch_home):
    from torchvision import models as tvm

    g = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    _cache("googlenet", g.state_dict())  # the real file holds the auxiliary heads too
    clf = P.load_pretrained("googlenet")
    assert clf.module.aux1 is None and clf.module.transform_input
    d = tvm.densenet121(weights=None)
    # torchvision's file predates num_batches_tracked and uses the old names, such as
    # "denselayer1.norm.1.weight".
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
           for k, v in d.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    _cache("densenet121", old)
    dense = P.load_pretrained("densenet121").module
    assert torch.equal(dense.features.denseblock1.denselayer1.norm1.weight,
                       d.features.denseblock1.denselayer1.norm1.weight)


def test_damaged_cache_file_is_reported(torch_home):
    path = P.pretrained_status("alexnet").path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(P.WeightsUnavailable, match="Could not read"):
        P.load_pretrained("alexnet")
    _cache("alexnet", {"features.0.weight": torch.zeros(1)})
    with pytest.raises(P.WeightsUnavailable, match="does not fit"):
        P.load_pretrained("alexnet")
