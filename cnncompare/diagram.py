"""A diagram of a network, drawn from its own structure: stages, blocks, branches,
shortcuts and concatenations, each box with its output shape.

:func:`build` records one forward pass (:mod:`cnncompare.dataflow`, on the meta device)
and turns it into boxes and arrows at a chosen level of detail:

* **Modules** down to ``depth`` levels below the network are *open*: their contents are
  drawn. A deeper module is one box (``layer2.0: BasicBlock``) unless it is named in
  ``expand``; a module named in ``collapse`` is one box whatever its depth.
* **Repeats**: consecutive sibling modules with the same structure (the same layers with
  the same kernels and strides; the channel counts may differ) are one box marked
  ``x6`` (DenseNet's dense layers, GoogLeNet's ``inception4a`` to ``4e``, ResNet's
  identical blocks) until their group's id is named in ``expand``. A group also takes the
  concatenations its parent makes between its members (a dense block's growing input).
* **Chains**: an element-wise layer (batch normalisation, an activation, dropout, LRN)
  joins the box of the layer it follows, or, at the start of a pre-activation block, the
  one it leads to: ``conv 5x5 + ReLU``, ``BN + ReLU + conv 1x1``.

Every arrow is a tensor passed from one box to another: a residual block's shortcut is an
arrow from the block's input to its ``add``, a concatenation has one arrow per input.
:func:`cnncompare.plots_explain.diagram_figure` draws the result with plotly (no system
package needed).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from cnncompare.dataflow import INPUT, Dataflow, Op, trace
from cnncompare.i18n import t, tn
from cnncompare.registry import ModelConfig, as_config, on_meta_device

POINTWISE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU,
             nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Dropout2d,
             nn.LocalResponseNorm, nn.Identity)
"""Layers that change no shape and join a neighbour's box."""
POINTWISE_FUNCTIONS = ("relu", "relu_", "sigmoid", "tanh", "dropout")

DEFAULT_DEPTH = 2
"""Modules at most this many levels below the network are drawn open by default."""


@dataclass
class Box:
    """One box of the diagram.

    ``id`` is a module name (a closed module), a group id (``"layer1.0-1"``), ``"op:N"``
    (a layer or merge drawn alone, with the layers folded into it) or ``"input"``.
    ``kind`` is ``input``, ``conv``, ``pool``, ``linear``, ``merge``, ``module``,
    ``group`` or ``other``; ``shape`` is the output's shape without the batch
    (``"64x56x56"``); ``ops`` are the recorded ops it stands for.
    """

    id: str
    label: str
    kind: str
    shape: str
    detail: str = ""
    ops: list[int] = field(default_factory=list)
    repeat: int = 1
    expandable: bool = False


@dataclass
class Diagram:
    """Boxes in execution order and the arrows between them (``(from id, to id)``)."""

    title: str
    boxes: list[Box]
    arrows: list[tuple[str, str]]

    def box(self, box_id: str) -> Box:
        for b in self.boxes:
            if b.id == box_id:
                return b
        raise KeyError(box_id)

    def expandable(self) -> list[str]:
        """The ids of the closed modules and groups, which ``expand`` can open."""
        return [b.id for b in self.boxes if b.expandable]

    def ranks(self) -> dict[str, int]:
        """Each box's rank: the longest chain of arrows from the input to it."""
        incoming: dict[str, list[str]] = defaultdict(list)
        for a, b in self.arrows:
            incoming[b].append(a)
        rank: dict[str, int] = {}
        for box in self.boxes:  # execution order is a topological order
            rank[box.id] = max((rank[a] + 1 for a in incoming[box.id] if a in rank), default=0)
        return rank


# ------------------------------------------------------------------------------ labels


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape[1:]) if len(shape) > 1 else ""


