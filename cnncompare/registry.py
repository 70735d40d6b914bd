"""The model registry: one contract for every family.

``get_model(name, *, num_classes, in_channels, input_size, width)`` builds any network of
the zoo. Every argument left out takes the model's canonical value (3x224x224 and 1000
classes for the ImageNet networks, 1x28x28 and 10 classes for LeNet). Inputs of 64 px or
less get the family's small-input stem (the way the CIFAR versions of these networks are
built), and then ``num_classes`` defaults to 10.

Each family registers its public builders with :func:`register_model`, together with a
:class:`ModelInfo` (paper, year, key ideas) and a *spatial plan*: the list of
convolutions and poolings on the network's main path. The plan lets :func:`get_model`
reject an input that is too small, naming the smallest size that works, before any
module is built or any forward pass runs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from cnncompare.checks import positive_int, unknown_name

SMALL_INPUT_MAX = 64
"""Inputs of this many pixels or fewer get the small-input ("CIFAR") stem."""

STEMS = ("auto", "imagenet", "small")


@dataclass(frozen=True)
class Reduction:
    """One spatial step on a network's main path: a convolution or a pooling."""

    kind: str  # "conv" | "maxpool" | "avgpool"
    kernel: int
    stride: int = 1
    padding: int = 0
    ceil_mode: bool = False

    def out_size(self, n: int) -> int:
        """``floor((n + 2p - k) / s) + 1``, or PyTorch's ceil-mode rule; below 1 if impossible."""
        span = n + 2 * self.padding - self.kernel
        if self.ceil_mode:
            out = -(-span // self.stride) + 1  # ceil division
            # PyTorch drops a last window that would start in the right padding.
            if (out - 1) * self.stride >= n + self.padding:
                out -= 1
            return out
        return span // self.stride + 1


def walk_plan(plan: list[Reduction], n: int) -> list[int]:
    """Spatial size after each step of ``plan`` for an ``n`` x ``n`` input."""
    sizes = []
    for step in plan:
        n = max(step.out_size(n), 0) if n > 0 else 0
        sizes.append(n)
    return sizes


def smallest_input(plan_at: Callable[[int], list[Reduction]], limit: int = 4096) -> int:
    """The smallest square input ``n`` whose plan, ``plan_at(n)``, has an output at every step.

    The plan is a function of the size because a few choices depend on it (LeNet pads a
    28 px input, not a 32 px one).
    """
    for n in range(1, limit + 1):
        if all(s >= 1 for s in walk_plan(plan_at(n), n)):
            return n
    raise ValueError(f"no input size up to {limit} fits this network")


@dataclass(frozen=True)
class ModelInfo:
    """What the UI and the CLI show about a model: its paper, its ideas, its sizes."""

    name: str
    family: str
    year: int
    paper: str
    paper_url: str
    key_ideas: tuple[str, ...]
    canonical: dict[str, Any]  # input_size, in_channels, num_classes
    small: dict[str, Any]  # the recommended small configuration
    adaptation: str  # what the small-input stem changes
    notes: str = ""
    version: int = 1  # bump when the module code changes what a trained run means

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key_ideas"] = list(self.key_ideas)
        return d


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    plan: Callable[[int, bool], list[Reduction]]
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    info: ModelInfo,
    plan: Callable[[int, bool], list[Reduction]],
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``info.name``.

    ``builder(num_classes=, in_channels=, input_size=, width=, small=, **extra)`` returns
    the module; ``plan(input_size, small)`` returns its main-path :class:`Reduction` list.
    """

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if info.name in _REGISTRY:
            raise ValueError(f"model {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(builder=builder, plan=plan, info=info)
        return builder

    return deco


def _ensure_loaded() -> None:
    # The family modules register themselves on import.
    from cnncompare import models  # noqa: F401


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise unknown_name("model", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in zoo order (by year, then name); ``pattern`` is a glob like ``vgg*``."""
    _ensure_loaded()
    names = sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].info.year, _REGISTRY[n].info.family, n))
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_info(name: str) -> ModelInfo:
    return _entry(name).info


@dataclass(frozen=True)
class ModelConfig:
    """A fully resolved model configuration: what :func:`get_model` builds."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    width: float = 1.0
    stem: str = "imagenet"  # resolved: "imagenet" or "small"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def small(self) -> bool:
        return self.stem == "small"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """A short stable hash of the configuration and the model code's version."""
        payload = dict(self.as_dict(), version=model_info(self.name).version)
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        w = "" if self.width == 1 else f" w{self.width:g}"
        return f"{self.name} {self.in_channels}x{self.input_size}x{self.input_size}{w}"

    def build(self) -> nn.Module:
        entry = _entry(self.name)
        return entry.builder(
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            input_size=self.input_size,
            width=self.width,
            small=self.small,
            **self.extra,
        )


def resolve_config(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    width: float = 1.0,
    stem: str = "auto",
    **extra: Any,
) -> ModelConfig:
    """Fill in the defaults and check that the configuration can run.

    Raises ``ValueError`` (with a message meant for people) for an unknown model, a
    non-positive size, count or width, or an input smaller than the network can take.
    """
    entry = _entry(name)
    canon = entry.info.canonical
    input_size = positive_int(
        canon["input_size"] if input_size is None else input_size, "input_size"
    )
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        small = input_size <= SMALL_INPUT_MAX and input_size < canon["input_size"]
        stem = "small" if small else "imagenet"
    default_classes = 10 if stem == "small" else canon["num_classes"]
    num_classes = positive_int(
        default_classes if num_classes is None else num_classes, "num_classes"
    )
    in_channels = positive_int(
        canon["in_channels"] if in_channels is None else in_channels, "in_channels"
    )
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width <= 4):
        raise ValueError(f"width must be a number in (0, 4], got {width!r}")
    plan = entry.plan(input_size, stem == "small")
    if not all(s >= 1 for s in walk_plan(plan, input_size)):
        need = smallest_input(lambda n: entry.plan(n, stem == "small"))
        where = ""
        if entry.plan(input_size, True) != entry.plan(input_size, False):
            where = " with the small-input stem" if stem == "small" else " with the ImageNet stem"
        raise ValueError(
            f"{name} needs an input of at least {need}x{need} pixels{where}; "
            f"got {input_size}x{input_size}."
        )
    return ModelConfig(
        name=name,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        width=float(width),
        stem=stem,
        extra=dict(extra),
    )


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; see :func:`resolve_config` for the arguments and the checks."""
    return resolve_config(name, **kwargs).build()


def count_params(name: str, **kwargs: Any) -> int:
    """Parameter count of ``get_model(name, **kwargs)``, built on the meta device (no memory)."""
    cfg = resolve_config(name, **kwargs)
    with torch.device("meta"):
        model = cfg.build()
    return sum(p.numel() for p in model.parameters())


def min_input_size(name: str, stem: str = "small") -> int:
    """The smallest square input model ``name`` accepts with the ``small`` or ``imagenet`` stem."""
    if stem not in ("small", "imagenet"):
        raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
    entry = _entry(name)
    return smallest_input(lambda n: entry.plan(n, stem == "small"))
