"""Argument checks shared by the package, so every module words its errors the same way."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any


def positive_int(value: Any, what: str, types: tuple[type, ...] = (int,)) -> int:
    """``value`` as an int if it is one of ``types`` (never a bool) and at least 1;
    otherwise ``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, types) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def unknown_name(kind: str, name: Any, known: Sequence[str], n: int = 3) -> ValueError:
    """The error for a name that is not in ``known``: the close matches, then the list."""
    close = difflib.get_close_matches(str(name).lower(), list(known), n=n, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}.")
