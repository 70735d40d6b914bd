"""fvcore's MAC count, without TorchScript: counted on the meta device in milliseconds.

fvcore's ``FlopCountAnalysis`` traces a real forward pass with TorchScript (seconds per
network at 224 px: the convolutions really run) and applies a formula to each operator of
the trace. :class:`MacCounter` applies the same formulas, with the same operator names,
module attribution and list of skipped operators, to the calls it sees during a forward
pass on the meta device, where nothing is computed. ``tests/test_counting.py`` checks
that every figure equals fvcore's for the whole zoo at its canonical and small
configurations; :func:`fvcore_macs` stays as the reference, and as the fallback for an
operator whose formula is not reproduced here (:class:`CountingError`).

How the operators are named, as TorchScript's tracer does: a call from Python into a
built-in torch function or tensor method is one operator, named ``aten::<name>``
(``x + y`` is ``aten::add``, ``x += y`` ``aten::add_``, every convolution
``aten::_convolution``); a torch function written in Python (``F.batch_norm``,
``F.local_response_norm``) is not an operator itself: the built-ins it calls are.

The formulas (fvcore 0.1.5, ``fvcore/nn/jit_handles.py``), one multiply-add counting 1:

* convolution: batch x prod(weight shape) x prod(output spatial shape) (a transposed one:
  x prod(input spatial shape));
* ``linear``: prod(input shape) x output features; ``addmm``: n x k x m; ``mm`` and
  ``matmul``: prod(first shape) x last dimension of the second; ``bmm``: n x c x t x d;
* ``batch_norm`` in inference: 1 per input element, 2 with the affine parameters; in
  training, and ``group_norm``/``layer_norm``/``instance_norm``: 4 per element, 5 with
  the affine parameters;
* ``adaptive_avg_pool2d``: 1 per input element; ``upsample_nearest2d``: 1 per output
  element, ``upsample_bilinear2d`` and ``grid_sampler``: 4;
* any other operator counts nothing: it is *skipped* (listed with its number of calls),
  unless fvcore ignores it on purpose (views, ``relu``, ``cat``, ``dropout``...).
"""

from __future__ import annotations

import contextlib
import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class CountingError(RuntimeError):
    """An operator this counter cannot count exactly as fvcore does (use :func:`fvcore_macs`)."""


# fvcore 0.1.5's ``_IGNORED_OPS`` (jit_analysis.py): met, neither counted nor listed.
FVCORE_IGNORED = frozenset({
    "aten::Int", "aten::ScalarImplicit", "aten::__and__", "aten::arange",
    "aten::bitwise_not", "aten::cat", "aten::chunk", "aten::clamp", "aten::clamp_",
    "aten::constant_pad_nd", "aten::contiguous", "aten::copy_", "aten::detach",
    "aten::dropout", "aten::empty", "aten::eq", "aten::expand", "aten::flatten",
    "aten::floor", "aten::floor_divide", "aten::full", "aten::full_like", "aten::gather",
    "aten::ge", "aten::gt", "aten::index", "aten::index_put_", "aten::masked_fill",
    "aten::max", "aten::narrow", "aten::new_empty", "aten::new_full", "aten::new_zeros",
    "aten::nonzero", "aten::ones", "aten::permute", "aten::relu", "aten::relu_",
    "aten::remainder", "aten::reshape", "aten::roll", "aten::select", "aten::size",
    "aten::slice", "aten::split", "aten::split_with_sizes", "aten::squeeze", "aten::stack",
    "aten::t", "aten::to", "aten::transpose", "aten::type_as", "aten::unbind",
    "aten::unsqueeze", "aten::unsqueeze_", "aten::view", "aten::zeros", "aten::zeros_like",
})

# Calls that read a tensor's metadata or manage autograd: the tracer records no operator.
_NOT_OPERATORS = frozenset({
    "__get__", "__set__", "__len__", "__bool__", "__float__", "__int__", "__index__",
    "__format__", "__repr__", "__hash__", "__reduce_ex__", "__deepcopy__", "__contains__",
    "__array__", "dim", "ndimension", "numel", "is_contiguous", "is_floating_point",
    "is_complex", "element_size", "data_ptr", "stride", "storage_offset", "requires_grad_",
    "register_hook", "tolist", "item", "get_device", "untyped_storage", "has_names",
    "_is_view", "_set_grad_enabled", "_has_compatible_shallow_copy_type", "is_nonzero",
})

