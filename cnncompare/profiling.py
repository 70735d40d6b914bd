"""What a network costs to run: MACs, FLOPs, parameters and memory, cached on disk.

One analysis, :func:`analyze`, gives a :class:`Profile` with several views, the way
fvcore's ``FlopCountAnalysis`` does:

* :meth:`Profile.layer_table`: one row per executed leaf layer, with its shapes, shape
  arithmetic, parameters and MACs (:mod:`cnncompare.layer_table`).
* :meth:`Profile.summary`: the totals, as :func:`cost_summary` returns them.
* :meth:`Profile.by_module`, :meth:`Profile.by_operator`, :meth:`Profile.skipped`.

What is counted, exactly:

* **MACs** are fvcore's (``FlopCountAnalysis``), which counts one fused multiply-add
  once. It counts convolutions, linear layers and matrix products; batch normalisation
  in its inference form as two operations per element (a scale and a shift; one without
  the affine parameters); adaptive average pooling as one per input element. It skips
  the operators it has no formula for (max pooling, element-wise additions, activations,
  local response normalisation); those are listed (:meth:`Profile.skipped`), never hidden.
  They are counted by :mod:`cnncompare.counting`, which applies fvcore's formulas on the
  meta device (milliseconds, equal to fvcore's figures for the whole zoo: a test
  compares); fvcore itself traces a real forward pass (seconds) and is the fallback for
  an operator that module does not reproduce.
* **FLOPs** are torch's (the formulas of ``FlopCounterMode``, which counts two
  floating-point operations per multiply-add of convolutions and matrix products, and
  nothing else), counted by :class:`cnncompare.counting.FlopCounter`, which leaves out
  ``FlopCounterMode``'s global module hooks so that a training thread beside it is not
  slowed. ``flops`` is one forward pass of one image.
* **Training FLOPs** (``train_flops``) are the forward and backward pass of one training
  step, per image. The rule, for every convolution and linear layer: the forward product,
  then in the backward pass the weight gradient (one product of the same size) and the
  input gradient (another), except the first layer's input gradient, which nothing needs
  (the image does not require a gradient). So a network's backward is about twice its
  forward. torch's counter ignores a grouped convolution's groups in its weight gradient
  and counts it ``groups`` times over (AlexNet-2012's two towers: 3x the forward instead
  of 2x); here it is counted once, as the grouped product it is.
* **Memory**: ``param_mb`` is the parameters' bytes (buffers such as batch-norm
  statistics excluded); ``activation_mb`` estimates the activations one image keeps in a
  forward pass: the sum of every executed leaf layer's output bytes, in float32 at batch 1,
  leaving out the outputs of in-place layers (``ReLU(inplace=True)`` overwrites its input).
  Measured peaks live in :mod:`cnncompare.benchmark`.

All figures are per image (batch 1) in float32. Results are cached as JSON under
``paths.cache_dir("profile")``, keyed by the model configuration (with the model's
version), the versions of torch, fvcore and torchinfo, and a hash of the model and
counting code, so a warm call reads one small file and returns in milliseconds.

:func:`forward_costs` is the light version the Overview needs: parameters, MACs and
forward FLOPs only, from one forward pass on the meta device, cached beside the full
analyses (about 0.1 s a network cold on one core, once torch's meta kernels are loaded).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import threading
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
from cnncompare.cache import read_json, stable_hash, write_json
from cnncompare.cost_notes import ACTIVATION_NOTE, MACS_VS_FLOPS  # noqa: F401 - torch-free
from cnncompare.counting import (
    CountingError,
    FlopCounter,
    TrainStepFlopCounter,
    count_macs_and_flops,
    fvcore_macs,
)
from cnncompare.layer_table import LAYER_COLUMNS, MB, fill_layer_macs, layer_rows
from cnncompare.receptive_field import RF_COLUMNS, receptive_field
from cnncompare.registry import ModelConfig, as_config, config_for, on_meta_device

SCHEMA = 2  # 2: a grouped convolution's weight gradient counted once in train_flops
"""Bump when the cached analysis changes shape or meaning."""

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

FORWARD_KEYS = ("params", "macs", "flops")
"""The keys of :func:`forward_costs`."""

_STATS = {"computed": 0, "disk_hits": 0, "forward_computed": 0, "forward_disk_hits": 0,
          "fvcore_fallbacks": 0, "backward_runs": 0}


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

    def summary(self) -> dict[str, Any]:
        """The totals: exactly the keys of :data:`SUMMARY_KEYS`."""
        return {k: self.totals[k] for k in SUMMARY_KEYS}

    def layer_table(self) -> pd.DataFrame:
        """One row per executed leaf layer, in execution order (:mod:`cnncompare.layer_table`)."""
        frame = pd.DataFrame(self.layers, columns=LAYER_COLUMNS)
        return frame.astype(dict.fromkeys(RF_COLUMNS, "Int64"))  # whole numbers, or empty

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


# --------------------------------------------------------------------------------------
# Public functions


def analyze(model: ModelConfig | str, *, cache: bool = True, **config: Any) -> Profile:
    """The full cost analysis of one configuration, from the disk cache when it is there."""
    cfg = as_config(model, **config)
    path = _cache_path_or_none(cfg) if cache else None
    data = read_json(path) if path is not None else None
    if isinstance(data, dict):
        try:
            profile = Profile.from_json(data)
        except TypeError:
            profile = None  # an outdated file: compute again and overwrite it
        if profile is not None:
            _STATS["disk_hits"] += 1
            return profile
    profile = _compute(cfg)
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only home: computed again next time
            write_json(path, profile.to_json())
    return profile


def cost_summary(cfg: ModelConfig) -> dict[str, Any]:
    """Totals for one configuration, cached on disk.

    Keys, exactly: ``params``, ``trainable_params`` (ints), ``macs``, ``flops``,
    ``train_flops`` (ints, per image), ``param_mb``, ``activation_mb`` (floats, decimal
    MB), ``skipped_ops`` (a short string like ``"aten::max_pool2d (5)"``, or ``""``).
    """
    return analyze(cfg).summary()


def profile_models(names: Iterable[str], *, preset: str | None = None,
                   **config: Any) -> pd.DataFrame:
    """One row per model: its configuration and :func:`cost_summary`.

    ``config`` (``input_size``, ``in_channels``, ``num_classes``, ``width``, ``stem``) is
    applied to every model; with ``preset="small"`` or ``"canonical"`` each model starts
    from its own preset and ``config`` overrides it. Columns: ``model, config, input,
    width, num_classes``, then :data:`SUMMARY_KEYS`, then ``macs_per_param`` and
    ``receptive_field`` (px: a unit of the last feature map, see
    :func:`cnncompare.receptive_field.receptive_field`).
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
        row["receptive_field"] = receptive_field(cfg)
        rows.append(row)
    return pd.DataFrame(rows)


