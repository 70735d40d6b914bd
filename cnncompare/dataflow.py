"""A network's dataflow, recorded from one forward pass: which layer feeds which.

:func:`trace` runs a network once (on the meta device by default: shapes, no data, no
time) and records, in execution order, every *op*:

* every call of a leaf module (a module without children: ``Conv2d``, ``ReLU``...); a
  module called twice (ResNet's shared ReLU) gives two ops; and
* every torch function the containers call between their children (the ``torch.cat`` of
  an Inception module or a dense block, the ``+`` of a residual block, a
  ``torch.flatten``), which is where branches merge.

Each op knows the ops that produced its tensor inputs (``-1`` for the network's input),
its output shape, the container it ran in (``scope``) and its depth in weighted layers
(the most convolutions and linear layers on any path from the input to it, the way a
network's depth is quoted: VGG-16 has 16). Receptive fields
(:mod:`cnncompare.receptive_field`) and the diagrams (:mod:`cnncompare.diagram`) are
computed from this record, so they describe the network that really runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

INPUT = -1
"""The producer index of the network's input."""

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""The layers that count for a network's depth."""

_FUNCTION_NAMES = {
    "__add__": "add", "__iadd__": "add", "__radd__": "add", "add": "add", "add_": "add",
    "cat": "concat", "concat": "concat", "concatenate": "concat",
    "__mul__": "mul", "mul": "mul", "flatten": "flatten",
}
"""Display names of the functions containers call; others keep their own name."""


@dataclass
class Op:
    """One recorded operation: a leaf module's call or a function between modules.

    ``name`` is the module's dotted name (``layer1.0.conv1``) or, for a function, the
    function's name (``concat``, ``add``, ``flatten``). ``call`` counts the earlier calls
    of the same module (0 for the first). ``inputs`` are the indices of the ops that
    produced this op's tensor inputs, in argument order (:data:`INPUT` for the network's
    input). ``shape`` is the output's shape, batch included (``()`` for a non-tensor).
    """

    index: int
    kind: str  # "module" or "function"
    name: str
    type: str  # the module's class name, or the function's name
    scope: str  # the container whose forward made the call ("" for the network itself)
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    call: int = 0
    depth: int = 0
    module: nn.Module | None = field(default=None, repr=False, compare=False)
    input_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def is_merge(self) -> bool:
        """Whether this op joins several paths (a concatenation or a sum of two maps)."""
        return self.kind == "function" and len(set(self.inputs)) > 1


@dataclass
class Dataflow:
    """The ops of one forward pass, in execution order, and the input's shape."""

    ops: list[Op]
    input_shape: tuple[int, ...]
    output: int  # the op that produced the network's (first) output

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def module_ops(self) -> list[Op]:
        """The leaf-module calls only, in execution order (the layer table's rows)."""
        return [op for op in self.ops if op.kind == "module"]

    def depth(self) -> int:
        """The network's depth: weighted layers on the longest path to its output."""
        return self.ops[self.output].depth if self.ops else 0

    def consumers(self) -> dict[int, list[int]]:
        """Producer index -> the ops that read its output (:data:`INPUT` included)."""
        out: dict[int, list[int]] = {INPUT: []}
        for op in self.ops:
            out.setdefault(op.index, [])
            for i in dict.fromkeys(op.inputs):
                out.setdefault(i, []).append(op.index)
        return out


def _tensors(obj: Any) -> list[Tensor]:
    leaves, _ = tree_flatten(obj)
    return [t for t in leaves if isinstance(t, Tensor)]


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


class _Recorder(TorchFunctionMode):
    """Hooks on every module and a function mode: together they see the whole pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.ops: list[Op] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> op index
        self.alive: list[Tensor] = []  # keeps recorded tensors alive, so ids stay unique
        self.scopes: list[str] = [""]
        self.in_leaf = 0
        self.calls: dict[str, int] = {}
        self.names = {id(m): n for n, m in model.named_modules()}

    # -- bookkeeping
    def _tracked(self, tensors: list[Tensor]) -> list[Tensor]:
        """The tensors an earlier op (or the input) produced: parameters are not."""
        return [t for t in tensors if id(t) in self.producer]

    def _record(self, kind: str, name: str, type_: str, ins: list[Tensor],
                outputs: list[Tensor], module: nn.Module | None) -> None:
        index = len(self.ops)
        inputs = tuple(self.producer[id(t)] for t in ins)
        input_shapes = tuple(tuple(t.shape) for t in ins)
        depths = [self.ops[i].depth for i in inputs if i != INPUT]
        depth = max(depths, default=0) + (1 if isinstance(module, WEIGHTED) else 0)
        shape = tuple(outputs[0].shape) if outputs else ()
        call = 0
        if kind == "module":
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
        scope = self.scopes[-1]
        self.ops.append(Op(index, kind, name, type_, scope, inputs, shape, call, depth,
                           module, input_shapes))
        for t in outputs:
            self.producer[id(t)] = index
            self.alive.append(t)

    # -- module hooks
    def pre_hook(self, module: nn.Module, args: Any) -> None:
        if self.in_leaf or _is_leaf(module):
            self.in_leaf += 1  # inside a leaf, nothing is recorded
        else:
            self.scopes.append(self.names.get(id(module), ""))

    def post_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.in_leaf > 1:
            self.in_leaf -= 1
        elif self.in_leaf == 1:
            self.in_leaf = 0
            ins = self._tracked(_tensors(args))
            name = self.names.get(id(module), "") or "(model)"
            self._record("module", name, type(module).__name__, ins, _tensors(output), module)
        else:
            self.scopes.pop()

    # -- functions between modules
    def __torch_function__(self, func: Callable, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.in_leaf:
            return out
        outputs = _tensors(out)
        ins = self._tracked(_tensors((args, kwargs)))
        if not outputs or not ins:
            return out
        raw = getattr(func, "__name__", str(func))
        if raw in ("__get__", "__set__") or raw.startswith("_") and raw not in _FUNCTION_NAMES:
            # attribute access (``x.shape``) and private helpers are not layers
            return out
        name = _FUNCTION_NAMES.get(raw, raw)
        self._record("function", name, name, ins, outputs, None)
        return out


def trace(model: nn.Module, input_shape: tuple[int, ...], *, device: str | torch.device = "meta"
          ) -> Dataflow:
    """Run ``model`` once on an input of ``input_shape`` (batch included) and record its ops.

    The model runs where its parameters are unless ``device`` says otherwise: the default,
    ``"meta"``, needs a model built on the meta device (``with torch.device("meta")``) and
    costs no memory or time. The model is put in eval mode for the pass (dropout off,
    GoogLeNet's auxiliary heads off) and put back as it was; no gradient is recorded. The
    input takes the dtype of the model's first parameter (float32 for a model without any).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise ValueError(f"input_shape needs a batch and a channel dimension, got {shape}")
    rec = _Recorder(model)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(rec.pre_hook))
        handles.append(module.register_forward_hook(rec.post_hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.empty(shape, device=device,
                        dtype=param.dtype if param is not None else torch.float32)
        rec.producer[id(x)] = INPUT
        rec.alive.append(x)
        with torch.no_grad(), rec:
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    outs = _tensors(out)
    last = rec.producer.get(id(outs[0]), len(rec.ops) - 1) if outs else len(rec.ops) - 1
    return Dataflow(rec.ops, shape, last)
