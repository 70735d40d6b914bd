"""Convolution arithmetic, worked out: one convolution or pooling on a square input.

:func:`explain` gives, for an input side, kernel, stride, padding, dilation, layer kind and
ceil mode, the output side PyTorch produces, the formula with the numbers filled in, and
whole sentences about what happens when the division is not whole (floor against ceil,
and PyTorch's rule that drops a last window starting in the padding).
:func:`windows` says where each output unit's kernel lands on the padded input, for the
picture. :data:`PRESETS` are the classic networks' layers, AlexNet's 224-versus-227
puzzle first.

Coordinates are those of the padded input: ``0 .. n + 2p - 1``, the image occupying
``p .. p + n - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from cnncompare.i18n import N_, t

KINDS = ("conv", "maxpool", "avgpool")
KIND_NAMES = {"conv": N_("convolution"), "maxpool": N_("max pooling"),
              "avgpool": N_("average pooling")}
"""Each kind's English name (``t(KIND_NAMES[kind])`` shows it in the current language)."""
MAX_SIDE = 1024
"""The largest input side the explorer accepts (its picture has one cell per pixel)."""


@dataclass(frozen=True)
class Layer:
    """One square convolution or pooling applied to an ``size`` x ``size`` input."""

    size: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    kind: str = "conv"
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        for name, low in (("size", 1), ("kernel", 1), ("stride", 1), ("dilation", 1),
                          ("padding", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(N_("{name} must be a whole number of at least {low}, got "
                                    "{value}.", name=name, low=low, value=repr(value)))
        if self.size > MAX_SIDE:
            raise ValueError(N_("size must be at most {most}, got {size}.", most=MAX_SIDE,
                                size=self.size))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")
        if self.kind == "conv" and self.ceil_mode:
            raise ValueError(N_("A convolution always rounds down; ceil mode is for pooling."))
        if self.kind == "avgpool" and self.dilation != 1:
            raise ValueError(N_("Average pooling has no dilation in PyTorch."))
        if self.kind != "conv" and 2 * self.padding > self.kernel:
            raise ValueError(N_(
                "PyTorch allows pooling padding of at most half the kernel: padding "
                "{padding} is more than half of {kernel}.", padding=self.padding,
                kernel=self.kernel))

    @property
    def effective_kernel(self) -> int:
        """The span one window covers: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded(self) -> int:
        return self.size + 2 * self.padding


@dataclass(frozen=True)
class Explanation:
    """The arithmetic of one :class:`Layer`, as numbers and whole sentences."""

    layer: Layer
    out: int  # what PyTorch produces (0: it refuses)
    quotient: Fraction  # (n + 2p - k_eff) / s, exactly
    formula: str  # the formula with the numbers filled in
    whole: bool  # whether the division is whole
    unread: int  # rows (and as many columns) of the image that no kernel position reads
    sentences: tuple[str, ...]


def _out_size(layer: Layer) -> int:
    """PyTorch's output side; 0 where it refuses (a ceil-mode pooling still gives one window
    when its window is wider than the padded input by less than a stride)."""
    span = layer.padded - layer.effective_kernel
    if not layer.ceil_mode:
        return max(0, span // layer.stride + 1)
    out = -(-span // layer.stride) + 1
    if (out - 1) * layer.stride >= layer.size + layer.padding:  # PyTorch's rule
        out -= 1
    return max(0, out)


def windows(layer: Layer) -> list[tuple[int, int]]:
    """First and last padded-input position of each output unit's window (along a side)."""
    k = layer.effective_kernel
    return [(i * layer.stride, i * layer.stride + k - 1) for i in range(_out_size(layer))]


def unread_positions(layer: Layer) -> list[int]:
    """The padded-input positions of the image (``p .. p + n - 1``) that no output unit's
    kernel reads: past the last window, in the gaps of a stride larger than the window, or
    between the taps of a dilated kernel."""
    read = {i for unit in range(_out_size(layer)) for i in taps(layer, unit)}
    return [i for i in range(layer.padding, layer.padding + layer.size) if i not in read]


def taps(layer: Layer, unit: int) -> list[int]:
    """The padded-input positions output unit ``unit``'s kernel reads (every
    ``dilation``-th position of its window)."""
    first = unit * layer.stride
    return [first + j * layer.dilation for j in range(layer.kernel)]


def _num(x: Fraction) -> str:
    """``Fraction(213, 4)`` -> ``"53.25"``; whole numbers without a decimal point."""
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.4f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == x else f"{float(x):.3f}..."


def explain(layer: Layer) -> Explanation:
    """The output side of ``layer``, its formula with the numbers, and what to know."""
    n, k, s, p, d = layer.size, layer.kernel, layer.stride, layer.padding, layer.dilation
    k_eff = layer.effective_kernel
    span = n + 2 * p - k_eff
    q = Fraction(span, s)
    out = _out_size(layer)
    rounding = "ceil" if layer.ceil_mode else "floor"
    k_text = str(k) if d == 1 else f"({d}·({k} − 1) + 1)"
    by_formula = (math.ceil(q) if layer.ceil_mode else math.floor(q)) + 1
    formula = (f"{rounding}(({n} + 2·{p} − {k_text}) / {s}) + 1 = {rounding}({_num(q)}) + 1 = "
               f"{by_formula}")
    if out != by_formula:
        formula = t("{formula} (PyTorch gives {out})", formula=formula, out=out)
    sentences: list[str] = []
    kind = t(KIND_NAMES[layer.kind])
    padded = layer.padded
    if out < 1:
        sentences.append(t(
            "The {k} x {k} window does not fit in the {padded} x {padded} padded input, so "
            "PyTorch refuses this {kind}.", k=k_eff, padded=padded, kind=kind))
        return Explanation(layer, 0, q, formula, False, n, tuple(sentences))
    if span < 0:
        sentences.append(t(
            "The {k} x {k} window is wider than the {padded} x {padded} padded input, but "
            "ceil mode still gives one window, which reads what it covers.", k=k_eff,
            padded=padded))
    if d > 1:
        sentences.append(t(
            "With dilation {d} the {k} x {k} kernel spreads over {k_eff} x {k_eff} pixels and "
            "reads one pixel in {d} along each side: the formula uses {k_eff} as the kernel.",
            d=d, k=k, k_eff=k_eff))
    whole = q.denominator == 1
    unread = len(unread_positions(layer))
    if whole:
        sentences.append(t(
            "({n} + 2·{p} − {k_eff}) / {s} = {q} is a whole number: the windows tile the "
            "padded input exactly, {out} of them along each side.", n=n, p=p, k_eff=k_eff,
            s=s, q=_num(q), out=out))
    else:
        floor_out, ceil_out = math.floor(q) + 1, math.ceil(q) + 1
        sentences.append(t(
            "({n} + 2·{p} − {k_eff}) / {s} = {q} is not a whole number: the windows do not "
            "tile the padded input exactly.", n=n, p=p, k_eff=k_eff, s=s, q=_num(q)))
        if layer.ceil_mode:
            sentences.append(t(
                "Ceil mode rounds up to {ceil_out} windows: the last one hangs over the "
                "padded input's edge and reads only what is there.", ceil_out=ceil_out))
            if out < ceil_out:
                sentences.append(t(
                    "PyTorch then drops that last window because it would start in the "
                    "right padding (its rule: a window must start inside the input or the "
                    "left padding), so the output is {out}, not {ceil_out}.", out=out,
                    ceil_out=ceil_out))
        else:
            left = span - (floor_out - 1) * s
            sentences.append(t(
                "PyTorch rounds down (floor), so the output is {floor_out}, and the last "
                "{left} of the padded input's rows (and as many columns) are never covered "
                "by a window.", floor_out=floor_out, left=left))
            if layer.kind != "conv":
                ceil_real = _out_size(replace(layer, ceil_mode=True))
                sentences.append(t(
                    "The same pooling with ceil_mode=True would give {ceil_real} instead.",
                    ceil_real=ceil_real))
    if s > k_eff:
        sentences.append(t(
            "The stride ({s}) is larger than the window ({k_eff} pixels), so the windows "
            "leave gaps between them.", s=s, k_eff=k_eff))
    if unread:
        sentences.append(t(
            "So {unread} of the image's {n} rows (and as many columns) are never read by any "
            "window: whatever is drawn there cannot change the output.", unread=unread, n=n))
    if layer.kind != "conv":
        sentences.append(t(
            "A pooling keeps the channels: only the height and width follow this formula."))
    return Explanation(layer, out, q, formula, whole, unread, tuple(sentences))


@dataclass(frozen=True)
class Preset:
    """A layer of a classic network, with what it teaches."""

    title: str
    layer: Layer
    lesson: str


PRESETS: tuple[Preset, ...] = (
    Preset(N_("AlexNet conv1 at 224 px, no padding (the paper's text)"),
           Layer(224, 11, 4, 0),
           N_("The paper says 224 x 224, but (224 - 11) / 4 + 1 = 54.25 is not a whole number: "
           "PyTorch gives 54, not the 55 the paper reports.")),
    Preset(N_("AlexNet conv1 at 227 px (the size that works)"), Layer(227, 11, 4, 0),
           N_("227 px gives (227 - 11) / 4 + 1 = 55 exactly: the 55 x 55 map of the paper.")),
    Preset(N_("AlexNet conv1 at 224 px with padding 2 (torchvision)"), Layer(224, 11, 4, 2),
           N_("Padding 2 makes 224 + 4 = 228 and (228 - 11) / 4 + 1 = 55.25, rounded down to "
           "55: the paper's map from a 224 px image.")),
    Preset(N_("AlexNet overlapping max pooling"), Layer(55, 3, 2, 0, kind="maxpool"),
           N_("3 x 3 windows with stride 2 overlap by one pixel: 55 becomes 27.")),
    Preset(N_("LeNet conv1 on a 28 px MNIST digit (padding 2)"), Layer(28, 5, 1, 2),
           N_("Padding 2 makes the 28 px digit behave like the paper's 32 px input: 28 stays 28.")),
    Preset(N_("LeNet 2 x 2 pooling"), Layer(28, 2, 2, 0, kind="avgpool"),
           N_("Non-overlapping 2 x 2 windows halve the map: 28 becomes 14.")),
    Preset(N_("VGG 3 x 3 convolution (padding 1)"), Layer(224, 3, 1, 1),
           N_("Padding 1 keeps the size, so VGG can stack 3 x 3 convolutions freely.")),
    Preset(N_("VGG 2 x 2 max pooling"), Layer(224, 2, 2, 0, kind="maxpool"),
           N_("Each pooling halves the map; five of them take 224 to 7.")),
    Preset(N_("ResNet stem: 7 x 7 convolution, stride 2, padding 3"), Layer(224, 7, 2, 3),
           N_("(224 + 6 - 7) / 2 = 111.5: rounded down to 111, plus one, gives 112.")),
    Preset(N_("ResNet stem max pooling: 3 x 3, stride 2, padding 1"),
           Layer(112, 3, 2, 1, kind="maxpool"),
           N_("(112 + 2 - 3) / 2 = 55.5, rounded down: 56.")),
    Preset(N_("GoogLeNet max pooling in ceil mode"), Layer(112, 3, 2, 0, kind="maxpool",
                                                       ceil_mode=True),
           N_("(112 - 3) / 2 = 54.5: ceil mode rounds up to 56 where floor would give 55.")),
    Preset(N_("NiN's first block at 224 px: 11 x 11, stride 4, no padding"), Layer(224, 11, 4, 0),
           N_("Like AlexNet without padding: 54 windows, and the image's last row is never read.")),
    Preset(N_("A dilated 3 x 3 convolution (dilation 2, padding 2)"), Layer(32, 3, 1, 2, 2),
           N_("Dilation 2 spreads the kernel over 5 x 5 pixels; padding 2 keeps the size.")),
    Preset(N_("Ceil mode and PyTorch's rule: 2 x 2 pooling, stride 2, padding 1, on 5 px"),
           Layer(5, 2, 2, 1, kind="maxpool", ceil_mode=True),
           N_("ceil((5 + 2 - 2) / 2) + 1 = 4, but the fourth window would start in the right "
           "padding, so PyTorch gives 3.")),
)


def preset(title: str) -> Preset:
    """The preset called ``title``; ``ValueError`` naming the choices otherwise."""
    for p in PRESETS:
        if p.title == title:
            return p
    raise ValueError(f"Unknown preset {title!r}; choose one of: "
                     + "; ".join(p.title for p in PRESETS))


def with_changes(layer: Layer, **changes) -> Layer:
    """``layer`` with some fields changed (validated again)."""
    return replace(layer, **changes)


# Cell codes of :func:`grids`' padded-input picture, and their meaning for a legend.
PADDING, PIXEL, UNREAD, HULL, TAP, TAP_ON_PADDING = range(6)
CELL_NAMES = {
    PADDING: N_("padding (zeros)"),
    PIXEL: N_("input pixel"),
    UNREAD: N_("input pixel no window reads"),
    HULL: N_("inside the window, skipped by the dilation"),
    TAP: N_("read by the chosen unit's kernel"),
    TAP_ON_PADDING: N_("kernel position on the padding"),
}


def grids(layer: Layer, unit: tuple[int, int]) -> tuple[list[list[int]], list[list[int]]]:
    """The padded input and the output as grids of cell codes, for output unit ``unit``
    (row, column): the input marks padding, pixels, unread pixels and where that unit's
    kernel lands (:data:`CELL_NAMES`); the output marks the unit (1) among the others (0).
    ``ValueError`` for a unit outside the output."""
    out = _out_size(layer)
    r, c = unit
    if not (0 <= r < out and 0 <= c < out):
        raise ValueError(f"unit ({r}, {c}) is outside the {out} x {out} output")
    n, p = layer.size, layer.padding
    size = layer.padded
    unread = set(unread_positions(layer))

    def code_1d(i: int) -> int:
        if i < p or i >= p + n:
            return PADDING
        return UNREAD if i in unread else PIXEL

    base = [code_1d(i) for i in range(size)]
    grid = [[PADDING if PADDING in (a, b) else (UNREAD if UNREAD in (a, b) else PIXEL)
             for b in base] for a in base]
    rows_t, cols_t = taps(layer, r), taps(layer, c)
    lo_r, hi_r = r * layer.stride, r * layer.stride + layer.effective_kernel - 1
    lo_c, hi_c = c * layer.stride, c * layer.stride + layer.effective_kernel - 1
    for i in range(lo_r, min(hi_r, size - 1) + 1):
        for j in range(lo_c, min(hi_c, size - 1) + 1):
            if i in rows_t and j in cols_t:
                grid[i][j] = TAP_ON_PADDING if grid[i][j] == PADDING else TAP
            else:
                grid[i][j] = HULL
    output = [[1 if (i, j) == (r, c) else 0 for j in range(out)] for i in range(out)]
    return grid, output