class BackgroundCosts:
    """:func:`forward_costs` of several configurations, counted in a daemon thread and read
    as they arrive (the Overview draws its table at once and fills it in).

    Results are keyed by model name; a configuration that fails is kept in
    :meth:`errors` with its message. ``then`` runs in the same thread once every count is
    in (the app warms what its next pages need there); its failure is kept in
    :attr:`then_error`, never raised. Counting runs on the meta device: no memory, and a
    training thread beside it is not slowed by hooks (see :mod:`cnncompare.counting`).

    The thread waits while a training job of this process runs, before each
    configuration and before ``then`` (:func:`cnncompare.jobs.wait_while_training`):
    counting is Python work that would take the GIL from the training thread between its
    operators. :meth:`paused` says when it waits; :attr:`pauses` counts the waits.
    """

    def __init__(self, configs: Iterable[ModelConfig],
                 then: Callable[[], Any] | None = None):
        self.configs = list(configs)
        self._then = then
        self.then_error: str | None = None
        self._counted = threading.Event()
        self._results: dict[str, dict[str, int]] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self.pauses = 0
        self._thread = threading.Thread(target=self._run, name="cnncompare-costs",
                                         daemon=True)
        self._thread.start()

    def _yield_to_training(self) -> None:
        from cnncompare import jobs  # stdlib only at import: cheap

        if jobs.training_running():
            self.pauses += 1
            self._paused.set()
            jobs.wait_while_training()
            self._paused.clear()

    def paused(self) -> bool:
        """Whether the thread is waiting for a training job to finish."""
        return self._paused.is_set()

    def wait_paused(self, timeout: float | None = None) -> bool:
        """Wait until the thread waits for a training job (tests); True when it does."""
        return self._paused.wait(timeout)

    def _run(self) -> None:
        for cfg in self.configs:
            self._yield_to_training()
            try:
                result = forward_costs(cfg)
            except Exception as exc:  # noqa: BLE001 - kept and shown beside the table
                with self._lock:
                    self._errors[cfg.name] = str(exc)
            else:
                with self._lock:
                    self._results[cfg.name] = result
        self._counted.set()
        if self._then is not None:
            self._yield_to_training()
            try:
                self._then()
            except Exception as exc:  # noqa: BLE001 - a warm-up that fails changes nothing
                self.then_error = f"{type(exc).__name__}: {exc}"

    def results(self) -> dict[str, dict[str, int]]:
        """The costs counted so far: model name -> ``{"params", "macs", "flops"}``."""
        with self._lock:
            return dict(self._results)

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    def done(self) -> bool:
        """Whether every configuration is counted (``then`` may still be running)."""
        return self._counted.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every configuration is counted (or ``timeout`` s); True when done."""
        return self._counted.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread has finished, ``then`` included; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


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

    ``build`` is called on the meta device (so it must not need real data), which makes
    the shapes, parameters, MACs and FLOPs free. Only where :mod:`cnncompare.counting`
    meets an operator it cannot count as fvcore does is the model materialised (zeroed,
    on the CPU) for fvcore to trace. Nothing is cached: :func:`analyze` adds the cache.
    """
    start = time.perf_counter()
    shape = tuple(input_shape)
    if not shape or shape[0] != 1:
        raise ValueError(f"input_shape must start with a batch of 1, got {input_shape!r}")
    # Shapes, parameters and counts need no data: the meta device costs no memory or time.
    with on_meta_device():
        model = build()
    model.eval()
    with quiet():
        layers, activation_bytes = layer_rows(model, shape, _device_of(model))
    train_flops = _train_flops(model, shape)
    macs, flops, flops_by_op = _forward_counts(model, shape)  # last: may materialise it
    module_macs = macs.by_module()
    fill_layer_macs(layers, module_macs)
    modules = _module_index(model, module_macs)
    skipped = {op: int(n) for op, n in macs.unsupported_ops().items()}
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    totals = {
        "params": int(params),
        "trainable_params": int(trainable),
        "macs": int(macs.total()),
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
        macs_by_operator={k: int(v) for k, v in macs.by_operator().items()},
        flops_by_operator=flops_by_op,
        skipped_ops=skipped,
        versions=library_versions(),
        seconds=time.perf_counter() - start,
    )


