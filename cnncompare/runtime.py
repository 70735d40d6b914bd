"""How a network runs: device, precision, memory layout, cancellation, its main logits.

The trainer, the benchmark, the profiler and the classifier all run networks; this module
is the one place that decides *how*, so that they agree:

* :func:`autocast_dtype`: the mixed-precision dtype for a device. On CUDA bf16 where the
  GPU computes it natively, else fp16 (with a gradient scaler); on a CPU with AVX512-BF16
  or AMX, bf16; elsewhere float32 unless asked. A benchmark of ``dtype="amp"`` times
  exactly the precision that training with ``amp=True`` uses.
* :class:`Runtime`: a device, that dtype and the memory layout (channels-last on CPU and
  CUDA), with the autocast context, the gradient scaler and one optimiser step.
* :func:`main_logits`: the class scores of a model's output (GoogLeNet returns its
  auxiliary heads' scores too while training).
* :func:`cancel_check`: one way to ask "should I stop?" of an Event or a callable.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnncompare.devices import resolve_device

PRECISIONS = ("float32", "bfloat16", "float16")
"""How a run's arithmetic is done: float32 throughout, or autocast to bf16 or fp16."""

AUX_WEIGHT = 0.3
"""Weight of each auxiliary classifier's loss (GoogLeNet's paper uses 0.3)."""

Cancel = threading.Event | Callable[[], bool]
"""A stop signal: an Event that is set, or a callable that returns True."""


class Cancelled(Exception):
    """Raised inside a long computation when its stop signal is seen."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), so that bf16
    autocast is faster rather than emulated and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private helpers: absent in some builds
        return False


def autocast_dtype(device: str | torch.device, amp: bool | str = "auto") -> torch.dtype | None:
    """The dtype mixed precision uses on ``device``, or None for float32 throughout.

    ``amp="auto"`` uses it only where the hardware runs it natively (CUDA; a CPU with
    AVX512-BF16 or AMX); ``True`` uses it anywhere (bf16 on a CPU, fp16 on Apple's MPS);
    ``False`` never.
    """
    dev = resolve_device(device)
    if amp == "auto":
        use = dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16())
    elif isinstance(amp, bool):
        use = amp
    else:
        raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
    if not use:
        return None
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if dev.type == "cpu" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """``None`` -> ``"float32"``; ``torch.bfloat16`` -> ``"bfloat16"`` (see :data:`PRECISIONS`)."""
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class Runtime:
    """Where and how a network runs: device, autocast dtype (None: float32), layout."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def precision(self) -> str:
        return precision_name(self.amp_dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`amp_dtype`, or nothing for float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for fp16 (bf16 and float32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def place(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the device, in channels-last layout where that is chosen."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def place_input(self, x: Tensor) -> Tensor:
        """Move a 4-D batch to the device, in the module's layout."""
        x = x.to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def describe(self) -> str:
        """``"cpu (2 threads), amp bfloat16"``: what a stored run records as its device."""
        text = self.device.type
        if self.device.type == "cpu":
            text = f"cpu ({torch.get_num_threads()} threads)"
        elif self.device.type == "cuda":
            text = f"cuda ({torch.cuda.get_device_name(self.device)})"
        if self.amp_dtype is not None:
            text += f", amp {self.precision}"
        return text


def make_runtime(device: str | torch.device = "auto", amp: bool | str = "auto",
                 channels_last: bool | str = "auto") -> Runtime:
    """A :class:`Runtime`; ``channels_last="auto"`` is on for the CPU and CUDA."""
    dev = resolve_device(device)
    if channels_last == "auto":
        cl = dev.type in ("cuda", "cpu")
    elif isinstance(channels_last, bool):
        cl = channels_last
    else:
        raise ValueError(f"channels_last must be 'auto', True or False, got {channels_last!r}")
    return Runtime(dev, autocast_dtype(dev, amp), cl)


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler) -> None:
    """Back-propagate ``loss`` and update, through ``scaler`` when it is enabled (fp16)."""
    if scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def main_logits(out: Any) -> Tensor:
    """The class scores of a model's output: the tensor itself, or the first of a tuple
    (GoogLeNet returns ``(logits, aux2, aux1)`` in training mode with auxiliary heads)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}, not class scores")


def loss_and_logits(out: Any, target: Tensor, criterion: nn.Module) -> tuple[Tensor, Tensor]:
    """(loss, main logits); auxiliary heads add :data:`AUX_WEIGHT` x their losses."""
    logits = main_logits(out)
    loss = criterion(logits, target)
    if not isinstance(out, Tensor):
        for aux in out[1:]:
            if aux is not None:
                loss = loss + AUX_WEIGHT * criterion(aux, target)
    return loss, logits


def cancel_check(cancel: Cancel | None) -> Callable[[], bool]:
    """A no-argument function that says whether ``cancel`` asks to stop."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError("cancel must be a threading.Event or a callable returning bool")
