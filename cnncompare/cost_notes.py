"""The sentences that explain the cost figures, wherever the app shows them.

Kept apart from :mod:`cnncompare.profiling` (which imports torch) so that a page can show
them before torch is loaded: the Overview draws its first view without it.
"""

from __future__ import annotations

from cnncompare.i18n import N_

MACS_VS_FLOPS = N_(
    "A MAC is one multiply-add (a·b + c); fvcore counts it once, torch's FlopCounterMode "
    "counts it as two FLOPs (a multiply and an add), so FLOPs ≈ 2 × MACs. torchvision's "
    "published \"GFLOPS\" column counts the convolution and linear MACs only (resnet18: "
    "1.81), so compare it with the MACs column here, not with FLOPs."
)
"""The one-line explanation the UI shows next to the MACs and FLOPs columns."""

ACTIVATION_NOTE = N_(
    "Activations: the sum of every layer's output for one image (batch 1, float32), "
    "leaving out in-place layers, which overwrite their input. An estimate: the peak a "
    "framework reaches depends on what it frees and keeps."
)
"""What the activation-memory figure is, for every place that shows it."""
