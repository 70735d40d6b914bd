"""Data augmentation for the trainer: whole batches at once, on the device, seeded.

The trainer holds a dataset as one tensor, so augmentation is one affine resampling of a
normalised batch (``affine_grid`` + ``grid_sample``), not a per-image PIL pipeline. What
is drawn depends on the kind of image (:data:`cnncompare.data.NATURAL` or strokes):

* Strokes (digits, MNIST, Fashion-MNIST): a rotation of up to +-10 degrees and a shift of
  up to 10% of the side in each direction (about 3 px at 28 px), bilinear, the border
  (background) repeated into the uncovered area. No flips: a flipped 2 is not a 2.
* Natural images (CIFAR-10, image folders): the usual crop-and-flip: a shift of up to
  4/32 of the side (4 px at 32 px; whole pixels, as a padded random crop), the image
  mirrored into the uncovered area, and a horizontal flip with probability 1/2.

The random draws come from a CPU generator the caller seeds (the trainer: from the run's
seed and the epoch), so a resumed run sees the same augmented batches as an
uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 10.0
STROKE_SHIFT = 0.10
"""Largest shift of a stroke image, as a fraction of its side."""
NATURAL_SHIFT = 4 / 32
"""Largest shift of a natural image, as a fraction of its side (4 px at 32 px)."""


def augment_batch(x: torch.Tensor, natural: bool, generator: torch.Generator) -> torch.Tensor:
    """A randomly transformed copy of the float batch ``x`` (``N x C x H x W``, square),
    in ``x``'s memory layout; see the module docstring for what each kind gets."""
    n, size = x.shape[0], x.shape[-1]
    theta = torch.zeros(n, 2, 3)
    if natural:
        pixels = max(1, round(NATURAL_SHIFT * size))
        shift = torch.randint(-pixels, pixels + 1, (n, 2), generator=generator).float()
        shift *= 2.0 / size  # whole pixels in affine_grid's [-1, 1] units
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        theta[:, 0, 0] = flip
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = shift
        mode, padding = "nearest", "reflection"
    else:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(MAX_ROTATION_DEG)
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * STROKE_SHIFT)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        theta[:, :, 2] = shift
        mode, padding = "bilinear", "border"
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def augmentation_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch's augmentation (apart from the batch order's)."""
    return (seed * 1_000_003 + epoch) * 7 + 3
