"""The spatial geometry of a network, as data: its convolutions and poolings.

A *plan* describes every spatial operation on a network's main path(s), from the input to
the last feature map (the one global pooling or flattening reads). It is a tuple of
nodes, each either

* a :class:`Step`: one convolution or pooling, with its kernel, stride, padding,
  dilation and ceil mode, and the dotted name of the module that performs it; or
* a :class:`Branches`: parallel paths from one input, merged by concatenation
  (Inception's four branches, a dense layer beside its input) or by addition (a residual
  block and its shortcut). A path is itself a plan; an empty path is the identity.

Point-wise layers (batch normalisation, activations, dropout) leave the geometry alone
and are not listed. Each family builds its modules from the same :class:`Step` objects
(:meth:`Step.conv2d`, :meth:`Step.pool2d`), so a kernel or a stride is written once.

What the plan gives: the output side of every step for a square input
(:func:`walk`, :func:`out_size`) and so the smallest input a network accepts
(:func:`smallest_input`); the shape arithmetic as text (:func:`shape_arithmetic`). It is
also all that a receptive field needs: along a path each step maps (size, jump, start)
to ``(size + (k_eff - 1) * jump, jump * stride, start - padding * jump)``, and where
paths merge the field is their union.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from torch import nn

KINDS = ("conv", "maxpool", "avgpool")
MERGES = ("concat", "add")


@dataclass(frozen=True)
class Step:
    """One square convolution or pooling: ``kind`` is ``conv``, ``maxpool`` or ``avgpool``.

    ``name`` is the dotted path of the module in the built network (``layer2.0.conv1``);
    it is not part of the geometry, so two steps that differ only by name are equal.
    """

    kind: str
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    ceil_mode: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kernel < 1 or self.stride < 1 or self.dilation < 1 or self.padding < 0:
            raise ValueError(f"impossible step geometry: {self!r}")
        if self.kind == "avgpool" and self.dilation != 1:
            raise ValueError("average pooling has no dilation")

    @property
    def effective_kernel(self) -> int:
        """The input span one output sees: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def out_size(self, n: int) -> int:
        """The output side for an ``n`` px side; below 1 where PyTorch would refuse.

        ``floor((n + 2p - k_eff) / s) + 1``; with ``ceil_mode`` the ceiling, less a last
        window that would start in the right padding (PyTorch's rule).
        """
        span = n + 2 * self.padding - self.effective_kernel
        if not self.ceil_mode:
            return span // self.stride + 1
        out = -(-span // self.stride) + 1
        if (out - 1) * self.stride >= n + self.padding:
            out -= 1
        return out

    def named(self, name: str) -> Step:
        """This step as performed by the module at ``name``."""
        return replace(self, name=name)

    def conv2d(self, c_in: int, c_out: int, *, groups: int = 1, bias: bool = True) -> nn.Conv2d:
        """The ``nn.Conv2d`` with this geometry."""
        if self.kind != "conv":
            raise ValueError(f"{self.kind} step {self.name!r} is not a convolution")
        return nn.Conv2d(c_in, c_out, self.kernel, self.stride, self.padding, self.dilation,
                         groups=groups, bias=bias)

    def pool2d(self) -> nn.MaxPool2d | nn.AvgPool2d:
        """The ``nn.MaxPool2d`` or ``nn.AvgPool2d`` with this geometry."""
        if self.kind == "maxpool":
            return nn.MaxPool2d(self.kernel, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil_mode)
        if self.kind == "avgpool":
            return nn.AvgPool2d(self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode)
        raise ValueError(f"conv step {self.name!r} is not a pooling")


@dataclass(frozen=True)
class Branches:
    """Parallel paths from one input, merged by ``concat`` (channels) or ``add``.

    The merge needs every path to give the same side; an empty path is the identity.
    ``name`` is the module holding the paths (``inception3a``, ``layer1.0``).
    """

    paths: tuple[Plan, ...]
    merge: str
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if not self.paths:
            raise ValueError("branches need at least one path")

    def out_size(self, n: int) -> int:
        """The merged side, or 0 where a path fails or the paths disagree."""
        sizes = {out_size(path, n) for path in self.paths}
        return sizes.pop() if len(sizes) == 1 else 0


Node = Step | Branches
Plan = tuple[Node, ...]


def conv(kernel: int, stride: int = 1, padding: int = 0, *, dilation: int = 1,
         name: str = "") -> Step:
    """A convolution step."""
    return Step("conv", kernel, stride, padding, dilation, name=name)


def maxpool(kernel: int, stride: int, padding: int = 0, *, ceil_mode: bool = False,
            name: str = "") -> Step:
    """A max-pooling step."""
    return Step("maxpool", kernel, stride, padding, ceil_mode=ceil_mode, name=name)


def avgpool(kernel: int, stride: int, padding: int = 0, *, ceil_mode: bool = False,
            name: str = "") -> Step:
    """An average-pooling step."""
    return Step("avgpool", kernel, stride, padding, ceil_mode=ceil_mode, name=name)


def walk(plan: Plan, n: int) -> list[int]:
    """The side after each top-level node of ``plan`` for an ``n`` x ``n`` input.

    Once a node has no output (a side below 1) every later side is 0.
    """
    sizes = []
    for node in plan:
        n = max(node.out_size(n), 0) if n > 0 else 0
        sizes.append(n)
    return sizes


def out_size(plan: Plan, n: int) -> int:
    """The side of the last feature map for an ``n`` x ``n`` input; 0 if it cannot run."""
    sizes = walk(plan, n)
    return sizes[-1] if sizes else n


def steps(plan: Plan) -> Iterator[Step]:
    """Every step of ``plan``, depth first, the paths of a branching in order."""
    for node in plan:
        if isinstance(node, Step):
            yield node
        else:
            for path in node.paths:
                yield from steps(path)


def smallest_input(plan_at: Callable[[int], Plan], limit: int = 4096) -> int:
    """The smallest square side ``n`` for which ``plan_at(n)`` has an output at every step.

    The plan is a function of the size because a few choices depend on it (LeNet pads a
    28 px input, not a 32 px one).
    """
    for n in range(1, limit + 1):
        if out_size(plan_at(n), n) >= 1:
            return n
    raise ValueError(f"no input size up to {limit} fits this network")


def shape_arithmetic(n_in: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False,
                     n_out: int | None = None) -> str:
    """``"floor((224 + 2*3 - 7) / 2) + 1 = 112"``: the output side, with its numbers.

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
