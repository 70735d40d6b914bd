"""The model registry: one contract for every family.

``get_model(name, *, num_classes, in_channels, input_size, width)`` builds any network of
the zoo. Every argument left out takes the model's canonical value (3x224x224 and 1000
classes for the ImageNet networks, 1x28x28 and 10 classes for LeNet). Inputs of 64 px or
less get the family's small-input stem (the way the CIFAR versions of these networks are
built), and then ``num_classes`` defaults to 10.

Each family registers its public builders with :func:`register_model`, together with a
:class:`ModelInfo` (paper, year, key ideas, its canonical and recommended small
:class:`Preset`) and a *spatial plan* (:mod:`cnncompare.geometry`): every convolution
and pooling on the network's main paths, derived from the same layer specification the
modules are built from. The plan lets :func:`resolve_config` reject an input that is too
small, naming the smallest size that works, before any module is built or any forward
pass runs.

The configuration helpers that profiling, benchmarking, the CLI and the pages share live
here too: :func:`preset_config`, :func:`config_for`, :func:`as_config` and
:func:`zoo_frame`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnncompare.cache import read_json, stable_hash, write_json
from cnncompare.checks import positive_int, unknown_name
from cnncompare.geometry import Plan, out_size, smallest_input

if TYPE_CHECKING:
    import pandas as pd

SMALL_INPUT_MAX = 64
"""Inputs of this many pixels or fewer get the small-input ("CIFAR") stem."""

STEMS = ("auto", "imagenet", "small")


@dataclass(frozen=True)
class Preset(Mapping[str, Any]):
    """A named configuration of a model: square input side, channels, classes, width.

    Typed like timm's ``PretrainedCfg`` (``preset.input_size``) and also a read-only
    mapping (``preset["input_size"]``, ``dict(preset)``, ``**preset``), so that it can be
    passed straight to :func:`resolve_config`.
    """

    input_size: int
    in_channels: int
    num_classes: int
    width: float = 1.0

    def __getitem__(self, key: str) -> Any:
        if key not in _PRESET_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_PRESET_KEYS)

    def __len__(self) -> int:
        return len(_PRESET_KEYS)

    def shape(self) -> str:
        """``"3x224x224"``: channels x height x width of the input."""
        return f"{self.in_channels}x{self.input_size}x{self.input_size}"


_PRESET_KEYS = tuple(f.name for f in fields(Preset))


@dataclass(frozen=True)
class ModelInfo:
    """What the UI and the CLI show about a model: its paper, its ideas, its presets, and
    the common pitfalls when people write it themselves (whole sentences, for the card)."""

    name: str
    family: str
    year: int
    paper: str
    paper_url: str
    key_ideas: tuple[str, ...]
    canonical: Preset  # the paper's configuration
    small: Preset  # the recommended small configuration (trains on a CPU)
    adaptation: str  # what the small-input stem changes
    notes: str = ""
    version: int = 1  # bump when the module code changes what a trained run means
    pitfalls: tuple[str, ...] = ()  # common mistakes when people write it themselves

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key_ideas"] = list(self.key_ideas)
        d["pitfalls"] = list(self.pitfalls)
        return d

    def preset(self, preset: str) -> Preset:
        """The ``canonical`` or the ``small`` preset; ``ValueError`` for another name."""
        if preset == "canonical":
            return self.canonical
        if preset == "small":
            return self.small
        raise ValueError(f"preset must be 'canonical' or 'small', got {preset!r}")


PlanFunction = Callable[[int, bool], Plan]
"""``plan(input_size, small)``: a family's spatial plan for that input side and stem."""


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    plan: PlanFunction
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    info: ModelInfo,
    plan: PlanFunction,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``info.name``.

    ``builder(num_classes=, in_channels=, input_size=, width=, small=, **extra)`` returns
    the module; ``plan(input_size, small)`` returns its :data:`~cnncompare.geometry.Plan`.
    """

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if info.name in _REGISTRY:
            raise ValueError(f"model {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(builder=builder, plan=plan, info=info)
        return builder

    return deco


def _ensure_loaded() -> None:
    # The family modules import this one and register themselves on import: a cycle.
    from cnncompare import models  # noqa: F401


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise unknown_name("model", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in zoo order (by year, family, name); ``pattern`` is a glob (``vgg*``)."""
    _ensure_loaded()
    names = sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].info.year, _REGISTRY[n].info.family, n))
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_info(name: str) -> ModelInfo:
    """Paper, year, key ideas and presets of model ``name``; ``ValueError`` if unknown."""
    return _entry(name).info


def _check_stem(stem: str) -> bool:
    """True for the ``small`` stem, False for ``imagenet``; ``ValueError`` otherwise."""
    if stem not in ("small", "imagenet"):
        raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
    return stem == "small"