def forward_costs(model: ModelConfig | str, *, cache: bool = True,
                  **config: Any) -> dict[str, int]:
    """Parameters, MACs and forward FLOPs per image of one configuration (ints).

    The same figures as :func:`cost_summary` (taken from its cached analysis when there is
    one), from one forward pass on the meta device otherwise, and cached on disk.
    """
    cfg = as_config(model, **config)
    full_path = _cache_path_or_none(cfg) if cache else None
    path = _cache_path_or_none(cfg, "forward") if cache else None
    if full_path is not None and path is not None:
        full = read_json(full_path)
        if isinstance(full, dict) and isinstance(full.get("totals"), dict) and all(
                k in full["totals"] for k in FORWARD_KEYS):
            _STATS["forward_disk_hits"] += 1
            return {k: int(full["totals"][k]) for k in FORWARD_KEYS}
        hit = read_json(path)
        if isinstance(hit, dict) and all(isinstance(hit.get(k), int) for k in FORWARD_KEYS):
            _STATS["forward_disk_hits"] += 1
            return {k: hit[k] for k in FORWARD_KEYS}
    shape = (1, cfg.in_channels, cfg.input_size, cfg.input_size)
    with on_meta_device():
        module = cfg.build()
    module.eval()
    params = sum(p.numel() for p in module.parameters())
    macs, flops, _ = _forward_counts(module, shape)
    result = {"params": int(params), "macs": int(macs.total()), "flops": int(flops)}
    _STATS["forward_computed"] += 1
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only home: computed again next time
            write_json(path, result)
    return result


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


