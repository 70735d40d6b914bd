"""Small helpers shared by the family modules."""

from __future__ import annotations

from cnncompare.registry import Reduction


def scale(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def conv(k: int, s: int = 1, p: int = 0) -> Reduction:
    return Reduction("conv", k, s, p)


def maxpool(k: int, s: int, p: int = 0, ceil_mode: bool = False) -> Reduction:
    return Reduction("maxpool", k, s, p, ceil_mode)


def avgpool(k: int, s: int, p: int = 0) -> Reduction:
    return Reduction("avgpool", k, s, p)