def _pair(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def _op_label(op: Op) -> str:
    """A short description of one layer or merge: ``conv 3x3, stride 2``, ``concat``, in
    the current language (a list of the layer's settings, joined by commas)."""
    m = op.module
    if op.kind == "function":
        if op.name == "add":
            return t("add (+)")
        if op.name == "concat":
            return t("concat ({n})", n=len(op.inputs))
        return op.name
    if isinstance(m, nn.Conv2d):
        k, s = _pair(m.kernel_size), _pair(m.stride)
        parts = [t("conv {k}x{k}", k=k)]
        if s > 1:
            parts.append(t("stride {s}", s=s))
        if _pair(m.dilation) > 1:
            parts.append(t("dilation {d}", d=_pair(m.dilation)))
        if m.groups > 1:
            parts.append(tn("{n} group", "{n} groups", m.groups))
        return ", ".join(parts)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        kind = (t("max pool {k}x{k}", k=k) if isinstance(m, nn.MaxPool2d)
                else t("avg pool {k}x{k}", k=k))
        return ", ".join([kind, t("stride {s}", s=s)])
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = op.shape[-1]
        return t("global avg pool") if out == 1 else t("adaptive pool to {out}x{out}", out=out)
    if isinstance(m, nn.Linear):
        return t("fc {n_in}→{n_out}", n_in=m.in_features, n_out=m.out_features)
    short = {"BatchNorm2d": "BN", "BatchNorm1d": "BN", "LocalResponseNorm": "LRN",
             "Dropout": t("dropout"), "Flatten": t("flatten")}
    return short.get(op.type, op.type)


def _kind(op: Op) -> str:
    m = op.module
    if op.kind == "function":
        return "merge" if op.name in ("add", "concat") else "other"
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "pool"
    if isinstance(m, nn.Linear):
        return "linear"
    return "other"


def _pointwise(op: Op) -> bool:
    if op.kind == "function":
        return op.name in POINTWISE_FUNCTIONS
    return isinstance(op.module, POINTWISE)


# --------------------------------------------------------------------- module structure


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _ancestors(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)] if name else []


