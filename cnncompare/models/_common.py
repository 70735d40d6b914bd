"""Small helpers shared by the family modules."""

from __future__ import annotations

from cnncompare.registry import Preset

IMAGENET = Preset(input_size=224, in_channels=3, num_classes=1000)
"""The canonical preset of the ImageNet networks: 3x224x224, 1000 classes."""


def scale(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)
