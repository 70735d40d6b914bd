"""Shared fixtures. Every test gets its own empty results home."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def cnncompare_home(tmp_path, monkeypatch) -> Path:
    """Point CNNCOMPARE_HOME at a fresh folder so no test sees another's results."""
    home = tmp_path / "cnncompare-home"
    monkeypatch.setenv("CNNCOMPARE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def mnist_test_root() -> Path:
    """The real MNIST test split shipped beside the checkout (skips where it is absent)."""
    root = SHARED_DATASETS / "MNIST" / "raw"
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test split not found under {root}")
    return SHARED_DATASETS