def _signature(flow: Dataflow, name: str, members: dict[str, list[Op]]) -> tuple:
    """What makes two sibling modules the same block: their layers' relative names,
    types and geometry, and their merges, in order (not the channel counts)."""
    sig = []
    for op in members.get(name, []):
        rel = op.name[len(name) + 1:] if op.kind == "module" else f"{op.scope[len(name):]}()"
        geo = ()
        if isinstance(op.module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            m = op.module
            geo = (str(m.kernel_size), str(m.stride), str(m.padding),
                   str(getattr(m, "dilation", 1)))
        sig.append((op.kind, op.type, rel, geo))
    return tuple(sig)


def _is_container(name: str, members: dict[str, list[Op]]) -> bool:
    """Whether module ``name`` holds other layers (a block, a stage), not a single layer."""
    ops = members.get(name, [])
    return len(ops) > 1 or any(o.kind == "function" for o in ops)


def _same_block(flow: Dataflow, name: str, previous: str,
                members: dict[str, list[Op]]) -> bool:
    """Whether container ``name``, run right after ``previous``, repeats it: it reads what
    ``previous`` made (directly, or through a merge between them: not a parallel branch),
    with the same structure (:func:`_signature`) on a map of the same size."""
    a, b = members[previous], members[name]
    if not _is_container(name, members) or b[0].index <= a[-1].index:
        return False
    made = {o.index for o in a}
    for op in flow.ops[a[-1].index + 1:b[0].index]:  # merges between the two
        if op.kind == "function" and made.intersection(op.inputs):
            made.add(op.index)
    if not any(made.intersection(o.inputs) for o in b):
        return False
    same_size = (a[-1].shape[-2:] == b[-1].shape[-2:]
                 and a[0].input_shapes[:1] and b[0].input_shapes[:1]
                 and a[0].input_shapes[0][-2:] == b[0].input_shapes[0][-2:])
    return bool(same_size) and _signature(flow, name, members) == _signature(
        flow, previous, members)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _group_id(first: str, last: str) -> str:
    """``layer1.0`` and ``layer1.1`` -> ``layer1.0-1``; ``...denselayer1`` to ``..6`` ->
    ``...denselayer1-6``; otherwise ``first-last``."""
    a, b = _short(first), _short(last)
    ma, mb = re.match(r"(.*?)(\d+)$", a), re.match(r"(.*?)(\d+)$", b)
    if ma and mb and ma.group(1) == mb.group(1):
        return f"{first}-{mb.group(2)}"
    return f"{first}-{b}"


# ------------------------------------------------------------------------------- build


def build(model: nn.Module, input_shape: tuple[int, ...], *, title: str = "",
          depth: int = DEFAULT_DEPTH, expand: Iterable[str] = (), collapse: Iterable[str] = (),
          group: bool = True, fold: bool = True) -> Diagram:
    """The diagram of ``model`` for an input of ``input_shape`` (batch included); see the
    module docstring for ``depth``, ``expand``, ``collapse``, ``group`` and ``fold``. The
    model must be on the meta device (build it under ``registry.on_meta_device()``).

    ``depth=0`` draws only the network's top-level modules closed; ``expand="all"``-like
    detail is ``depth`` large, ``group=False`` and ``fold=False``: one box per recorded op.
    """
    flow = trace(model, input_shape)
    expand, collapse = set(expand), set(collapse)
    ops = flow.ops
    types = {n: type(m).__name__ for n, m in model.named_modules() if n}

    # Every op belongs to each module on its path (a function: to its scope's path).
    members: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        path = op.name if op.kind == "module" else op.scope
        for anc in _ancestors(path if path != "(model)" else ""):
            members[anc].append(op)

    # Groups of identical consecutive sibling containers, and the merges they absorb.
    group_of: dict[str, str] = {}  # member module -> group id
    group_members: dict[str, list[str]] = {}
    absorbed: dict[int, str] = {}  # function op index -> group id
    if group:
        children: dict[str, list[str]] = defaultdict(list)
        for name in members:
            children[_parent(name)].append(name)
        for parent, kids in children.items():
            kids = sorted(kids, key=lambda k: members[k][0].index)  # execution order
            run: list[str] = []
            for k in [*kids, None]:
                if k is not None and run and _same_block(flow, k, run[-1], members):
                    run.append(k)
                    continue
                if len(run) >= 2:
                    gid = _group_id(run[0], run[-1])
                    group_members[gid] = list(run)
                    for r in run:
                        group_of[r] = gid
                    start = max((members[s][-1].index for s in kids
                                 if members[s][-1].index < members[run[0]][0].index),
                                default=-1)
                    end = members[run[-1]][-1].index
                    for op in ops:
                        if (op.kind == "function" and op.scope == parent
                                and start < op.index < end):
                            absorbed[op.index] = gid
                run = [k] if k is not None and _is_container(k, members) else []

    def is_open(name: str) -> bool:
        if name in collapse:
            return False
        return name in expand or name.count(".") + 1 <= depth

    def unit_of(op: Op) -> str:
        path = op.name if op.kind == "module" else op.scope
        chain = _ancestors(path if path != "(model)" else "")
        if op.kind == "module":
            chain = chain[:-1]  # the leaf itself is drawn as an op
        for anc in chain:
            gid = group_of.get(anc)
            if gid is not None and gid not in expand:
                return gid
            if not is_open(anc):
                return anc
        gid = absorbed.get(op.index)
        if gid is not None and gid not in expand:
            return gid
        return f"op:{op.index}"

    unit = {op.index: unit_of(op) for op in ops}

    # Fold element-wise layers into the layer they follow (or, leading a block, precede).
    if fold:
        consumers: dict[int, list[int]] = defaultdict(list)
        for op in ops:
            for i in dict.fromkeys(op.inputs):
                consumers[i].append(op.index)
        changed = True
        while changed:
            changed = False
            for op in ops:
                u = unit[op.index]
                if not u.startswith("op:") or not _pointwise(op) or len(op.inputs) != 1:
                    continue
                members_u = [i for i, v in unit.items() if v == u]
                if len(members_u) > 1 and u != f"op:{op.index}":
                    continue  # already folded
                p = op.inputs[0]
                if (p != INPUT and unit[p].startswith("op:") and len(consumers[p]) == 1
                        and ops[p].scope == op.scope and not _pointwise_unit(unit, ops, p)):
                    _merge(unit, u, unit[p])
                    changed = True
                    continue
                nxt = consumers.get(op.index, [])
                if (len(nxt) == 1 and unit[nxt[0]].startswith("op:")
                        and ops[nxt[0]].scope == op.scope and len(ops[nxt[0]].inputs) == 1
                        and unit[nxt[0]] != u):
                    _merge(unit, u, unit[nxt[0]])
                    changed = True

    # Boxes in execution order.
    by_unit: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_unit[unit[op.index]].append(op)
    boxes = [Box("input", t("input"), "input", _shape(flow.input_shape))]
    for u, its in sorted(by_unit.items(), key=lambda kv: kv[1][0].index):
        boxes.append(_box(u, its, group_members, members, types))
    seen: set[tuple[str, str]] = set()
    arrows: list[tuple[str, str]] = []
    for op in ops:
        for p in op.inputs:
            a = "input" if p == INPUT else unit[p]
            b = unit[op.index]
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                arrows.append((a, b))
    return Diagram(title or type(model).__name__, boxes, arrows)


def _pointwise_unit(unit: dict[int, str], ops: list[Op], index: int) -> bool:
    """Whether every op of ``index``'s box is element-wise (so it has no main layer)."""
    u = unit[index]
    return all(_pointwise(ops[i]) for i, v in unit.items() if v == u)


def _merge(unit: dict[int, str], a: str, b: str) -> None:
    """Put every op of box ``a`` into box ``b``."""
    for i, v in list(unit.items()):
        if v == a:
            unit[i] = b


def _box(u: str, its: list[Op], group_members: dict[str, list[str]],
         members: dict[str, list[Op]], types: dict[str, str]) -> Box:
    last = its[-1]
    shape = _shape(last.shape)
    if u in group_members:
        names = group_members[u]
        container = types.get(names[0], "")
        n_conv = sum(isinstance(o.module, nn.Conv2d) for o in members[names[0]])
        detail = t("{n} blocks of the same structure ({container}), {n_conv} convolutions "
                   "each: {names}", n=len(names), container=container, n_conv=n_conv,
                   names=", ".join(names))
        first, last = _short(names[0]), _short(names[-1])
        if first.isdigit():  # layer1.0 to layer1.2: say whose blocks they are
            first = f"{_short(_parent(names[0]))}.{first}"
        return Box(u, f"{first}–{last}  ×{len(names)}", "group",
                   shape, detail, [o.index for o in its], len(names), True)
    if u.startswith("op:"):
        main = [o for o in its if not _pointwise(o)] or its
        label = " + ".join(_op_label(o) for o in its)
        kind = _kind(main[0])
        names = ", ".join(o.name for o in its)
        return Box(u, label, kind, shape, names, [o.index for o in its])
    container = types.get(u, "")
    n_conv = sum(isinstance(o.module, nn.Conv2d) for o in its)
    n_merge = sum(o.kind == "function" and o.name in ("add", "concat") for o in its)
    detail = t("{container}: {n_conv} convolutions, {n_merge} merges, {n} layers in all",
               container=container, n_conv=n_conv, n_merge=n_merge, n=len(its))
    short = _short(u)
    if short.isdigit():  # layer2.0: say whose block it is
        short = f"{_short(_parent(u))}.{short}"
    return Box(u, f"{short}: {container}", "module", shape, detail,
               [o.index for o in its], 1, True)


def network_diagram(model: ModelConfig | str, *, depth: int = DEFAULT_DEPTH,
                    expand: Iterable[str] = (), collapse: Iterable[str] = (),
                    group: bool = True, fold: bool = True, **config) -> Diagram:
    """:func:`build` for a registry configuration (or a name and its
    :func:`~cnncompare.registry.resolve_config` arguments), built on the meta device."""
    cfg = as_config(model, **config)
    with on_meta_device():
        net = cfg.build()
    shape = (1, cfg.in_channels, cfg.input_size, cfg.input_size)
    return build(net, shape, title=cfg.label(), depth=depth, expand=expand,
                 collapse=collapse, group=group, fold=fold)