def _first_tensor_sum(out: Any) -> torch.Tensor:
    """A scalar to back-propagate from: the sum of every tensor a model returned."""
    if isinstance(out, torch.Tensor):
        return out.sum()
    tensors = [o for o in (out.values() if isinstance(out, dict) else out)
               if isinstance(o, torch.Tensor)]
    return torch.stack([t.sum() for t in tensors]).sum()


def _forward_counts(model: nn.Module, shape: tuple[int, ...]):
    """fvcore's MACs and torch's FLOPs (total and per operator) of one forward pass.

    One pass on the meta device counts both; where :mod:`cnncompare.counting` cannot
    reproduce fvcore, the model is materialised (zeroed) and fvcore traces it.
    """
    try:
        return count_macs_and_flops(model, torch.zeros(shape, device=_device_of(model)))
    except CountingError:
        _STATS["fvcore_fallbacks"] += 1
    counter = FlopCounter()
    with counter, torch.no_grad():
        model(torch.zeros(shape, device=_device_of(model)))
    flops, by_op = counter.total(), counter.by_operator()
    model.to_empty(device="cpu")
    _zero_(model)
    model.eval()
    with quiet():
        macs = fvcore_macs(model, torch.zeros(shape))
    return macs, flops, by_op


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                         _dilation, transposed, _output_padding, groups, output_mask,
                         out_shape=None, **kwargs) -> int:
    """A convolution's backward FLOPs: torch's formula, the grouped weight gradient fixed.

    The input gradient is a (transposed) convolution of the output gradient with the
    weight; the weight gradient a convolution of the input with the output gradient,
    which for ``groups`` > 1 is ``groups`` separate products of ``1/groups`` the channels.
    torch's ``conv_backward_flop`` counts that product over all channel pairs, ``groups``
    times too many; this divides it back. For ``groups=1`` the two formulas agree.
    """
    from torch.utils.flop_counter import conv_flop_count  # on first use: it loads triton

    def swap(shape):  # batch <-> channels
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(swap(a), swap(b), swap(out_shape[1])) // groups
    return flops


def _train_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Forward + backward FLOPs of one training step, per image (rule: module docstring).

    Counted on a batch of two (batch normalisation cannot train on one 1x1 map) and
    halved: every counted operator is linear in the batch size. The backward products
    are derived from the forward pass (:class:`~cnncompare.counting.TrainStepFlopCounter`);
    where that counter has no rule, the backward pass runs under the FLOP counter.
    """
    x = torch.zeros((2, *shape[1:]), device=_device_of(model))
    was_training = model.training
    model.train()
    custom = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    try:
        try:
            counter = TrainStepFlopCounter(custom)
            with counter, torch.enable_grad():
                model(x)
        except CountingError:
            _STATS["backward_runs"] += 1
            counter = FlopCounter(custom)
            with counter, torch.enable_grad():
                _first_tensor_sum(model(x)).backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return counter.total() // 2


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


# --------------------------------------------------------------------------------------
# The disk cache


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the model code and of the counting code, read once per process.

    Part of the cache key, so that an edited network (or counting rule) is profiled again
    even where nobody bumped ``ModelInfo.version``.
    """
    here = Path(__file__).resolve().parent
    files = sorted((here / "models").glob("*.py")) + [
        here / "geometry.py", here / "layer_table.py", here / "counting.py",
        here / "dataflow.py", here / "receptive_field.py", Path(__file__).resolve()]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_path(cfg: ModelConfig, kind: str = "full") -> Path:
    """The cache file of ``cfg``'s full analysis, or (``kind="forward"``) its forward costs."""
    payload = {"config": cfg.key(), "versions": library_versions(), "code": code_digest()}
    prefix = "" if kind == "full" else f"{kind}-"
    return paths.cache_dir("profile") / f"{prefix}{cfg.name}-{stable_hash(payload, 20)}.json"


def _cache_path_or_none(cfg: ModelConfig, kind: str = "full") -> Path | None:
    """:func:`_cache_path`, or None where the cache folder cannot be made (read-only home)."""
    try:
        return _cache_path(cfg, kind)
    except OSError:
        return None


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"