# Python operators on tensors, by the aten operator the tracer records for them.
_DUNDER_OPS = {
    "__add__": "add", "__radd__": "add", "__iadd__": "add_",
    "__sub__": "sub", "__rsub__": "rsub", "__isub__": "sub_",
    "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul_",
    "__truediv__": "div", "__rtruediv__": "reciprocal", "__itruediv__": "div_",
    "__div__": "div", "__idiv__": "div_",
    "__floordiv__": "floor_divide", "__rfloordiv__": "floor_divide",
    "__mod__": "remainder", "__pow__": "pow", "__rpow__": "pow", "__ipow__": "pow_",
    "__matmul__": "matmul", "__rmatmul__": "matmul", "__neg__": "neg", "__abs__": "abs",
    "__eq__": "eq", "__ne__": "ne", "__lt__": "lt", "__le__": "le", "__gt__": "gt",
    "__ge__": "ge", "__and__": "__and__", "__or__": "__or__", "__xor__": "__xor__",
    "__invert__": "bitwise_not", "__getitem__": "slice", "__setitem__": "copy_",
}

_CONVOLUTIONS = {
    "conv1d": False, "conv2d": False, "conv3d": False, "convolution": None,
    "_convolution": None, "conv_transpose1d": True, "conv_transpose2d": True,
    "conv_transpose3d": True,
}
"""Convolution functions (all traced as ``aten::_convolution``): transposed or not (None:
read from the call's ``transposed`` argument)."""


def jit_name(func: Callable[..., Any]) -> str | None:
    """The name TorchScript's tracer gives a call of built-in ``func``; None: no operator."""
    name = getattr(func, "__name__", None) or str(func)
    if name in _NOT_OPERATORS:
        return None
    if name in _CONVOLUTIONS:
        return "aten::_convolution"
    if name.startswith("__") and name.endswith("__"):
        name = _DUNDER_OPS.get(name, name)
    return f"aten::{name}"


# --------------------------------------------------------------------------------------
# The formulas, one per operator fvcore counts: (func, args, kwargs, out) -> {key: MACs}


def _arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str,
         default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _shape(value: Any) -> list[int]:
    if not isinstance(value, torch.Tensor):
        raise CountingError(f"expected a tensor, got {type(value).__name__}")
    return list(value.shape)


def _conv(func, args, kwargs, out) -> dict[str, int]:
    x = _shape(_arg(args, kwargs, 0, "input"))
    w = _shape(_arg(args, kwargs, 1, "weight"))
    transposed = _CONVOLUTIONS.get(getattr(func, "__name__", ""))
    if transposed is None:
        transposed = bool(_arg(args, kwargs, 6, "transposed"))
    spatial = (x if transposed else _shape(out))[2:]
    return {"conv": x[0] * prod(w) * prod(spatial)}


def _linear(func, args, kwargs, out) -> dict[str, int]:
    x = _shape(_arg(args, kwargs, 0, "input"))
    w = _shape(_arg(args, kwargs, 1, "weight"))
    return {"linear": prod(x) * w[0]}


def _addmm(func, args, kwargs, out) -> dict[str, int]:
    a = _shape(_arg(args, kwargs, 1, "mat1"))
    b = _shape(_arg(args, kwargs, 2, "mat2"))
    if len(a) != 2 or len(b) != 2:
        raise CountingError("addmm expects two matrices")
    return {"addmm": a[0] * a[1] * b[1]}


def _matmul(key: str):
    def count(func, args, kwargs, out) -> dict[str, int]:
        a = _shape(_arg(args, kwargs, 0, "input"))
        b = _shape(_arg(args, kwargs, 1, "other" if key == "matmul" else "mat2"))
        if len(b) < 2 or a[-1] != b[-2]:
            raise CountingError(f"{key} of shapes {a} and {b}: fvcore's formula does not apply")
        return {key: prod(a) * b[-1]}

    return count


def _bmm(func, args, kwargs, out) -> dict[str, int]:
    n, c, t = _shape(_arg(args, kwargs, 0, "input"))
    d = _shape(_arg(args, kwargs, 1, "mat2"))[-1]
    return {"bmm": n * c * t * d}


def _norm(key: str, weight_index: int, weight_name: str):
    def count(func, args, kwargs, out) -> dict[str, int]:
        x = _shape(_arg(args, kwargs, 0, "input"))
        affine = _arg(args, kwargs, weight_index, weight_name) is not None
        return {key: prod(x) * (5 if affine else 4)}

    return count


def _batch_norm(func, args, kwargs, out) -> dict[str, int]:
    x = _shape(_arg(args, kwargs, 0, "input"))
    affine = _arg(args, kwargs, 1, "weight") is not None
    if bool(_arg(args, kwargs, 5, "training")):
        return {"batch_norm": prod(x) * (5 if affine else 4)}
    return {"batch_norm": prod(x) * (2 if affine else 1)}


