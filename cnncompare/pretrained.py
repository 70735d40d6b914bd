"""torchvision's ImageNet-pretrained networks: where their weights are, and loading them.

Weights are read from torch's own download cache (``torch.hub.get_dir()/checkpoints``)
with ``weights_only=True``; downloading happens only when asked. A loaded network is a
:class:`~cnncompare.classify.Classifier` with ImageNet's 1000 class names and
torchvision's own preprocessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnncompare.classify import Classifier, InputSpec
from cnncompare.i18n import N_

IMAGENET_MODELS: tuple[str, ...] = (
    "alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "densenet121",
)
"""torchvision networks offered with ImageNet-pretrained weights."""


class WeightsUnavailable(RuntimeError):
    """Pretrained weights that are neither in the torch cache nor downloadable now."""


@dataclass(frozen=True)
class PretrainedStatus:
    """Where one network's ImageNet weights are (or would be) in the torch cache."""

    name: str
    weights: str  # the torchvision enum member, e.g. "IMAGENET1K_V1"
    url: str
    path: Path
    cached: bool


def _weight_choices(name: str) -> list[Any]:
    from torchvision import models as tvm

    if name not in IMAGENET_MODELS:
        raise ValueError(f"no ImageNet weights offered for {name!r}; "
                         f"choose from {', '.join(IMAGENET_MODELS)}")
    enum = tvm.get_model_weights(name)
    usable = [w for w in enum if w.meta.get("categories")]
    default = enum.DEFAULT
    return sorted(usable, key=lambda w: w is not default)  # the default first


def checkpoint_dir() -> Path:
    """torch's download cache for weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_status(name: str) -> PretrainedStatus:
    """The weights :func:`load_pretrained` would use: a cached file if any, else the default."""
    choices = _weight_choices(name)
    folder = checkpoint_dir()
    for w in choices:
        path = folder / Path(w.url).name
        if path.is_file():
            return PretrainedStatus(name, w.name, w.url, path, True)
    w = choices[0]
    return PretrainedStatus(name, w.name, w.url, folder / Path(w.url).name, False)


_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def load_pretrained(name: str, *, download: bool = False) -> Classifier:
    """torchvision's ``name`` with its ImageNet weights, from the torch cache.

    With ``download=True`` a missing file is fetched (hash-checked) into the cache first.
    The file is read with ``weights_only=True``. Raises :class:`WeightsUnavailable` when
    the weights are missing and cannot be fetched, or do not fit the network.
    """
    from torchvision import models as tvm

    status = pretrained_status(name)
    weights = getattr(tvm.get_model_weights(name), status.weights)
    if not status.cached and not download:
        raise WeightsUnavailable(N_(
            "The ImageNet weights for {name} are not in the torch cache ({folder}), and "
            "downloading is off.", name=name, folder=str(status.path.parent)))
    try:
        state = torch.hub.load_state_dict_from_url(
            status.url, progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - network, disk, hash or pickle trouble alike
        message = (N_("Could not read the ImageNet weights for {name} ({url}): {error}",
                      name=name, url=status.url, error=str(err)) if status.cached else
                   N_("Could not download the ImageNet weights for {name} ({url}): {error}",
                      name=name, url=status.url, error=str(err)))
        raise WeightsUnavailable(message) from err
    kwargs: dict[str, Any] = {}
    if name == "googlenet":  # torchvision's own settings for its pretrained GoogLeNet
        kwargs = {"aux_logits": True, "transform_input": True, "init_weights": False}
    if name.startswith("densenet"):  # old checkpoint keys, renamed as torchvision does
        state = {(_DENSE_KEY.sub(r"\1\2", k)): v for k, v in state.items()}
    model = tvm.get_model(name, weights=None, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsUnavailable(N_(
            "The cached file {file} does not fit torchvision's {name}: {error}",
            file=status.path.name, name=name, error=str(err).splitlines()[0])) from err
    if name == "googlenet":
        model.aux_logits = False
        model.aux1 = model.aux2 = None
    tf = weights.transforms()
    spec = InputSpec(in_channels=3, input_size=int(tf.crop_size[0]),
                     mean=tuple(tf.mean), std=tuple(tf.std), resize="crop",
                     resize_size=int(tf.resize_size[0]))
    return Classifier(name=f"{name} (ImageNet)", module=model.eval(),
                      class_names=tuple(weights.meta["categories"]), spec=spec, arch=name,
                      source=f"torchvision {name} {status.weights}", dataset="imagenet",
                      details={"weights": status.weights, "file": str(status.path),
                               "acc@1": weights.meta.get("_metrics", {}).get(
                                   "ImageNet-1K", {}).get("acc@1")},
                      calibration_note=N_(
                          "How typical an image is cannot be said for torchvision's ImageNet "
                          "weights: their training and validation images are not here."))
