"""How typical an input is of what a trained network learned from: an honest "I don't know".

A digit network always answers with a digit, even for a photo of a flower. This module
scores, per trained run, how typical an input is, calibrated on the run's own held-out
images (its validation split; runs stored before validation splits existed use their
test split, and say so). Two signals, each turned into a percentile rank among those
held-out images:

* **pixels**: the distance of the input, as the network sees it (resized, normalised), to
  the main patterns of the training images: the residual after projecting it on the
  principal components that explain 95% of the training images' variance (at most
  :data:`MAX_COMPONENTS`). A photo is far from every digit.
* **network**: the energy of the logits, ``logsumexp(logits)`` (Liu et al., 2020,
  https://arxiv.org/abs/2010.03759): inputs unlike the training data tend to give weaker
  logits than held-out images of the same data.

A rank is the share of the held-out images that are at least as atypical as the input
(so it is uniform on held-out images: half of them rank below 50%). The input's
*typicality* is the smaller of the two ranks. Below :data:`UNLIKE` (1%) it looks like
nothing the network was trained on; below :data:`UNUSUAL` (5%) it is unusual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnncompare.i18n import N_, t
from cnncompare.runtime import main_logits

MAX_COMPONENTS = 64
"""The most principal components the pixel model keeps."""
MAX_FIT_IMAGES = 4000
"""The most training images the pixel model is fitted on (a seeded random subset)."""
MAX_CALIBRATION_IMAGES = 2000
"""The most held-out images the ranks are calibrated on."""
UNLIKE = 0.01
UNUSUAL = 0.05
TYPICAL, UNUSUAL_VERDICT, UNLIKE_VERDICT = "typical", "unusual", "unlike"
SPLIT_WORDS = {"validation": N_("validation"), "test": N_("test")}
"""The held-out splits as :meth:`Typicality.sentences` names them (marked for translation)."""


@dataclass(frozen=True)
class Calibration:
    """What a run's held-out images look like to the two scores (see the module docstring).

    ``split`` names the held-out images (``"validation"`` or ``"test"``); ``pixel`` and
    ``energy`` hold their scores, sorted (larger residual: less typical; smaller energy:
    less typical).
    """

    split: str
    mean: Tensor  # (D,) the training images' mean, as the network sees them
    basis: Tensor  # (k, D) orthonormal principal directions
    pixel: np.ndarray  # sorted residuals of the held-out images
    energy: np.ndarray  # sorted energies of the held-out images

    @property
    def size(self) -> int:
        return int(len(self.pixel))

    def residual(self, x: Tensor) -> np.ndarray:
        """Distance of each image of ``x`` (N, C, H, W, normalised) to the principal subspace."""
        z = x.detach().flatten(1).to(self.mean.dtype).cpu() - self.mean
        r = z - (z @ self.basis.T) @ self.basis
        return r.norm(dim=1).numpy()


@dataclass(frozen=True)
class Typicality:
    """How typical one input is for one network (see the module docstring)."""

    typicality: float  # the smaller rank, 0..1
    pixel_rank: float
    network_rank: float
    verdict: str  # TYPICAL, UNUSUAL_VERDICT or UNLIKE_VERDICT
    split: str
    calibration_size: int

    def sentences(self, model: str) -> list[str]:
        """The verdict and its evidence, as whole sentences naming ``model``, in the current
        language (:func:`cnncompare.i18n.t`)."""
        n, split = self.calibration_size, t(SPLIT_WORDS.get(self.split, self.split))
        pixel_share = f"{1 - self.pixel_rank:.0%}"
        network_share = f"{1 - self.network_rank:.0%}"
        if self.verdict == UNLIKE_VERDICT:
            first = t("This image looks like nothing {model} was trained on, so its answer "
                      "means little.", model=model)
        elif self.verdict == UNUSUAL_VERDICT:
            first = t("This image is unusual for {model}: few of its {split} images are as "
                      "far from what it was trained on.", model=model, split=split)
        else:
            first = t("This image is typical of what {model} was trained on.", model=model)
        return [
            first,
            t("By its pixels (their distance to the training images' main patterns), it is "
              "more unusual than {share} of the {n} {split} images.", share=pixel_share, n=n,
              split=split),
            t("By its logits (their energy), it is more unusual than {share} of the "
              "{n} {split} images.", share=network_share, n=n, split=split),
        ]


def _logits(model: nn.Module, x: Tensor, batch: int = 256) -> Tensor:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(main_logits(model(x[i:i + batch].to(device))).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def energy(logits: Tensor) -> np.ndarray:
    """``logsumexp`` of each row of logits: higher for inputs like the training data."""
    return torch.logsumexp(logits.float(), dim=1).cpu().numpy()


def calibrate(model: nn.Module, x_fit: Tensor, x_held_out: Tensor, split: str, *,
              seed: int = 0) -> Calibration:
    """A :class:`Calibration` from normalised training images ``x_fit`` (the pixel model)
    and normalised held-out images ``x_held_out`` (the ranks). Subsets of at most
    :data:`MAX_FIT_IMAGES` and :data:`MAX_CALIBRATION_IMAGES`, drawn with ``seed``."""
    if len(x_fit) < 2 or len(x_held_out) < 1:
        raise ValueError("calibration needs at least two training and one held-out image")
    g = torch.Generator().manual_seed(seed)
    if len(x_fit) > MAX_FIT_IMAGES:
        x_fit = x_fit[torch.randperm(len(x_fit), generator=g)[:MAX_FIT_IMAGES]]
    if len(x_held_out) > MAX_CALIBRATION_IMAGES:
        x_held_out = x_held_out[torch.randperm(len(x_held_out), generator=g)[
            :MAX_CALIBRATION_IMAGES]]
    flat = x_fit.flatten(1).double()
    mean = flat.mean(0)
    centred = flat - mean
    q = min(MAX_COMPONENTS, *centred.shape)
    _, s, v = torch.pca_lowrank(centred, q=q, center=False, niter=4)
    total = centred.pow(2).sum()
    explained = (s.pow(2).cumsum(0) / total).numpy()
    k = int(np.searchsorted(explained, 0.95) + 1)
    basis = v[:, :min(k, q)].T.contiguous()
    cal = Calibration(split, mean, basis, np.zeros(0), np.zeros(0))
    pixel = np.sort(cal.residual(x_held_out))
    scores = np.sort(energy(_logits(model, x_held_out)))
    return Calibration(split, mean, basis, pixel, scores)


def score(cal: Calibration, x: Tensor, logits: Tensor) -> Typicality:
    """How typical the one image ``x`` (1, C, H, W, normalised) is, given its ``logits``."""
    n = cal.size
    residual = float(cal.residual(x)[0])
    e = float(energy(logits.reshape(1, -1))[0])
    # The share of held-out images at least as atypical as this input.
    pixel_rank = float((n - np.searchsorted(cal.pixel, residual, side="left")) / n)
    network_rank = float(np.searchsorted(cal.energy, e, side="right") / n)
    share = min(pixel_rank, network_rank)
    verdict = (UNLIKE_VERDICT if share < UNLIKE else
               UNUSUAL_VERDICT if share < UNUSUAL else TYPICAL)
    return Typicality(share, pixel_rank, network_rank, verdict, cal.split, n)


def calibrate_run(record: Any, model: nn.Module, *, root: Any = None) -> Calibration:
    """The :class:`Calibration` of a stored run: its data re-created with
    :mod:`cnncompare.data` from the record's dataset, split sizes, input size, channels and
    seed. Raises ``ValueError`` (or :class:`cnncompare.data.DatasetNotFoundError`) when the
    data cannot be found or re-created."""
    from cnncompare import data  # the data sources load scikit-learn on first use

    s = record.settings or {}
    try:
        sizes = {k: int(s[k]) for k in ("train_size", "test_size", "input_size", "in_channels",
                                        "seed")}
    except (KeyError, TypeError, ValueError):
        raise ValueError("the run does not record its split sizes") from None
    val = int(s.get("val_size") or 0)
    td = data.load(record.dataset, train_size=sizes["train_size"],
                   test_size=sizes["test_size"], input_size=sizes["input_size"],
                   in_channels=sizes["in_channels"], seed=sizes["seed"],
                   val_size=val or None, root=root)
    held_out, split = (td.x_val, "validation") if val else (td.x_test, "test")
    return calibrate(model, td.normalize(td.x_train), td.normalize(held_out), split,
                     seed=sizes["seed"])
