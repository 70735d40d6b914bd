"""Where cnncompare keeps its runtime state (results, checkpoints, caches).

By default a git-ignored folder ``data/runtime`` in the checkout; the environment variable
``CNNCOMPARE_HOME`` points it anywhere else (tests use a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
SAMPLES_DIR = DATA_DIR / "samples"


def home() -> Path:
    """The results home, created on first use."""
    env = os.environ.get("CNNCOMPARE_HOME")
    path = Path(env).expanduser() if env else DATA_DIR / "runtime"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(kind: str) -> Path:
    """A sub-folder of the home for one kind of cache (``profile``, ``bench``, ...)."""
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def clear_cache(kind: str) -> int:
    """Delete the cached ``*.json`` entries of one kind; returns how many were removed."""
    removed = 0
    for f in cache_dir(kind).glob("*.json"):
        f.unlink(missing_ok=True)
        removed += 1
    return removed
