"""What a network costs to run: a layer table, MACs, FLOPs and memory, cached on disk.

One analysis, :func:`analyze`, gives a :class:`Profile` with several views, the way
fvcore's ``FlopCountAnalysis`` does:

* :meth:`Profile.layer_table`: one row per executed leaf layer (torchinfo, ``verbose=0``)
  with its type, kernel, stride, padding, input and output shapes, parameters and MACs;
  for convolutions and poolings the shape arithmetic
  ``out = floor((in + 2p - k) / s) + 1`` with the numbers filled in.
* :meth:`Profile.summary`: the totals, as :func:`cost_summary` returns them.
* :meth:`Profile.by_module`, :meth:`Profile.by_operator`, :meth:`Profile.skipped`.

What is counted, exactly:

* **MACs** come from fvcore (``FlopCountAnalysis``), which counts one fused multiply-add
  once. It counts convolutions, linear layers and matrix products, plus one operation per
  element for batch normalisation (inference form) and adaptive average pooling. It skips
  the operators it has no formula for (max pooling, element-wise additions, activations);
  those are listed (:meth:`Profile.skipped`), never hidden.
* **FLOPs** come from torch's ``FlopCounterMode``, which counts two floating-point
  operations per multiply-add of convolutions and matrix products, and nothing else.
  ``flops`` is one forward pass of one image; ``train_flops`` is the forward and backward
  pass of one training step, per image.
* **Memory**: ``param_mb`` is the parameters' bytes (buffers such as batch-norm
  statistics excluded); ``activation_mb`` estimates the activations one image keeps in a
  forward pass: the sum of every leaf layer's output bytes, in-place layers not counted
  twice. Measured peaks live in :mod:`cnncompare.benchmark`.

All figures are per image (batch 1) in float32. Results are cached as JSON under
``paths.cache_dir("profile")``, keyed by the model configuration (with the model's
version), the versions of torch, fvcore and torchinfo, and a hash of the model code, so a
warm call reads one small file and returns in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from cnncompare import paths
from cnncompare.registry import ModelConfig, model_info, resolve_config

SCHEMA = 1
"""Bump when the cached analysis changes shape or meaning."""

MB = 1e6
"""Megabytes are decimal here, as torchinfo prints them."""

SUMMARY_KEYS = (
    "params",
    "trainable_params",
    "macs",
    "flops",
    "train_flops",
    "param_mb",
    "activation_mb",
    "skipped_ops",
)
"""The keys of :func:`cost_summary`, in order (other modules rely on exactly these)."""

MACS_VS_FLOPS = (
    "A MAC is one multiply-add (a·b + c); fvcore counts it once, torch's FlopCounterMode "
    "counts it as two FLOPs (a multiply and an add), so FLOPs ≈ 2 × MACs. torchvision's "
    "published \"GFLOPS\" column counts the convolution and linear MACs only (resnet18: "
    "1.81), so compare it with the MACs column here, not with FLOPs."
)
"""The one-line explanation the UI shows next to the MACs and FLOPs columns."""

_SPATIAL_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                  nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_TYPES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)

_STATS = {"computed": 0, "disk_hits": 0}


# --------------------------------------------------------------------------------------
# The analysis object


@dataclass
class Profile:
    """The cost analysis of one model configuration; see the module docstring."""

    config: dict[str, Any]
    label: str
    totals: dict[str, Any]
    layers: list[dict[str, Any]]
    modules: dict[str, dict[str, Any]]  # name -> {"type", "params", "macs", "leaf"}
    macs_by_operator: dict[str, int]
    flops_by_operator: dict[str, int]
    skipped_ops: dict[str, int]
    versions: dict[str, str]
    seconds: float = 0.0  # how long the cold analysis took
    from_cache: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        return self.config.get("name", self.label)

    def summary(self) -> dict[str, Any]:
        """The totals: exactly the keys of :data:`SUMMARY_KEYS`."""
        return {k: self.totals[k] for k in SUMMARY_KEYS}

    def layer_table(self) -> pd.DataFrame:
        """One row per executed leaf layer, in execution order."""
        return pd.DataFrame(self.layers, columns=LAYER_COLUMNS)

    def by_module(self, depth: int = 1) -> pd.DataFrame:
        """MACs and parameters of the modules ``depth`` levels below the model.

        Shallower leaves (a top-level ``fc`` when ``depth`` is 2) are kept, so that the
        ``macs`` column adds up to the model's total. ``share`` is the fraction of MACs.
        """
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        rows = []
        for mod_name, info in self.modules.items():
            if not mod_name:
                continue
            level = mod_name.count(".") + 1
            if level == depth or (level < depth and info["leaf"]):
                rows.append({"module": mod_name, "type": info["type"],
                             "params": info["params"], "macs": info["macs"]})
        frame = pd.DataFrame(rows, columns=["module", "type", "params", "macs"])
        total = self.totals["macs"] or 1
        frame["share"] = frame["macs"] / total
        return frame

    def by_operator(self) -> pd.DataFrame:
        """MACs per fvcore operator kind and FLOPs per aten operator, one table.

        Columns: ``counter`` (``fvcore MACs`` or ``torch FLOPs``), ``operator``, ``count``.
        """
        rows = [{"counter": "fvcore MACs", "operator": op, "count": n}
                for op, n in sorted(self.macs_by_operator.items(), key=lambda kv: -kv[1])]
        rows += [{"counter": "torch FLOPs", "operator": op, "count": n}
                 for op, n in sorted(self.flops_by_operator.items(), key=lambda kv: -kv[1])]
        return pd.DataFrame(rows, columns=["counter", "operator", "count"])

    def skipped(self) -> pd.DataFrame:
        """The operators fvcore met but did not count, with how often each ran."""
        rows = sorted(self.skipped_ops.items(), key=lambda kv: (-kv[1], kv[0]))
        return pd.DataFrame(rows, columns=["operator", "calls"])

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("from_cache")
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        return cls(**data, from_cache=True)


LAYER_COLUMNS = [
    "layer", "block", "depth", "type", "kernel", "stride", "padding", "input_shape",
    "output_shape", "shape_arithmetic", "params", "trainable_params", "macs", "output_mb",
    "shared",
]
"""The columns of :meth:`Profile.layer_table`."""


# --------------------------------------------------------------------------------------
# Public functions


def as_config(model: ModelConfig | str, **config: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a config or a model name plus ``resolve_config`` args."""
    if isinstance(model, ModelConfig):
        if config:
            raise ValueError("pass either a ModelConfig or configuration arguments, not both")
        return model
    return resolve_config(model, **config)


