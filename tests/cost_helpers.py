"""Shared by the cost tests: canonical profiles computed once per test process."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

CANONICAL = ("resnet18", "alexnet")


@functools.lru_cache(maxsize=1)
def canonical_home() -> Path:
    """A results home holding the canonical resnet18 and alexnet analyses (cold, once).

    Tests that need those figures point ``CNNCOMPARE_HOME`` here (with monkeypatch) and
    read them warm, so the suite computes the two big analyses once, not once per test.
    """
    from cnncompare import profiling

    home = Path(tempfile.mkdtemp(prefix="cnncompare-canonical-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    before = os.environ.get("CNNCOMPARE_HOME")
    os.environ["CNNCOMPARE_HOME"] = str(home)
    try:
        for name in CANONICAL:
            profiling.analyze(name)
    finally:
        if before is None:
            os.environ.pop("CNNCOMPARE_HOME", None)
        else:
            os.environ["CNNCOMPARE_HOME"] = before
    return home
