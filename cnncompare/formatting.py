"""Numbers for people: 11.7 M, 1.82 G, 3.4 ms. Pure functions, used by pages and CLI."""

from __future__ import annotations

import math

_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def human(value: float | int | None, unit: str = "", digits: int = 3) -> str:
    """``human(11689512) == '11.7 M'``; ``human(1.82e9, 'MACs') == '1.82 G MACs'``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign = "-" if value < 0 else ""
    v = abs(float(value))
    for scale, prefix in _PREFIXES:
        if v >= scale:
            text = f"{v / scale:.{digits}g} {prefix}"
            break
    else:
        text = f"{v:.{digits}g} " if v else "0 "
    return (sign + text + unit).strip()


def ms(value: float | None) -> str:
    """Milliseconds with sensible precision: ``'0.42 ms'``, ``'12.3 ms'``, ``'1,204 ms'``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def duration(seconds: float | None) -> str:
    """A time for people: ``'45 s'``, ``'3 min 05 s'``, ``'1 h 02 min'``; ``'–'`` if unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
