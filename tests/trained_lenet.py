"""One LeNet trained on the digits per test session, shared by the classify tests."""

from __future__ import annotations

import os
from pathlib import Path

QUICK_EPOCHS = 3  # about 92% test accuracy in a few seconds


def quick_lenet(base: Path) -> tuple[Path, str]:
    """Train (or find already trained) LeNet on digits in the results home ``base/lenet``.

    Returns the home and the run id. Callers in one session share the run: the second
    call is a cache hit of the store.
    """
    from cnncompare import training
    from cnncompare.store import ResultsStore

    home = base / "lenet-home"
    old = os.environ.get("CNNCOMPARE_HOME")
    try:
        os.environ["CNNCOMPARE_HOME"] = str(home)
        result = training.train_or_load(
            training.TrainConfig(model="lenet", dataset="digits", epochs=QUICK_EPOCHS),
            device="cpu", store=ResultsStore(home))
    finally:
        if old is None:
            os.environ.pop("CNNCOMPARE_HOME", None)
        else:
            os.environ["CNNCOMPARE_HOME"] = old
    assert result.status == "finished", result.status
    return home, result.run_id