def _per_element(key: str, of_input: int, of_output: int):
    def count(func, args, kwargs, out) -> dict[str, int]:
        n = 0
        if of_input:
            n += of_input * prod(_shape(_arg(args, kwargs, 0, "input")))
        if of_output:
            n += of_output * prod(_shape(out if isinstance(out, torch.Tensor) else out[0]))
        return {key: n}

    return count


def _einsum(func, args, kwargs, out) -> dict[str, int]:
    raise CountingError("einsum: counted by fvcore only")


FORMULAS: dict[str, Callable[..., dict[str, int]]] = {
    "aten::_convolution": _conv,
    "aten::linear": _linear,
    "aten::addmm": _addmm,
    "aten::mm": _matmul("mm"),
    "aten::matmul": _matmul("matmul"),
    "aten::bmm": _bmm,
    "aten::einsum": _einsum,
    "aten::batch_norm": _batch_norm,
    "aten::group_norm": _norm("group_norm", 2, "weight"),
    "aten::layer_norm": _norm("layer_norm", 2, "weight"),
    "aten::instance_norm": _norm("instance_norm", 1, "weight"),
    "aten::upsample_nearest2d": _per_element("upsample_nearest2d", 0, 1),
    "aten::upsample_bilinear2d": _per_element("upsample_bilinear2d", 0, 4),
    "aten::adaptive_avg_pool2d": _per_element("adaptive_avg_pool2d", 1, 0),
    "aten::grid_sampler": _per_element("grid_sampler", 0, 4),
}
"""fvcore's default operator handles, by traced operator name."""


# --------------------------------------------------------------------------------------
# The counter


@dataclass
class MacCount:
    """A finished count, read the way fvcore's ``FlopCountAnalysis`` is read."""

    counts: dict[str, Counter] = field(default_factory=dict)  # module -> operator -> MACs
    skipped: dict[str, Counter] = field(default_factory=dict)  # module -> operator -> calls

    def total(self, module_name: str = "") -> int:
        """MACs of ``module_name`` (default: the whole model) and everything it calls."""
        return int(sum(self.counts[module_name].values()))

    def by_module(self) -> Counter:
        """MACs per module (canonical names; ``""`` is the model)."""
        return Counter({name: int(sum(c.values())) for name, c in self.counts.items()})

    def by_operator(self, module_name: str = "") -> Counter:
        """MACs per operator key (``conv``, ``linear``, ``batch_norm``...)."""
        return Counter(self.counts[module_name])

    def unsupported_ops(self, module_name: str = "") -> Counter:
        """Operators met but not counted (``aten::max_pool2d``...), with their calls."""
        return Counter(self.skipped[module_name])


class MacCounter(TorchFunctionMode):
    """Counts fvcore's MACs of the forward passes run inside ``with counter.watching():``.

    Each counted or skipped operator is charged to the innermost module whose call it ran
    in (by that module's first name, as fvcore does with a module reachable by two names)
    and to all of that module's owners. Torch function modes are per thread, so only
    this thread's calls are counted. Raises :class:`CountingError` for an operator whose
    fvcore formula is not reproduced here.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names: dict[int, str] = {}
        self._all_names: list[str] = []
        self._walk(model, "")
        self._scope: list[str] = [""]
        self._by_scope: dict[str, Counter] = {}
        self._skipped_by_scope: dict[str, Counter] = {}
        self._descending: list[Callable[..., Any]] = []

    def _walk(self, module: nn.Module, prefix: str) -> None:
        # fvcore's order (fvcore.common.checkpoint._named_modules_with_dup): a module
        # reachable by two names is known by the first.
        self.names.setdefault(id(module), prefix)
        self._all_names.append(self.names[id(module)])
        for child_name, child in module._modules.items():
            if child is not None:
                self._walk(child, f"{prefix}.{child_name}" if prefix else child_name)

    @contextlib.contextmanager
    def watching(self) -> Iterator[MacCounter]:
        """Count inside this block: hooks on every module for the scopes, and the mode."""
        handles = []
        seen = set()
        try:
            for module in self.model.modules():
                if id(module) in seen:
                    continue
                seen.add(id(module))
                name = self.names[id(module)]
                handles.append(module.register_forward_pre_hook(self._push(name)))
                handles.append(module.register_forward_hook(self._pop))
            with self:
                yield self
        finally:
            for handle in handles:
                handle.remove()

    def _push(self, name: str):
        def hook(module, inputs):
            self._scope.append(name)

        return hook

    def _pop(self, module, inputs, output) -> None:
        self._scope.pop()

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if isinstance(func, types.FunctionType) and func not in self._descending:
            body = _without_dispatch_check(func)
            if body is not None:
                # Written in Python: the tracer records the built-ins it calls, not the
                # function itself, so run its body with this counter watching.
                self._descending.append(func)
                try:
                    with self:
                        return body(*args, **kwargs)
                finally:
                    self._descending.pop()
        out = func(*args, **kwargs)
        op = jit_name(func)
        if op is None:
            return out
        scope = self._scope[-1]
        formula = FORMULAS.get(op)
        if formula is not None:
            counts = self._by_scope.setdefault(scope, Counter())
            for key, n in formula(func, args, kwargs, out).items():
                counts[key] += int(n)
        elif op not in FVCORE_IGNORED:
            self._skipped_by_scope.setdefault(scope, Counter())[op] += 1
        return out

    def result(self) -> MacCount:
        """The counts per module, each module's including those of the modules it owns."""
        result = MacCount(counts={n: Counter() for n in self._all_names},
                          skipped={n: Counter() for n in self._all_names})
        for source, target in ((self._by_scope, result.counts),
                               (self._skipped_by_scope, result.skipped)):
            for scope, counter in source.items():
                for owner in _owners(scope):
                    # Counter's += keeps positive entries only, as fvcore's sums do.
                    target[owner] = target.get(owner, Counter()) + counter
        return result