def preset_config(name: str, preset: str = "canonical", **overrides: Any) -> ModelConfig:
    """Model ``name`` at its ``canonical`` or its recommended ``small`` configuration.

    ``overrides`` (``input_size``, ``in_channels``, ``num_classes``, ``width``) win over the
    preset's values.
    """
    info = model_info(name)
    if preset == "canonical":
        base = dict(info.canonical)
    elif preset == "small":
        base = dict(info.small)
    else:
        raise ValueError(f"preset must be 'canonical' or 'small', got {preset!r}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return resolve_config(name, **base)


def config_for(name: str, preset: str | None = None, **config: Any) -> ModelConfig:
    """``preset_config`` when a preset is named, else ``resolve_config(name, **config)``."""
    if preset:
        return preset_config(name, preset, **config)
    return resolve_config(name, **config)


def analyze(model: ModelConfig | str, *, cache: bool = True, **config: Any) -> Profile:
    """The full cost analysis of one configuration, from the disk cache when it is there."""
    cfg = as_config(model, **config)
    path = _cache_path(cfg) if cache else None
    if path is not None and path.exists():
        try:
            profile = Profile.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            profile = None  # a damaged or outdated file: compute again and overwrite it
        if profile is not None:
            _STATS["disk_hits"] += 1
            return profile
    profile = _compute(cfg)
    if path is not None:
        atomic_write(path, json.dumps(profile.to_json()))
    return profile


def cost_summary(cfg: ModelConfig) -> dict[str, Any]:
    """Totals for one configuration, cached on disk.

    Keys, exactly: ``params``, ``trainable_params`` (ints), ``macs``, ``flops``,
    ``train_flops`` (ints, per image), ``param_mb``, ``activation_mb`` (floats, decimal
    MB), ``skipped_ops`` (a short string like ``"aten::max_pool2d (5)"``, or ``""``).
    """
    return analyze(cfg).summary()


def layer_table(cfg: ModelConfig | str, **config: Any) -> pd.DataFrame:
    """The layer table of one configuration; see :meth:`Profile.layer_table`."""
    return analyze(as_config(cfg, **config)).layer_table()


def by_module(cfg: ModelConfig | str, depth: int = 1, **config: Any) -> pd.DataFrame:
    """MACs and parameters per module; see :meth:`Profile.by_module`."""
    return analyze(as_config(cfg, **config)).by_module(depth)


def by_operator(cfg: ModelConfig | str, **config: Any) -> pd.DataFrame:
    """MACs and FLOPs per operator; see :meth:`Profile.by_operator`."""
    return analyze(as_config(cfg, **config)).by_operator()


def profile_models(names: Iterable[str], *, preset: str | None = None,
                   **config: Any) -> pd.DataFrame:
    """One row per model: its configuration and :func:`cost_summary`.

    ``config`` (``input_size``, ``in_channels``, ``num_classes``, ``width``, ``stem``) is
    applied to every model; with ``preset="small"`` or ``"canonical"`` each model starts
    from its own preset and ``config`` overrides it. Columns: ``model, config, input,
    width`` and then :data:`SUMMARY_KEYS`, plus ``macs_per_param``.
    """
    rows = []
    for name in names:
        cfg = config_for(name, preset, **config)
        row = {
            "model": name,
            "config": cfg.label(),
            "input": f"{cfg.in_channels}x{cfg.input_size}x{cfg.input_size}",
            "width": cfg.width,
            "num_classes": cfg.num_classes,
        }
        row.update(cost_summary(cfg))
        row["macs_per_param"] = row["macs"] / row["params"] if row["params"] else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def library_versions() -> dict[str, str]:
    """The versions that key the cache: torch, fvcore and torchinfo."""
    return {
        "torch": torch.__version__,
        "fvcore": _dist_version("fvcore"),
        "torchinfo": _dist_version("torchinfo"),
        "schema": str(SCHEMA),
    }


def cache_stats() -> dict[str, int]:
    """How many analyses this process computed and how many it read from disk."""
    return dict(_STATS)


def clear_cache() -> int:
    """Delete every cached analysis under the current home; returns how many files."""
    return paths.clear_cache("profile")


# --------------------------------------------------------------------------------------
# Computing an analysis


def _compute(cfg: ModelConfig) -> Profile:
    """Analyse a registry configuration (nothing cached)."""
    shape = (1, cfg.in_channels, cfg.input_size, cfg.input_size)
    return analyze_module(cfg.build, shape, config=cfg.as_dict(), label=cfg.label())


def analyze_module(build: Callable[[], nn.Module], input_shape: tuple[int, ...], *,
                   config: dict[str, Any] | None = None, label: str = "") -> Profile:
    """Analyse any network: ``build()`` makes it, ``input_shape`` includes a batch of 1.

    ``build`` is called under the meta device (so it must not need real data), which makes
    the shapes, parameters and FLOPs free; fvcore then traces the model on zeroed CPU
    storage. Nothing is cached: :func:`analyze` adds the cache for registry models.
    """
    start = time.perf_counter()
    shape = tuple(input_shape)
    if not shape or shape[0] != 1:
        raise ValueError(f"input_shape must start with a batch of 1, got {input_shape!r}")
    # Shapes, parameters and FLOPs need no data: the meta device costs no memory or time.
    with torch.device("meta"):
        model = build()
    model.eval()
    layers, activation_bytes = _layer_rows(model, shape)
    flops, flops_by_op = _forward_flops(model, shape)
    train_flops = _train_flops(model, shape)
    # fvcore traces a real forward pass: give the model real (zeroed) storage, no init.
    model.to_empty(device="cpu")
    _zero_(model)
    model.eval()
    fva = _fvcore_analysis(model, torch.zeros(shape))
    module_macs = fva.by_module()
    _fill_layer_macs(layers, module_macs)
    modules = _module_index(model, module_macs)
    skipped = {op: int(n) for op, n in fva.unsupported_ops().items()}
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    totals = {
        "params": int(params),
        "trainable_params": int(trainable),
        "macs": int(fva.total()),
        "flops": int(flops),
        "train_flops": int(train_flops),
        "param_mb": param_bytes / MB,
        "activation_mb": activation_bytes / MB,
        "skipped_ops": format_skipped(skipped),
    }
    _STATS["computed"] += 1
    return Profile(
        config=dict(config or {}),
        label=label or type(model).__name__,
        totals=totals,
        layers=layers,
        modules=modules,
        macs_by_operator={k: int(v) for k, v in fva.by_operator().items()},
        flops_by_operator=flops_by_op,
        skipped_ops=skipped,
        versions=library_versions(),
        seconds=time.perf_counter() - start,
    )


def format_skipped(skipped: dict[str, int]) -> str:
    """``{"aten::add": 8, "aten::max_pool2d": 1}`` -> ``"aten::add (8), aten::max_pool2d (1)"``."""
    ordered = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{op} ({n})" for op, n in ordered)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the Python warnings fvcore's TorchScript tracing raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _fvcore_analysis(model: nn.Module, x: torch.Tensor):
    with quiet():
        from fvcore.nn import FlopCountAnalysis

        fva = FlopCountAnalysis(model, x)
        fva.unsupported_ops_warnings(False)
        fva.uncalled_modules_warnings(False)
        fva.tracer_warnings("none")
        fva.total()  # runs the trace now, inside the quiet block
    return fva


def _first_tensor_sum(out: Any) -> torch.Tensor:
    """A scalar to back-propagate from: the sum of every tensor a model returned."""
    if isinstance(out, torch.Tensor):
        return out.sum()
    tensors = [o for o in (out.values() if isinstance(out, dict) else out)
               if isinstance(o, torch.Tensor)]
    return torch.stack([t.sum() for t in tensors]).sum()


def _forward_flops(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(shape, device=_device_of(model))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    by_op = counter.get_flop_counts().get("Global", {})
    return int(counter.get_total_flops()), {str(op): int(n) for op, n in by_op.items()}


def _train_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Forward + backward FLOPs of one training step, per image.

    Counted on a batch of two (batch normalisation cannot train on one 1x1 map) and
    halved: every counted operator is linear in the batch size.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((2, *shape[1:]), device=_device_of(model))
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            _first_tensor_sum(model(x)).backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()) // 2


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _zero_(model: nn.Module) -> None:
    """Fill parameters and buffers after ``to_empty`` (zeros, and ones for BN variances)."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("running_var"):
                t.fill_(1)
            else:
                t.zero_()


# --------------------------------------------------------------------------------------
# The layer table


def _layer_rows(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[dict[str, Any]], int]:
    """Leaf-layer rows from torchinfo, and the activation bytes of one image."""
    from torchinfo import summary

    with quiet():
        stats = summary(model, input_size=shape, device=_device_of(model), verbose=0,
                        depth=1_000, mode="eval")
    names = {id(m): n for n, m in model.named_modules()}
    rows: list[dict[str, Any]] = []
    activation = 0
    for info in stats.summary_list:
        if not info.is_leaf_layer or not info.executed:
            continue
        module = info.module
        name = names.get(id(module), info.var_name) or "(model)"
        if not getattr(module, "inplace", False):
            activation += info.output_bytes
        kernel, stride, padding, arithmetic = _spatial(module, info.input_size,
                                                       info.output_size)
        rows.append({
            "layer": name,
            "block": name.split(".")[0],
            "depth": info.depth,
            "type": info.class_name,
            "kernel": kernel,
            "stride": stride,
            "padding": padding,
            "input_shape": _shape_text(info.input_size),
            "output_shape": _shape_text(info.output_size),
            "shape_arithmetic": arithmetic,
            "params": 0 if info.is_recursive else int(info.num_params),
            "trainable_params": 0 if info.is_recursive else int(info.trainable_params),
            "macs": 0,  # filled in from fvcore
            "output_mb": info.output_bytes / MB,
            "shared": bool(info.is_recursive),
        })
    return rows, activation


def _fill_layer_macs(rows: list[dict[str, Any]], module_macs: dict[str, int]) -> None:
    """A layer's MACs are fvcore's for its module; a shared module's go to its first call."""
    for row in rows:
        if not row["shared"]:
            path = "" if row["layer"] == "(model)" else row["layer"]
            row["macs"] = int(module_macs.get(path, 0))


def _module_index(model: nn.Module, module_macs: dict[str, int]) -> dict[str, dict[str, Any]]:
    index = {}
    for name, module in model.named_modules():
        index[name] = {
            "type": type(module).__name__,
            "params": int(sum(p.numel() for p in module.parameters())),
            "macs": int(module_macs.get(name, 0)),
            "leaf": not any(True for _ in module.children()),
        }
    return index


def _shape_text(size: Any) -> str:
    """``[1, 64, 56, 56]`` -> ``"64x56x56"`` (the batch dimension dropped)."""
    if isinstance(size, (list, tuple)) and size and all(isinstance(s, int) for s in size):
        return "x".join(str(s) for s in size[1:]) if len(size) > 1 else str(size[0])
    return str(size)


def _pair(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _dims_text(v: Any, ndim: int = 1) -> str:
    """``(3, 3)`` -> ``"3x3"``; ``2`` with ``ndim=2`` -> ``"2x2"``."""
    t = _pair(v)
    if len(t) == 1:
        t = t * ndim
    return "x".join(str(int(x)) for x in t)


def _spatial(module: nn.Module, in_size: Any, out_size: Any) -> tuple[str, str, str, str]:
    """Kernel, stride, padding and the filled-in shape arithmetic of a conv or pool layer."""
    if isinstance(module, _ADAPTIVE_TYPES):
        out = _dims_text(module.output_size, int(type(module).__name__[-2]))
        return "", "", "", f"adaptive: output fixed at {out}"
    if not isinstance(module, _SPATIAL_TYPES):
        return "", "", "", ""
    k, s, p = module.kernel_size, module.stride, module.padding
    ndim = int(type(module).__name__[-2]) if type(module).__name__[-2].isdigit() else 1
    kernel, stride, padding = _dims_text(k, ndim), _dims_text(s, ndim), _dims_text(p, ndim)
    if isinstance(p, str):  # "same" / "valid"
        return kernel, stride, p, ""
    try:
        n_in = int(in_size[2])
        n_out = int(out_size[2])
    except (IndexError, TypeError, ValueError):
        return kernel, stride, padding, ""
    k0, s0, p0 = _pair(k)[0], _pair(s)[0], _pair(p)[0]
    d0 = _pair(getattr(module, "dilation", 1))[0]
    ceil_mode = bool(getattr(module, "ceil_mode", False))
    return kernel, stride, padding, shape_arithmetic(n_in, k0, s0, p0, d0, ceil_mode, n_out)


def shape_arithmetic(n_in: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False,
                     n_out: int | None = None) -> str:
    """``"floor((224 + 2*3 - 7) / 2) + 1 = 112"``: the output size, with its numbers.

    Dilation ``d`` > 1 shows the effective kernel ``d*(k-1)+1``. When ``n_out`` (what the
    layer really produced) differs from the formula (PyTorch's ceil-mode rule drops a
    window that would start in the padding), the real size is given too.
    """
    k_text = str(k) if d == 1 else f"({d}*({k}-1)+1)"
    k_eff = d * (k - 1) + 1
    rounding = "ceil" if ceil_mode else "floor"
    span = n_in + 2 * p - k_eff
    value = (math.ceil(span / s) if ceil_mode else span // s) + 1
    text = f"{rounding}(({n_in} + 2*{p} - {k_text}) / {s}) + 1 = {value}"
    if n_out is not None and n_out != value:
        text += f" (PyTorch gives {n_out})"
    return text


# --------------------------------------------------------------------------------------
# The disk cache


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the model code and of this module, read once per process.

    Part of the cache key, so that an edited network (or counting rule) is profiled again
    even where nobody bumped ``ModelInfo.version``.
    """
    here = Path(__file__).resolve().parent
    files = sorted((here / "models").glob("*.py")) + [Path(__file__).resolve()]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_path(cfg: ModelConfig) -> Path:
    payload = {"config": cfg.key(), "versions": library_versions(), "code": code_digest()}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    return paths.cache_dir("profile") / f"{cfg.name}-{digest}.json"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader ever sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"
