"""Choosing a device and describing it, the same way everywhere."""

from __future__ import annotations

import platform

import torch

from cnncompare.i18n import N_

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit device must exist."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = spec.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"Unknown device {spec!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for, but no CUDA GPU is available here.")
    if kind == "mps" and not _mps_available():
        raise ValueError("Device 'mps' was asked for, but Apple's MPS is not available here.")
    return torch.device(spec)


def available_devices() -> list[str]:
    """``auto`` and ``cpu``, then ``cuda`` and ``mps`` where this machine has them."""
    found = ["cuda"] if torch.cuda.is_available() else []
    return ["auto", "cpu", *found, *(["mps"] if _mps_available() else [])]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def device_name(device: str | torch.device = "auto") -> str:
    """A human name: the GPU's model, or the CPU's with its thread count."""
    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    cpu = platform.processor() or platform.machine() or "CPU"
    # A marked sentence (an i18n.Text): the same str, which a page can show translated.
    return N_("CPU ({cpu}, {threads} threads)", cpu=cpu, threads=torch.get_num_threads())


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a timer measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