_DISPATCH_CHECKS = ("has_torch_function", "has_torch_function_unary",
                    "has_torch_function_variadic")
_BODIES: dict[Callable[..., Any], Callable[..., Any] | None] = {}


def _no_torch_function(*args: Any) -> bool:
    return False


def _without_dispatch_check(func: types.FunctionType) -> Callable[..., Any] | None:
    """A copy of ``func`` whose ``has_torch_function*`` checks say no; None if it has none.

    A torch function written in Python first hands itself to the active torch function
    mode; its body runs only when no mode is active, and then the built-ins it calls are
    not seen either. This copy (same code, closure and defaults; a copy of its module's
    globals with the checks replaced) runs the body while the counter stays active. Made
    once per function; nothing shared is changed, so other threads are unaffected.
    """
    if func in _BODIES:
        return _BODIES[func]
    body = None
    if any(name in func.__code__.co_names for name in _DISPATCH_CHECKS):
        scope = dict(func.__globals__)
        for name in _DISPATCH_CHECKS:
            if name in scope:
                scope[name] = _no_torch_function
        body = types.FunctionType(func.__code__, scope, func.__name__, func.__defaults__,
                                  func.__closure__)
        body.__kwdefaults__ = func.__kwdefaults__
    _BODIES[func] = body
    return body


def _owners(name: str) -> list[str]:
    """``"layer1.0.conv1"`` -> ``["", "layer1", "layer1.0", "layer1.0.conv1"]``."""
    if not name:
        return [""]
    parts = name.split(".")
    return [""] + [".".join(parts[: k + 1]) for k in range(len(parts))]


def count_macs(model: nn.Module, x: torch.Tensor) -> MacCount:
    """fvcore's MACs of ``model(x)``: on the meta device, nothing is computed."""
    counter = MacCounter(model)
    with torch.no_grad(), counter.watching():
        model(x)
    return counter.result()


class FlopCounter(TorchDispatchMode):
    """torch's ``FlopCounterMode`` without its module tracker: the same formulas, this
    thread only.

    ``FlopCounterMode`` follows modules with *global* module hooks (``ModuleTracker``),
    which run in every thread while it counts: a training thread of the same server would
    pay for them on every layer (and register gradient hooks for the tracker). This mode
    keeps its operator logic (``torch.utils.flop_counter.flop_registry``, decomposing an
    operator without a formula) and only the total and the per-operator counts.
    ``custom_mapping`` replaces formulas as ``FlopCounterMode``'s does.
    """

    def __init__(self, custom_mapping: dict[Any, Callable[..., int]] | None = None):
        super().__init__()
        from torch.utils.flop_counter import (  # on first use: it loads triton
            flop_registry,
            shape_wrapper,
        )

        custom = {k: v if getattr(v, "_get_raw", False) else shape_wrapper(v)
                  for k, v in (custom_mapping or {}).items()}
        self.registry = {**flop_registry, **custom}
        self.counts: Counter = Counter()

    def total(self) -> int:
        return int(sum(self.counts.values()))

    def by_operator(self) -> dict[str, int]:
        """FLOPs per aten operator (``"aten.convolution"``...), as ``FlopCounterMode``'s."""
        return {str(op): int(n) for op, n in self.counts.items()}

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA_OPS or isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        if func not in self.registry and func is not torch.ops.prim.device.default:
            with self:
                decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            self.counts[func._overloadpacket] += formula(*args, **kwargs, out_val=out)
        return out