def spatial_plan(name: str, input_size: int, stem: str = "imagenet") -> Plan:
    """Model ``name``'s spatial plan for a square ``input_size`` with a resolved ``stem``."""
    return _entry(name).plan(input_size, _check_stem(stem))


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
        return stable_hash(dict(self.as_dict(), version=model_info(self.name).version))

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
    input_size = positive_int(canon.input_size if input_size is None else input_size,
                              "input_size")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        small = input_size <= SMALL_INPUT_MAX and input_size < canon.input_size
        stem = "small" if small else "imagenet"
    default_classes = 10 if stem == "small" else canon.num_classes
    num_classes = positive_int(default_classes if num_classes is None else num_classes,
                               "num_classes")
    in_channels = positive_int(canon.in_channels if in_channels is None else in_channels,
                               "in_channels")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width <= 4):
        raise ValueError(f"width must be a number in (0, 4], got {width!r}")
    if out_size(entry.plan(input_size, stem == "small"), input_size) < 1:
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
    """Parameter count of ``get_model(name, **kwargs)``, built on the meta device (no memory).

    Counts are kept on disk (:func:`param_counts_path`), keyed by the configuration and a
    hash of the model code, so the next process reads them instead of building.
    """
    cfg = resolve_config(name, **kwargs)
    counts = _param_counts()
    key = cfg.key()
    if key in counts:
        PARAM_STATS["hits"] += 1
        return counts[key]
    with on_meta_device():
        model = cfg.build()
    n = sum(p.numel() for p in model.parameters())
    PARAM_STATS["built"] += 1
    counts[key] = n
    with contextlib.suppress(OSError):  # a read-only home: count again next time
        write_json(param_counts_path(), counts)
    return n


PARAM_STATS = {"built": 0, "hits": 0}
"""How many parameter counts this process built and how many it found counted before."""

_PARAM_COUNTS: dict[str, dict[str, int]] = {}


def param_counts_path() -> Path:
    """The JSON file of parameter counts for this model code under the results home."""
    from cnncompare import paths

    return paths.home() / "cache" / "params" / f"counts-{model_code_digest()}.json"


def _param_counts() -> dict[str, int]:
    """Configuration key -> parameter count, read from disk once per process and home."""
    path = param_counts_path()
    counts = _PARAM_COUNTS.get(str(path))
    if counts is None:
        data = read_json(path)
        counts = {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(
            data, dict) else {}
        _PARAM_COUNTS[str(path)] = counts
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
    return counts


@functools.lru_cache(maxsize=1)
def model_code_digest() -> str:
    """A hash of the model code (``models/*.py``, ``geometry.py``, this file), read once.

    It keys what is computed from the built networks and kept on disk, so that an edited
    network is counted again even where nobody bumped ``ModelInfo.version``.
    """
    here = Path(__file__).resolve().parent
    files = sorted((here / "models").glob("*.py")) + [here / "geometry.py", Path(__file__)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_RANDOM_FILLS = frozenset({
    torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
    torch.Tensor.bernoulli_, torch.Tensor.cauchy_, torch.Tensor.exponential_,
    torch.Tensor.geometric_, torch.Tensor.log_normal_, torch.Tensor.random_,
})


class _SkipMetaInit(TorchFunctionMode):
    """Return a meta tensor untouched from ``torch.nn.init.*_`` and in-place fills.

    A meta tensor has a shape but no values, so an initialiser has nothing to write; yet
    torch runs the random ones (``normal_``) through its reference implementations,
    whose first use imports TorchDynamo (seconds). Skipping them changes no shape, so
    every parameter count stays exactly what the initialised model has.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func in _RANDOM_FILLS or (getattr(func, "__module__", "") == "torch.nn.init"
                                     and name.endswith("_")):
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta_device() -> Iterator[None]:
    """Build modules on the meta device (shapes, no memory), skipping their initialisers.

    Like ``with torch.device("meta"):``, and fast: see :class:`_SkipMetaInit`. Both are
    torch function modes, which are per thread, so a training thread is never affected.
    """
    with torch.device("meta"), _SkipMetaInit():
        yield


def min_input_size(name: str, stem: str = "small") -> int:
    """The smallest square input model ``name`` accepts with the ``small`` or ``imagenet`` stem."""
    small = _check_stem(stem)
    entry = _entry(name)
    return smallest_input(lambda n: entry.plan(n, small))


# --------------------------------------------------------------------------------------
# Configuration helpers shared by profiling, benchmarking, the CLI and the pages


def as_config(model: ModelConfig | str, **config: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a config or a model name plus ``resolve_config`` args."""
    if isinstance(model, ModelConfig):
        if config:
            raise ValueError("pass either a ModelConfig or configuration arguments, not both")
        return model
    return resolve_config(model, **config)


def preset_config(name: str, preset: str = "canonical", **overrides: Any) -> ModelConfig:
    """Model ``name`` at its ``canonical`` or its recommended ``small`` :class:`Preset`.

    ``overrides`` (``input_size``, ``in_channels``, ``num_classes``, ``width``, ``stem``)
    that are not None win over the preset's values.
    """
    values = dict(model_info(name).preset(preset))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return resolve_config(name, **values)


def config_for(name: str, preset: str | None = None, **config: Any) -> ModelConfig:
    """:func:`preset_config` when a preset is named, else ``resolve_config(name, **config)``."""
    if preset:
        return preset_config(name, preset, **config)
    return resolve_config(name, **config)


def zoo_rows(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The zoo: one row per model (``names``, default every registered one, in zoo order),
    at its canonical preset.

    Keys: ``model, family, year, paper, paper_url, params`` (counted on the meta
    device), ``input`` (``"3x224x224"``), ``num_classes, key_idea`` (the first key idea).
    """
    rows = []
    for name in list_models() if names is None else names:
        info = model_info(name)
        rows.append({
            "model": name,
            "family": info.family,
            "year": info.year,
            "paper": info.paper,
            "paper_url": info.paper_url,
            "params": count_params(name),
            "input": info.canonical.shape(),
            "num_classes": info.canonical.num_classes,
            "key_idea": info.key_ideas[0],
        })
    return rows


def zoo_frame(names: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`zoo_rows` as a DataFrame, one row per model, the columns in that order."""
    import pandas as pd  # imported on first use: the CLI's `list` answers without it

    return pd.DataFrame(zoo_rows(names))