class TrainStepFlopCounter(FlopCounter):
    """The FLOPs of a training step (forward and backward), from its forward pass alone.

    Run the forward pass (gradients enabled) under it: each convolution and matrix product
    adds its forward FLOPs and the FLOPs of the backward products autograd will run for it,
    by the same formulas ``FlopCounterMode`` applies to those backward operators: a
    convolution's ``convolution_backward`` (the input gradient where the input requires
    one, the weight gradient where the weight does), and for ``mm``/``addmm``/``bmm`` one
    product of the same size per operand that requires a gradient. This skips running the
    backward pass (most of the time the count took). An operator with a formula but no
    backward rule here raises :class:`CountingError`: run the backward pass instead.
    """

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = super().__torch_dispatch__(func, types_, args, kwargs)
        if out is NotImplemented:
            return out
        packet = func._overloadpacket
        if packet not in self.registry:
            return out
        aten = torch.ops.aten
        if packet in (aten.convolution, aten._convolution):
            self.counts[aten.convolution_backward] += self._conv_backward(args, kwargs, out)
        elif packet in (aten.mm, aten.addmm, aten.bmm):
            a, b = (args[1], args[2]) if packet is aten.addmm else (args[0], args[1])
            grads = int(a.requires_grad) + int(b.requires_grad)
            product = aten.bmm if packet is aten.bmm else aten.mm
            # Each operand's gradient is one product as large as the forward one.
            self.counts[product] += grads * self.registry[product](a.shape, b.shape,
                                                                   out_val=out.shape)
        else:
            raise CountingError(f"no backward rule for {packet}: run the backward pass")
        return out

    def _conv_backward(self, args, kwargs, out) -> int:
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
                 "output_padding", "groups")
        a = dict(zip(names, args, strict=False)) | kwargs
        x, w, bias = a["input"], a["weight"], a["bias"]
        mask = [x.requires_grad, w.requires_grad, bias is not None and bias.requires_grad]
        if not any(mask):
            return 0
        bias_sizes = list(bias.shape) if bias is not None else None
        formula = self.registry[torch.ops.aten.convolution_backward]
        return formula(out.shape, x.shape, w.shape, bias_sizes, a["stride"], a["padding"],
                       a["dilation"], a["transposed"], a["output_padding"], a["groups"],
                       mask, out_val=(x.shape, w.shape, bias_sizes))


_METADATA_OPS = frozenset({
    torch.ops.aten.sym_is_contiguous.default, torch.ops.aten.is_contiguous.default,
    torch.ops.aten.is_contiguous.memory_format, torch.ops.aten.is_strides_like_format.default,
    torch.ops.aten.is_non_overlapping_and_dense.default, torch.ops.aten.size.default,
    torch.ops.aten.sym_size.default, torch.ops.aten.stride.default,
    torch.ops.aten.sym_stride.default, torch.ops.aten.storage_offset.default,
    torch.ops.aten.sym_storage_offset.default, torch.ops.aten.numel.default,
    torch.ops.aten.sym_numel.default, torch.ops.aten.dim.default, torch.ops.prim.layout.default,
})
"""Operators ``FlopCounterMode`` lets pass without counting (torch 2.14)."""


def count_macs_and_flops(model: nn.Module, x: torch.Tensor) -> tuple[MacCount, int,
                                                                     dict[str, int]]:
    """fvcore's MACs and torch's FLOPs of ``model(x)`` in one pass (on meta: free).

    Returns the :class:`MacCount`, the total of torch's FLOP formulas (two per
    multiply-add; :class:`FlopCounter`) and the FLOPs per aten operator.
    """
    flops = FlopCounter()
    macs = MacCounter(model)
    with torch.no_grad(), flops, macs.watching():
        model(x)
    return macs.result(), flops.total(), flops.by_operator()


def fvcore_macs(model: nn.Module, x: torch.Tensor):
    """fvcore's own ``FlopCountAnalysis`` of ``model(x)`` (real tensors; traced), run now.

    The reference :class:`MacCounter` is checked against, and the fallback for a network
    it raises :class:`CountingError` on. Its warnings are silenced.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis  # imported on first use: slow to import

        fva = FlopCountAnalysis(model, x)
        fva.unsupported_ops_warnings(False)
        fva.uncalled_modules_warnings(False)
        fva.tracer_warnings("none")
        fva.total()  # runs the trace now, inside the quiet block
    return fva
